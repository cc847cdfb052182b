"""BaseModel: tiny builders, save/load round trip, pipelines, helpers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from sameface.errors import SamefaceError
from sameface.models import (
    BaseModel,
    check_consistency,
    load_base_model,
    save_base_model,
    tiny_base_model,
)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("clip-tok")


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_import_is_light():
    code = (
        "import sys, sameface.models as m; m.__all__; "
        "print(sorted(k for k in ('torch', 'diffusers', 'transformers') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_tiny_shapes_and_determinism(tok_dir, family):
    a = tiny_base_model(family, seed=0, tokenizer_cache_dir=tok_dir)
    b = tiny_base_model(family, seed=0, tokenizer_cache_dir=tok_dir)
    c = tiny_base_model(family, seed=1, tokenizer_cache_dir=tok_dir)
    n = 2 if family == "sdxl" else 1
    assert len(a.tokenizers) == len(a.text_encoders) == n
    assert all(_same_weights(a.modules()[k], b.modules()[k]) for k in a.modules())
    assert not _same_weights(a.unet, c.unet)
    unet_params = sum(p.numel() for p in a.unet.parameters())
    assert 0.5e6 < unet_params < 3e6
    assert a.text_encoder.config.vocab_size == len(a.tokenizer) == 49408
    assert (a.vae_scale_factor, a.resolution, a.prediction_type) == (8, 64, "epsilon")
    assert [t.pad_token for t in a.tokenizers] == (
        ["<|endoftext|>", "!"]
        if family == "sdxl"
        else ["!"]
        if family == "sd2"
        else ["<|endoftext|>"]
    )
    check_consistency(a)
    # builders leave torch's global RNG alone
    torch.manual_seed(123)
    x = torch.rand(1)
    torch.manual_seed(123)
    tiny_base_model(family, tokenizer_cache_dir=tok_dir)
    assert torch.equal(torch.rand(1), x)


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_save_load_round_trip(tmp_path, tok_dir, family):
    model = tiny_base_model(
        family,
        prediction_type="v_prediction" if family == "sd2" else None,
        tokenizer_cache_dir=tok_dir,
    )
    save_base_model(model, tmp_path)
    loaded = load_base_model(tmp_path)
    assert loaded.family == family and loaded.source == str(tmp_path)
    for name, mod in model.modules().items():
        assert _same_weights(mod, loaded.modules()[name]), name
    assert type(loaded.scheduler) is type(model.scheduler)
    assert loaded.prediction_type == model.prediction_type
    for t0, t1 in zip(model.tokenizers, loaded.tokenizers, strict=True):
        assert t1.pad_token == t0.pad_token
        assert t1("barack obama").input_ids == t0("barack obama").input_ids


def test_load_with_dtype(tmp_path, tok_dir):
    save_base_model(tiny_base_model("sdxl", tokenizer_cache_dir=tok_dir), tmp_path)
    model = load_base_model(tmp_path, dtype=torch.bfloat16)
    assert {p.dtype for m in model.modules().values() for p in m.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_pipeline_generates(tok_dir, family):
    model = tiny_base_model(family, tokenizer_cache_dir=tok_dir)
    pipe = model.as_pipeline()
    assert type(pipe) is model.pipeline_class()
    assert pipe.unet is model.unet  # shared, not copied
    pipe.set_progress_bar_config(disable=True)

    def run():
        return pipe(
            "a photo of a person",
            negative_prompt="blurry",
            num_inference_steps=2,
            guidance_scale=5.0,
            height=64,
            width=32,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        ).images

    images = run()
    assert images.shape == (1, 64, 32, 3) and np.isfinite(images).all()
    assert np.array_equal(images, run())


def test_helpers(tok_dir):
    model = tiny_base_model("sdxl", tokenizer_cache_dir=tok_dir)
    assert model.tokenizer is model.tokenizers[0] and model.text_encoder is model.text_encoders[0]
    assert set(model.modules()) == {"unet", "vae", "text_encoder", "text_encoder_2"}
    assert set(model.components()) >= {"tokenizer", "tokenizer_2", "scheduler", "unet"}
    assert model.freeze() is model
    assert not any(p.requires_grad for m in model.modules().values() for p in m.parameters())
    assert not model.unet.training
    assert model.to(dtype=torch.bfloat16) is model
    assert model.dtype == torch.bfloat16 and model.vae.dtype == torch.bfloat16
    assert str(model.to("cpu").device) == "cpu"


def test_validation(tok_dir):
    sd1 = tiny_base_model("sd1", tokenizer_cache_dir=tok_dir)
    with pytest.raises(ValueError, match="2 tokenizer"):
        BaseModel("sdxl", sd1.tokenizers, sd1.text_encoders, sd1.unet, sd1.vae, sd1.scheduler)
    with pytest.raises(ValueError, match="family"):
        BaseModel("sd3", sd1.tokenizers, sd1.text_encoders, sd1.unet, sd1.vae, sd1.scheduler)
    xl = tiny_base_model("sdxl", tokenizer_cache_dir=tok_dir)
    mixed = BaseModel("sd1", sd1.tokenizers, sd1.text_encoders, xl.unet, sd1.vae, sd1.scheduler)
    with pytest.raises(SamefaceError, match="cross_attention_dim"):
        check_consistency(mixed)
