"""`fast_random`: real-architecture random weights from a seeded pool."""

from __future__ import annotations

import math

import torch

from sameface.models.random_init import POOL_SIZE, fast_random


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(300, 7000)  # 2.1 M weights: more than the pool holds
        self.conv = torch.nn.Conv2d(4, 8, 3)
        self.norm = torch.nn.LayerNorm(16)
        self.token = torch.nn.Parameter(torch.zeros(16))
        self.register_buffer("ids", torch.arange(5))


def test_same_seed_same_weights_and_nothing_left_on_meta():
    a, b, c = (fast_random(_Net, seed=s) for s in (0, 0, 1))
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert p.device.type == "cpu" and torch.equal(p, q), name
        if name not in ("norm.weight", "norm.bias"):
            assert not torch.equal(p, r), name
    assert torch.equal(a.ids, torch.arange(5))  # buffers are built as the module builds them


def test_scaled_like_torch_defaults_with_distinct_rows():
    net = fast_random(_Net, seed=0, dtype=torch.float64)
    assert net.lin.weight.dtype == torch.float64
    bound = 1 / math.sqrt(300)
    assert net.lin.weight.abs().max() <= bound and net.lin.weight.abs().max() > 0.9 * bound
    assert net.lin.bias.abs().max() <= bound
    assert net.conv.weight.abs().max() <= 1 / math.sqrt(4 * 9)
    assert torch.equal(net.norm.weight, torch.ones(16)) and not net.norm.bias.any()
    assert net.token.abs().max() > 0
    # The pool's length is prime: a matrix larger than the pool still has no repeated rows.
    assert net.lin.weight.numel() > POOL_SIZE
    assert torch.unique(net.lin.weight, dim=0).shape[0] == 7000


def test_the_callers_rng_is_left_alone_and_shared_weights_stay_shared():
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(4, 4)
            self.b = torch.nn.Linear(4, 4)
            self.cls = torch.nn.Parameter(torch.randn(4))  # constructors may draw
            self.tie_weights()

        def tie_weights(self):  # as transformers' models tie their embeddings
            self.b.weight = self.a.weight

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    net = fast_random(Tied, seed=0)
    assert torch.equal(torch.rand(3), expected)
    assert net.b.weight is net.a.weight
