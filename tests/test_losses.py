"""Pure loss functions on hand-made tensors: PuLID alignment (seed 004), L_simple, diffusion
targets, ID loss."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from sameface.adapters import CrossAttnRecord
from sameface.faces.torch_sface import id_loss
from sameface.losses import (
    align_layout_loss,
    align_semantic_loss,
    alignment_loss,
    diffusion_target,
    l_simple,
)


def _records(seed: int, layers=("down.attn2", "mid.attn2"), grad: bool = False):
    """Two layers of (B=2, heads=2, L_img, d=4) queries and (B, heads, L_txt=3, d) keys."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in layers:
        n_img = 5 + ord(name[0]) % 2  # layer-dependent, the same in both paths
        q = torch.randn(2, 2, n_img, 4, generator=g).requires_grad_(grad)
        k = torch.randn(2, 2, 3, 4, generator=g)
        out[name] = CrossAttnRecord(query=q, key=k)
    return out


def _response(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Softmax(K Qᵀ/√d) Q written out with explicit loops over batch, head and text token."""
    b, h, n_txt, d = k.shape
    out = torch.zeros(b, h, n_txt, d, dtype=torch.float64)
    q, k = q.double(), k.double()
    for bi in range(b):
        for hi in range(h):
            for j in range(n_txt):
                scores = [
                    float(k[bi, hi, j] @ q[bi, hi, i]) / math.sqrt(d) for i in range(len(q[0, 0]))
                ]
                m = max(scores)
                w = [math.exp(s - m) for s in scores]
                z = sum(w)
                for i, wi in enumerate(w):
                    out[bi, hi, j] += wi / z * q[bi, hi, i]
    return out


def test_alignment_terms_are_zero_when_the_paths_match():
    rec = _records(0)
    same = {n: CrossAttnRecord(r.query.clone(), r.key.clone()) for n, r in rec.items()}
    assert align_layout_loss(rec, same).item() == 0.0
    assert align_semantic_loss(rec, same).item() == 0.0
    assert alignment_loss(rec, same, lambda_sem=0.6, lambda_layout=0.1).item() == 0.0


def test_layout_term_is_the_mean_squared_difference_averaged_over_layers():
    rec_id, rec_t = _records(0), _records(1)
    per_layer = []
    for name in rec_id:
        diff = rec_id[name].query.double() - rec_t[name].query.double()
        per_layer.append(float((diff**2).sum()) / diff.numel())
    expected = sum(per_layer) / len(per_layer)
    assert align_layout_loss(rec_id, rec_t).item() == pytest.approx(expected, rel=1e-6)
    # One layer only.
    only = align_layout_loss(rec_id, rec_t, layers=["mid.attn2"])
    assert only.item() == pytest.approx(per_layer[1], rel=1e-6)
    assert only.dtype == torch.float32


def test_semantic_term_matches_a_hand_computed_softmax_attention():
    # Tiny example with numbers one can check: 1 batch, 1 head, 2 image tokens, 1 text token, d=2.
    q_t = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    q_id = torch.tensor([[[[2.0, 0.0], [0.0, 1.0]]]])
    k = torch.tensor([[[[math.sqrt(2) * math.log(3), 0.0]]]])  # scores/√d: ln 3 and 0
    rec_t = {"l": CrossAttnRecord(q_t, k)}
    rec_id = {"l": CrossAttnRecord(q_id, k)}
    # Prompt-only path: weights softmax(ln 3, 0) = (3/4, 1/4) -> response (3/4, 1/4).
    # ID path: scores 2 ln 3 and 0 -> weights (9/10, 1/10) -> response (9/5, 1/10).
    expected = ((9 / 5 - 3 / 4) ** 2 + (1 / 10 - 1 / 4) ** 2) / 2
    assert align_semantic_loss(rec_id, rec_t).item() == pytest.approx(expected, rel=1e-6)

    # Random records against a loop-by-loop softmax, averaged over layers.
    rec_id, rec_t = _records(0), _records(1)
    per_layer = [
        float(((_response(*rec_id[n]) - _response(*rec_t[n])) ** 2).mean()) for n in rec_id
    ]
    got = align_semantic_loss(rec_id, rec_t)
    assert got.item() == pytest.approx(sum(per_layer) / 2, rel=1e-5)
    combined = alignment_loss(rec_id, rec_t, lambda_sem=0.6, lambda_layout=0.1)
    assert combined.item() == pytest.approx(
        0.6 * got.item() + 0.1 * align_layout_loss(rec_id, rec_t).item(), rel=1e-6
    )


def test_gradients_reach_only_the_id_path():
    rec_id, rec_t = _records(0, grad=True), _records(1, grad=True)
    for fn in (align_layout_loss, align_semantic_loss):
        for r in (*rec_id.values(), *rec_t.values()):
            r.query.grad = None
        fn(rec_id, rec_t).backward()
        assert all(
            r.query.grad is not None and r.query.grad.abs().sum() > 0 for r in rec_id.values()
        )
        assert all(r.query.grad is None for r in rec_t.values()), fn.__name__
    # The prompt-only records keep their graph: detaching happens inside the loss only.
    assert all(r.query.requires_grad for r in rec_t.values())


def test_alignment_layer_selection_and_errors():
    rec_id = _records(0, layers=("a", "b", "c"))
    rec_t = _records(1, layers=("b", "c", "d"))
    # Default: the layers both paths recorded.
    assert align_layout_loss(rec_id, rec_t).item() == pytest.approx(
        align_layout_loss(rec_id, rec_t, layers=["b", "c"]).item()
    )
    with pytest.raises(KeyError, match="not recorded"):
        align_layout_loss(rec_id, rec_t, layers=["a"])
    with pytest.raises(ValueError, match="share no layer"):
        align_semantic_loss(_records(0, layers=("a",)), _records(0, layers=("z",)))
    with pytest.raises(ValueError, match="empty"):
        align_layout_loss(rec_id, rec_t, layers=[])
    short = {"b": CrossAttnRecord(rec_t["b"].query[:1], rec_t["b"].key[:1])}
    with pytest.raises(ValueError, match="shapes differ"):
        align_semantic_loss(rec_id, short)
    with pytest.raises(ValueError, match=">= 0"):
        alignment_loss(rec_id, rec_t, lambda_sem=-1.0, lambda_layout=0.1)
    zero = alignment_loss(rec_id, rec_t, lambda_sem=0.0, lambda_layout=0.0)
    assert isinstance(zero, torch.Tensor) and zero.item() == 0.0


def test_alignment_in_bf16_is_computed_in_float32():
    rec_id, rec_t = _records(0), _records(1)
    bf = {n: CrossAttnRecord(r.query.bfloat16(), r.key.bfloat16()) for n, r in rec_id.items()}
    bt = {n: CrossAttnRecord(r.query.bfloat16(), r.key.bfloat16()) for n, r in rec_t.items()}
    assert align_semantic_loss(bf, bt).dtype == torch.float32
    assert align_layout_loss(bf, bt).dtype == torch.float32


def test_l_simple_with_and_without_mask():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # (1, 1, 2, 2)
    target = torch.tensor([[[[0.0, 0.0], [1.0, 1.0]]]])
    # Squared errors 1, 4, 4, 9.
    assert l_simple(pred, target).item() == pytest.approx(18 / 4)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    assert l_simple(pred, target, mask).item() == pytest.approx((1 + 9) / 2)
    soft = torch.tensor([[[[0.5, 1.0], [0.0, 0.0]]]])
    assert l_simple(pred, target, soft).item() == pytest.approx((0.5 * 1 + 4) / 1.5)
    # A (B, 1, h, w) mask broadcasts over channels.
    pred2, target2 = pred.expand(1, 3, 2, 2), target.expand(1, 3, 2, 2)
    assert l_simple(pred2, target2, mask).item() == pytest.approx(5.0)
    assert l_simple(pred.bfloat16(), target).dtype == torch.float32


def test_diffusion_target_epsilon_and_v_prediction():
    from diffusers import DDPMScheduler

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 4, 3, 3, generator=g)
    eps = torch.randn(2, 4, 3, 3, generator=g)
    t = torch.tensor([10, 900])
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear")
    assert torch.equal(diffusion_target(sched, x0, eps, t), eps)

    vsched = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear", prediction_type="v_prediction"
    )
    abar = vsched.alphas_cumprod[t].view(-1, 1, 1, 1)
    expected = abar.sqrt() * eps - (1 - abar).sqrt() * x0  # Salimans & Ho 2022, eq. 9
    assert torch.allclose(diffusion_target(vsched, x0, eps, t), expected, atol=1e-6)

    ssched = DDPMScheduler(prediction_type="sample")
    assert torch.equal(diffusion_target(ssched, x0, eps, t), x0)


def test_id_loss_for_identical_and_opposite_embeddings():
    e = torch.randn(3, 128, generator=torch.Generator().manual_seed(0))
    assert id_loss(e, e.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert id_loss(e, 5.0 * e).item() == pytest.approx(0.0, abs=1e-6)  # cosine: scale-free
    assert id_loss(e, -e).item() == pytest.approx(2.0, abs=1e-6)
    per = id_loss(e, torch.cat([e[:1], -e[1:]]), reduction="none")
    assert per.shape == (3,) and torch.allclose(per, torch.tensor([0.0, 2.0, 2.0]), atol=1e-6)


def test_import_is_light():
    code = "import sys, sameface.losses; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
