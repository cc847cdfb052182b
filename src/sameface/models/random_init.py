"""Random weights for real-architecture models in seconds, not minutes.

Drawing SDXL's 3.5 B parameters one random number at a time takes about a minute on 2 cores
(torch's CPU `uniform_`/`normal_` run ~10 ns a value), and the slow tests build such models a
dozen times. Here the modules are built with their parameters on the meta device (buffers stay
real: position ids, attention masks), then each parameter is filled from one pool of random
values at a random offset, scaled like torch's default initialisation (uniform ±1/√fan_in for
weights and biases; ones and zeros for normalisation layers). The pool's length is prime, so
rows of any width start at different places in it and no two rows of a matrix are equal.
Tied weights are tied again after the filling by the model's own `tie_weights()`
(transformers' models have one; accelerate's empty init gives each module its own parameter).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

POOL_SIZE = 1_048_573
"""Values in the shared random pool (a prime)."""

_NORMS = ("LayerNorm", "GroupNorm", "BatchNorm", "RMSNorm")


def fast_random(build: Callable[[], T], *, seed: int = 0, dtype: Any = None) -> T:
    """`build()` with every parameter drawn from a seeded random pool, in `dtype` (default the
    default dtype); same seed, same weights. The caller's torch RNG is left as it was."""
    import torch
    from accelerate import init_empty_weights

    with torch.random.fork_rng(devices=[]), init_empty_weights(include_buffers=False):
        built = build()  # constructors may still draw (e.g. randn for a class token)
    g = torch.Generator().manual_seed(seed)
    pool = torch.rand(POOL_SIZE, generator=g) * 2 - 1
    dtype = dtype or torch.get_default_dtype()
    modules = built if isinstance(built, (tuple, list)) else [built]
    filled: dict[int, Any] = {}  # a parameter shared by two modules stays shared
    for root in _flatten(modules):
        for module in root.modules():
            _fill(module, pool, g, dtype, filled)
        if callable(getattr(root, "tie_weights", None)):
            root.tie_weights()
    return built


def _flatten(items: Any) -> list[Any]:
    out = []
    for item in items:
        out.extend(_flatten(item) if isinstance(item, (tuple, list)) else [item])
    return out


def _fill(module: Any, pool: Any, g: Any, dtype: Any, filled: dict[int, Any]) -> None:
    import torch

    weight = module._parameters.get("weight")
    fan_in = math.prod(weight.shape[1:]) if weight is not None and weight.dim() > 1 else None
    is_norm = any(n in type(module).__name__ for n in _NORMS)
    for name, p in list(module._parameters.items()):
        if p is None or (p.device.type != "meta" and id(p) not in filled):
            continue
        if id(p) in filled:
            module._parameters[name] = filled[id(p)]
            continue
        if is_norm:
            value = (torch.ones if name == "weight" else torch.zeros)(p.shape, dtype=dtype)
        elif fan_in is not None:  # a weight or bias of a linear, convolution or embedding
            value = _from_pool(pool, p.shape, g, dtype, 1 / math.sqrt(fan_in))
        else:  # a bare parameter (a class token, a learnt position): small random values
            value = _from_pool(pool, p.shape, g, dtype, 0.035)
        filled[id(p)] = module._parameters[name] = torch.nn.Parameter(
            value, requires_grad=p.requires_grad
        )


def _from_pool(pool: Any, shape: Any, g: Any, dtype: Any, bound: float) -> Any:
    """`shape` values of `pool` (cycled from a random offset) times `bound`, in `dtype`."""
    import torch

    n = math.prod(shape)
    start = int(torch.randint(0, POOL_SIZE, (1,), generator=g))
    source = torch.cat([pool[start:], pool[:start]]).mul_(bound).to(dtype)
    out = torch.empty(n, dtype=dtype)
    whole = n // POOL_SIZE
    if whole:
        out[: whole * POOL_SIZE].view(whole, POOL_SIZE).copy_(source.expand(whole, POOL_SIZE))
    rest = n - whole * POOL_SIZE
    out[whole * POOL_SIZE :] = source[:rest]
    return out.view(shape)
