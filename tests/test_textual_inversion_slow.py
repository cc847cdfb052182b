"""Textual inversion on the real SD1.5 and SDXL architectures (random weights), two steps."""

from __future__ import annotations

import pytest
import torch

from sameface.identity import Identity
from sameface.methods.textual_inversion import (
    TextualInversionConfig,
    TextualInversionPipeline,
    personalize,
)
from sameface.methods.textual_inversion.artifact import load_embeddings
from sameface.models import real_config_base_model
from tests.conftest import sdxl_train_dtype

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("family", "dtype", "dims"),
    [("sd1", torch.float32, [768]), ("sdxl", sdxl_train_dtype(), [768, 1280])],
)
def test_two_steps_on_the_real_architecture(tmp_path, obama, family, dtype, dims):
    ident = Identity.from_images([obama], square_size=64, mask_method="landmarks")
    base = real_config_base_model(family, dtype=dtype)
    cfg = TextualInversionConfig(steps=2, init="face", resolution=64, checkpoint_every=1)
    personalize(ident, base, cfg, tmp_path, progress=False)
    vectors, meta = load_embeddings(tmp_path)
    assert [v.shape for v in vectors] == [(2, d) for d in dims]
    assert meta["loss"]["steps"] == 2 and meta["loss"]["non_finite_steps"] == 0
    size = (tmp_path / "learned_embeds.safetensors").stat().st_size
    assert size <= 16 * 1024 or family == "sdxl"  # SD1.5, 2 tokens: ~6 KB
    with TextualInversionPipeline.from_artifact(tmp_path, base) as pipe:
        img = pipe(
            "a photo of <id>", num_inference_steps=1, height=64, width=64, output_type="np"
        ).images[0]
    assert img.shape == (64, 64, 3)
    del base
