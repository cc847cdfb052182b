"""Real architectures (real configs, random weights): parameter counts and one forward pass.

Slow: SD1.5 fp32 ~10 s and 4.7 GB; SDXL in bfloat16 ~30 s and ~8 GB. Run with `make test-slow`.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from sameface.models import load_base_model, real_config_base_model
from tests.models_ldm import to_ldm_state_dict

pytestmark = pytest.mark.slow

M = 1_000_000


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _ids(tokenizer, text="a photo of barack obama"):
    return tokenizer(
        text, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    ).input_ids


@pytest.mark.parametrize(
    ("family", "unet_params", "text_params", "width"),
    [("sd1", 859.52 * M, 123.06 * M, 768), ("sd2", 865.91 * M, 340.39 * M, 1024)],
    ids=["sd1", "sd2"],
)
def test_sd1_sd2_real_architecture(family, unet_params, text_params, width):
    model = real_config_base_model(family)
    assert _count(model.unet) == pytest.approx(unet_params, rel=1e-5)
    assert _count(model.text_encoder) == pytest.approx(text_params, rel=1e-5)
    assert _count(model.vae) == pytest.approx(83.65 * M, rel=1e-4)
    assert model.resolution == 512
    with torch.no_grad():
        hidden = model.text_encoder(_ids(model.tokenizer)).last_hidden_state
        assert hidden.shape == (1, 77, width)
        out = model.unet(torch.randn(1, 4, 8, 8), 500, encoder_hidden_states=hidden).sample
    assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all()


def test_sdxl_real_architecture_bf16():
    bf16 = torch.bfloat16
    model = real_config_base_model("sdxl", dtype=bf16)
    assert model.unet.dtype == bf16 and model.text_encoders[1].dtype == bf16
    assert _count(model.unet) == pytest.approx(2567.46 * M, rel=1e-5)
    assert [_count(t) for t in model.text_encoders] == [
        pytest.approx(123.06 * M, rel=1e-5),
        pytest.approx(694.66 * M, rel=1e-5),
    ]
    assert model.resolution == 1024
    with torch.no_grad():
        # What StableDiffusionXLPipeline feeds the UNet: both encoders' penultimate hidden
        # states side by side, the second encoder's pooled projection and 6 size/crop ids.
        outs = [
            te(_ids(tok), output_hidden_states=True)
            for tok, te in zip(model.tokenizers, model.text_encoders, strict=True)
        ]
        context = torch.cat([o.hidden_states[-2] for o in outs], dim=-1)
        assert context.shape == (1, 77, 2048)
        pooled = outs[1].text_embeds
        assert pooled.shape == (1, 1280)
        time_ids = torch.tensor([[1024, 1024, 0, 0, 1024, 1024]], dtype=bf16)
        out = model.unet(
            torch.randn(1, 4, 8, 8, dtype=bf16),
            500,
            encoder_hidden_states=context,
            added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids},
        ).sample
    assert out.shape == (1, 4, 8, 8) and torch.isfinite(out.float()).all()


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_real_layout_single_file_with_builtin_configs(tmp_path, family):
    """A full-size original-layout checkpoint loads offline with config="builtin"."""
    model = real_config_base_model(family, dtype=torch.bfloat16)
    path = tmp_path / "model.safetensors"
    save_file(to_ldm_state_dict(model), str(path))
    loaded = load_base_model(path, config="builtin", dtype=torch.bfloat16)
    assert loaded.family == family
    assert type(loaded.scheduler).__name__ == "PNDMScheduler"  # the real repos' scheduler
    for name, mod in model.modules().items():
        want, got = mod.state_dict(), loaded.modules()[name].state_dict()
        assert want.keys() == got.keys(), name
        assert all(torch.equal(want[k], got[k]) for k in want), name
