"""`adapters.lora.UNetLora`: injected exactly, removed exactly, diffusers' layout."""

from __future__ import annotations

import pytest
import torch

from sameface.adapters.attention import attention_layers, is_cross_attention
from sameface.adapters.lora import ALL_ATTENTION, CROSS_ATTENTION, LORA_FILE, UNetLora
from sameface.errors import SamefaceError
from sameface.models import tiny_base_model


def _unet_out(base, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 8, 8, generator=g)
    hidden = torch.randn(1, 77, 32, generator=g)
    with torch.no_grad():
        return base.unet(x, torch.tensor([10]), hidden).sample


def test_inject_is_exact_and_remove_gives_the_unet_back():
    base = tiny_base_model("sd1")
    base.unet.conv_in.weight.requires_grad_(True)  # a flag of the caller's, to be kept
    names = [n for n, _ in base.unet.named_modules()]
    state = {k: v.clone() for k, v in base.unet.state_dict().items()}
    before = _unet_out(base)
    lora = UNetLora(base.unet, rank=4)
    cross = [n for n, a in attention_layers(base.unet).items() if is_cross_attention(a)]
    assert len(lora.layers) == 4 * len(cross)
    assert all(n.endswith(CROSS_ATTENTION) for n in lora.layers)
    assert torch.equal(_unet_out(base), before)  # B = 0
    assert all(p.requires_grad for p in lora.parameters())
    with torch.no_grad():
        for p in lora.parameters():
            p.add_(0.1)
    assert not torch.allclose(_unet_out(base), before)
    lora.remove()
    assert [n for n, _ in base.unet.named_modules()] == names
    assert all(torch.equal(v, state[k]) for k, v in base.unet.state_dict().items())
    assert base.unet.conv_in.weight.requires_grad
    assert torch.equal(_unet_out(base), before)
    lora.remove()  # idempotent


def test_diffusers_layout_round_trip_and_checks(tmp_path):
    base = tiny_base_model("sdxl")
    with UNetLora(base.unet, rank=2, targets=ALL_ATTENTION) as lora:
        with torch.no_grad():
            for i, p in enumerate(lora.parameters()):
                p.fill_(0.01 * (i % 7))
        saved = lora.state_dict_diffusers()
        changed = _sdxl_out(base)
    assert all(k.startswith("unet.") and ".lora_" in k for k in saved)
    with UNetLora(base.unet, rank=2, targets=ALL_ATTENTION) as again:
        again.load_diffusers(saved)
        assert torch.equal(_sdxl_out(base), changed)
    with UNetLora(base.unet, rank=2) as fewer, pytest.raises(SamefaceError, match="unknown"):
        fewer.load_diffusers(saved)
    other = UNetLora(base.unet, rank=3, targets=ALL_ATTENTION)
    with other, pytest.raises(SamefaceError, match="another rank"):
        other.load_diffusers(saved)
    assert LORA_FILE == "pytorch_lora_weights.safetensors"


def test_a_second_lora_on_one_unet_is_refused():
    base = tiny_base_model("sd1")
    with UNetLora(base.unet, rank=2), pytest.raises(SamefaceError, match="already"):
        UNetLora(base.unet, rank=2)
    with pytest.raises(SamefaceError, match="no UNet module"):
        UNetLora(base.unet, rank=2, targets=("attn9.to_q",))
    assert not any("lora" in n for n, _ in base.unet.named_modules())


def _sdxl_out(base):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    hidden = torch.randn(1, 77, 96, generator=g)
    added = {"text_embeds": torch.randn(1, 64, generator=g), "time_ids": torch.zeros(1, 6)}
    with torch.no_grad():
        return base.unet(x, torch.tensor([10]), hidden, added_cond_kwargs=added).sample
