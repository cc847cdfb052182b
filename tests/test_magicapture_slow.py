"""MagiCapture on the real SD1.5 / SDXL architectures (random weights): both phases with a
style reference and the ID loss on SD1.5; the LoRA's layers on SDXL."""

from __future__ import annotations

import pytest
import torch

from sameface.adapters.attention import attention_layers, is_cross_attention
from sameface.adapters.lora import UNetLora
from sameface.identity import Identity
from sameface.methods.magicapture import MagiCaptureConfig, MagiCapturePipeline, personalize
from sameface.models import real_config_base_model

pytestmark = pytest.mark.slow


def test_both_phases_on_real_sd15(tmp_path, obama, biden):
    ident = Identity.from_images([obama], square_size=64, mask_method="landmarks")
    base = real_config_base_model("sd1")
    settings = MagiCaptureConfig(ti_steps=1, lora_steps=2, resolution=64, id_weight=0.25, seed=3)
    out = personalize(ident, base, settings, tmp_path, progress=False, style=biden)
    with MagiCapturePipeline.from_artifact(out, base) as pipe:
        assert len(pipe.lora.layers) == 16 * 4  # SD1.5's 16 cross-attention layers × q/k/v/out
        img = pipe(
            "a photo of a <id> person in the style of <style>",
            num_inference_steps=1,
            height=64,
            width=64,
            output_type="np",
        ).images[0]
    assert img.shape == (64, 64, 3)
    assert not any("lora" in n for n, _ in base.unet.named_modules())


def test_lora_on_every_sdxl_attention_projection():
    base = real_config_base_model("sdxl", dtype=torch.bfloat16)
    cross = [n for n, a in attention_layers(base.unet).items() if is_cross_attention(a)]
    before = sum(p.numel() for p in base.unet.parameters())
    with UNetLora(base.unet, rank=4, targets=("attn1.to_q", "attn2.to_q")) as lora:
        assert len(cross) == 70 and len(lora.layers) == 140
        assert all(p.dtype == torch.float32 for p in lora.parameters())
    assert sum(p.numel() for p in base.unet.parameters()) == before
