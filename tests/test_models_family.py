"""Family detection from diffusers folders and from single-file checkpoint keys."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from sameface.errors import SamefaceError
from sameface.models import (
    FamilyInfo,
    detect_family,
    family_from_single_file,
    save_base_model,
    tiny_base_model,
    write_config_folder,
)

UNET = "model.diffusion_model."


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("clip-tok")


@pytest.mark.parametrize(
    ("family", "prediction"),
    [("sd1", "epsilon"), ("sd2", "epsilon"), ("sd2", "v_prediction"), ("sdxl", "epsilon")],
)
def test_tiny_folders(tmp_path, tok_dir, family, prediction):
    model = tiny_base_model(family, prediction_type=prediction, tokenizer_cache_dir=tok_dir)
    save_base_model(model, tmp_path)
    info = detect_family(tmp_path)
    assert info.family == family and info.prediction_type == prediction
    assert info.resolution == 64  # 8x8 latents x 8


@pytest.mark.parametrize(
    ("family", "prediction", "resolution", "repo"),
    [
        ("sd1", None, 512, "stable-diffusion-v1-5/stable-diffusion-v1-5"),
        ("sd2", None, 512, "stabilityai/stable-diffusion-2-1-base"),
        ("sd2", "v_prediction", 768, "stabilityai/stable-diffusion-2-1"),
        ("sdxl", None, 1024, "stabilityai/stable-diffusion-xl-base-1.0"),
    ],
)
def test_real_config_folders(tmp_path, tok_dir, family, prediction, resolution, repo):
    write_config_folder(family, tmp_path, prediction_type=prediction, tokenizer_cache_dir=tok_dir)
    info = detect_family(tmp_path)
    assert info == FamilyInfo(family, prediction or "epsilon", resolution, repo)


def test_unknown_and_unsupported_folders(tmp_path, tok_dir):
    write_config_folder("sd1", tmp_path, tokenizer_cache_dir=tok_dir)
    unet = json.loads((tmp_path / "unet" / "config.json").read_text())
    (tmp_path / "unet" / "config.json").write_text(json.dumps({**unet, "in_channels": 9}))
    with pytest.raises(SamefaceError, match="9 input channels"):
        detect_family(tmp_path)
    te = json.loads((tmp_path / "text_encoder" / "config.json").read_text())
    (tmp_path / "unet" / "config.json").write_text(json.dumps({**unet, "cross_attention_dim": 640}))
    (tmp_path / "text_encoder" / "config.json").write_text(json.dumps({**te, "hidden_act": "relu"}))
    with pytest.raises(SamefaceError, match="unknown model family"):
        detect_family(tmp_path)


def _ckpt(path, keys: dict[str, tuple], metadata=None):
    save_file({k: torch.zeros(shape) for k, shape in keys.items()}, str(path), metadata=metadata)
    return path


CONV_IN = {UNET + "input_blocks.0.0.weight": (320, 4, 3, 3)}


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            {
                "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (
                    77,
                    768,
                )
            },
            FamilyInfo("sd1", "epsilon", 512, "stable-diffusion-v1-5/stable-diffusion-v1-5"),
        ),
        (
            {"cond_stage_model.model.token_embedding.weight": (49408, 1024)},
            FamilyInfo("sd2", "epsilon", 512, "stabilityai/stable-diffusion-2-1-base"),
        ),
        (
            {
                "conditioner.embedders.0.transformer.text_model.final_layer_norm.bias": (768,),
                "conditioner.embedders.1.model.positional_embedding": (77, 1280),
            },
            FamilyInfo("sdxl", "epsilon", 1024, "stabilityai/stable-diffusion-xl-base-1.0"),
        ),
        (  # UNet only: the cross-attention width still tells the family
            {UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024)},
            FamilyInfo("sd2", "epsilon", 512, "stabilityai/stable-diffusion-2-1-base"),
        ),
        (
            {
                "cond_stage_model.transformer.text_model.final_layer_norm.bias": (768,),
                "v_pred": (0,),
            },
            FamilyInfo("sd1", "v_prediction", 512, "stable-diffusion-v1-5/stable-diffusion-v1-5"),
        ),
    ],
)
def test_single_file_keys(tmp_path, keys, expected):
    path = _ckpt(tmp_path / "m.safetensors", {**CONV_IN, **keys})
    assert family_from_single_file(path) == expected
    assert detect_family(path) == expected


def test_sd2_v_prediction_heuristic(tmp_path):
    probe = UNET + "output_blocks.11.1.transformer_blocks.0.norm1.bias"
    te = {"cond_stage_model.model.token_embedding.weight": torch.zeros(8, 4)}
    eps = tmp_path / "eps.safetensors"
    save_file({**te, probe: torch.full((1280,), 0.01) + 0.05 * torch.randn(1280)}, str(eps))
    v = tmp_path / "v.safetensors"
    save_file({**te, probe: 0.2 * torch.randn(1280)}, str(v))
    assert family_from_single_file(eps).prediction_type == "epsilon"
    info = family_from_single_file(v)
    assert (info.prediction_type, info.resolution) == ("v_prediction", 768)
    assert info.base_repo == "stabilityai/stable-diffusion-2-1"


@pytest.mark.parametrize(
    ("keys", "match"),
    [
        ({"conditioner.embedders.0.model.text_projection": (1280, 1280)}, "refiner"),
        ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320)}, "LoRA"),
        ({"down_blocks.0.resnets.0.conv1.weight": (4, 4, 3, 3)}, "single diffusers component"),
        ({"foo.bar": (1,)}, "unknown checkpoint layout"),
        (
            {
                UNET + "input_blocks.0.0.weight": (320, 9, 3, 3),
                "cond_stage_model.transformer.text_model.final_layer_norm.bias": (768,),
            },
            "9 input channels",
        ),
    ],
)
def test_single_file_rejections(tmp_path, keys, match):
    path = _ckpt(tmp_path / "m.safetensors", keys)
    with pytest.raises(SamefaceError, match=match):
        family_from_single_file(path)


def test_corrupt_single_file(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(SamefaceError, match="could not be read"):
        family_from_single_file(path)
