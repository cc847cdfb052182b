"""PuLID on the real SD1.5 / SDXL architectures and a real-config CLIP ViT-L/14-336 (random
weights): PuLID's released encoder shape (IDFormer, 32 tokens, 5 ViT layers), personalise,
generate one step."""

from __future__ import annotations

import pytest
import torch

from sameface.identity import Identity
from sameface.methods.pulid import ClipVision, PuLIDConfig, PuLIDModel, PuLIDPipeline, personalize
from sameface.models import real_config_base_model
from tests.conftest import sdxl_train_dtype

pytestmark = pytest.mark.slow


def clip_vit_l_336(dtype: torch.dtype) -> ClipVision:
    """openai/clip-vit-large-patch14-336's vision tower (24 layers, width 1024, 768-d), random."""
    from sameface.models.clip_vision import random_clip_vision_l336

    return random_clip_vision_l336(dtype)


@pytest.mark.parametrize(
    ("family", "dtype", "width"), [("sd1", torch.float32, 768), ("sdxl", sdxl_train_dtype(), 2048)]
)
def test_released_shape_on_the_real_architecture(tmp_path, obama, family, dtype, width):
    ident = Identity.from_images([obama], square_size=64, mask_method="landmarks")
    base = real_config_base_model(family, dtype=dtype)
    vision = clip_vit_l_336(dtype)
    assert vision.seq_len == 577  # PuLID's id_vit_hidden: 5 × (1, 577, 1024)
    with PuLIDModel(base, PuLIDConfig(), vision=vision) as model:
        id_vec, vit = model.condition(ident)
        assert id_vec.shape == (1, 1, 128 + 768)
        assert [h.shape for h in vit] == [(1, 1, 577, 1024)] * 5
        cond, uncond = model.identity_tokens(ident)
        assert cond.shape == uncond.shape == (1, 32, width)
        assert torch.isfinite(cond).all() and torch.isfinite(uncond).all()
        layers = len(model.adapter.layer_names)
        assert layers == (16 if family == "sd1" else 70)
        model.save(tmp_path / "pulid")
    out = personalize(
        ident, base, PuLIDConfig(), tmp_path / "art", adapter=tmp_path / "pulid", vision=vision
    )
    with PuLIDPipeline.from_artifact(out, base) as pipe:
        img = pipe(
            "a photo of <id>", num_inference_steps=1, height=64, width=64, output_type="np"
        ).images[0]
    assert img.shape == (64, 64, 3)
