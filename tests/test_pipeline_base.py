"""The shared method-pipeline base: argument checks, negatives, guidance, CFG batch order and
output assembly, with a recording stand-in for the diffusers pipeline."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sameface.methods.pipeline_base import MethodPipeline, cfg_batch


class _Pipe:
    def __init__(self):
        self.calls = []

    def __call__(self, **kw):
        self.calls.append(kw)
        n = len(kw["prompt"]) * kw["num_images_per_prompt"]
        return SimpleNamespace(images=[f"img{i}" for i in range(n)])


class _Method(MethodPipeline):
    def __init__(self, sdxl=False, distilled=False):
        config = {"time_cond_proj_dim": 8 if distilled else None}
        unet = SimpleNamespace(config=config)
        self.base = SimpleNamespace(is_sdxl=sdxl, resolution=64, unet=unet)
        self.pipe = _Pipe()
        self.closed = False

    def text(self, prompt):
        return prompt.replace("<id>", "a person")

    def close(self):
        self.closed = True


def test_cfg_batch_puts_the_unconditional_half_first():
    u, c = torch.zeros(2, 1), torch.ones(2, 1)
    assert torch.equal(cfg_batch(u, c, True), torch.tensor([[0.0], [0.0], [1.0], [1.0]]))
    assert cfg_batch(u, c, False) is c


def test_generate_assembles_the_call_and_the_output():
    m = _Method()
    seen = []
    out = m.generate(
        ["<id> a", "b"],
        "ugly <id>",
        3,
        None,
        None,
        2,
        None,
        32,
        "np",
        extra=lambda n, g: seen.append((n, g)) or {"cross_attention_kwargs": {"k": n}},
    )
    call = m.pipe.calls[0]
    assert call["prompt"] == ["a person a", "b"]
    assert call["negative_prompt"] == ["ugly a person"] * 2
    assert call["guidance_scale"] == 7.5 and seen == [(4, 7.5)]
    assert (call["height"], call["width"]) == (64, 32)
    assert call["cross_attention_kwargs"] == {"k": 4}
    assert out.prompts == ["<id> a", "<id> a", "b", "b"] and len(out.images) == 4
    assert _Method(sdxl=True).default_guidance() == 5.0


def test_checks_and_cfg_rule():
    m = _Method()
    with pytest.raises(ValueError, match="num_inference_steps must be in 1"):
        m.generate("a", None, 0, None, None, 1, None, None, "np")
    with pytest.raises(ValueError, match="height"):
        m.generate("a", None, 1, None, None, 1, 30, None, "np")
    with pytest.raises(ValueError, match="one per prompt"):
        m.generate(["a", "b"], ["n"], 1, None, None, 1, None, None, "np")
    assert m.negatives(None, 2) is None
    assert m.do_cfg(7.5) and not m.do_cfg(1.0)
    assert not _Method(distilled=True).do_cfg(7.5)
    with m:
        pass
    assert m.closed
