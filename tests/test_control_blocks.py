"""Control blocks beside a frozen UNet's transformer blocks (FeedFace's face-controlnet) on tiny
SD1 / SDXL UNets: zero-initialised = the base model bit for bit, exact install/remove, gradients
reach only the control blocks, gradient checkpointing, and the condition's scale."""

from __future__ import annotations

import pytest
import torch

from sameface.adapters.control_blocks import ControlBlocks, transformer_blocks
from sameface.errors import SamefaceError
from sameface.models import tiny_base_model


def _inputs(base, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    unet = base.unet
    size = base.resolution // base.vae_scale_factor
    x = torch.randn(batch, unet.config.in_channels, size, size, generator=g)
    text = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=g)
    added = None
    if base.family == "sdxl":
        added = {
            "text_embeds": torch.randn(
                batch,
                unet.config.projection_class_embeddings_input_dim
                - 6 * unet.config.addition_time_embed_dim,
                generator=g,
            ),
            "time_ids": torch.tensor([[64, 64, 0, 0, 64, 64]] * batch, dtype=torch.float32),
        }
    return x, torch.tensor([500] * batch), text, added


def _run(base, kwargs=None, seed=0):
    x, t, text, added = _inputs(base, seed=seed)
    return base.unet(x, t, text, added_cond_kwargs=added, cross_attention_kwargs=kwargs).sample


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_zero_initialised_blocks_are_the_base_model(family):
    base = tiny_base_model(family)
    with torch.no_grad():
        want = _run(base)
        names = [n for n, _ in base.unet.named_parameters()]
        procs = dict(base.unet.attn_processors)
        controls = ControlBlocks(base.unet)
        assert len(controls.blocks) == len(transformer_blocks(base.unet)) > 0
        tokens = torch.randn(2, 4, controls.cond_dim)
        with controls:
            got = _run(base, {"control_tokens": tokens})
            assert torch.equal(got, want)
            assert torch.equal(_run(base), want)  # no tokens: the base model
        assert [n for n, _ in base.unet.named_parameters()] == names
        assert dict(base.unet.attn_processors) == procs
        for block in transformer_blocks(base.unet).values():
            assert not block._forward_hooks and not block._forward_pre_hooks
        assert torch.equal(_run(base), want)
        assert not any(k.startswith("unet") for k in controls.state_dict())


def test_trained_blocks_change_the_output_and_remove_exactly():
    base = tiny_base_model("sd1")
    with torch.no_grad():
        want = _run(base)
        controls = ControlBlocks(base.unet, init="random")
        for block in controls.blocks.values():
            torch.nn.init.normal_(block.out.weight, std=0.05)
        tokens = torch.randn(2, 3, controls.cond_dim)
        with controls:
            full = _run(base, {"control_tokens": tokens})
            half = _run(base, {"control_tokens": tokens, "control_scale": 0.5})
            off = _run(base, {"control_tokens": tokens, "control_scale": 0.0})
            other = _run(base, {"control_tokens": torch.randn(2, 3, controls.cond_dim)})
        assert (full - want).abs().max() > 1e-4 and (other - full).abs().max() > 1e-5
        assert (half - want).abs().max() < (full - want).abs().max()
        assert torch.equal(off, want)
        assert torch.equal(_run(base), want)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradients_reach_only_the_control_blocks(checkpointing):
    base = tiny_base_model("sd1")
    base.unet.requires_grad_(False)
    if checkpointing:
        base.unet.enable_gradient_checkpointing()
        base.unet.train()
    controls = ControlBlocks(base.unet)
    tokens = torch.randn(2, 3, controls.cond_dim, requires_grad=True)
    with controls:
        out = _run(base, {"control_tokens": tokens})
        out.pow(2).mean().backward()
    grads = {n: p.grad for n, p in controls.named_parameters()}
    # The zero output layer gets gradient first; through it nothing flows yet.
    assert all(
        grads[n] is not None and grads[n].abs().sum() > 0 for n in grads if n.endswith("out.weight")
    )
    assert all(p.grad is None for p in base.unet.parameters())


def test_bad_condition_and_double_attachment_are_refused():
    base = tiny_base_model("sd1")
    controls = ControlBlocks(base.unet)
    with controls:
        with pytest.raises(SamefaceError, match="batch"):
            _run(base, {"control_tokens": torch.randn(1, 3, controls.cond_dim)})
        with pytest.raises(SamefaceError, match="already has control blocks"):
            ControlBlocks(base.unet).install()
    with pytest.raises(ValueError, match="init"):
        ControlBlocks(base.unet, init="zeros")
