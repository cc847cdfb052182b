"""The bundled real configs build the real architectures (checked on the meta device)."""

from __future__ import annotations

import pytest

from sameface.models.builders import modules_from_configs
from sameface.models.configs import REPOS, config_key, real_configs, write_config_folder
from sameface.models.resolve import check_diffusers_folder

# Parameter counts of the released models (UNet, VAE, text encoder(s)).
REAL_COUNTS = {
    "sd1": (859_520_964, 83_653_863, [123_060_480]),
    "sd2": (865_910_724, 83_653_863, [340_387_840]),
    "sdxl": (2_567_463_684, 83_653_863, [123_060_480, 694_659_840]),
}


def _meta_build(cfg):
    import torch

    with torch.device("meta"):  # shapes only: no memory, no init time
        return modules_from_configs(cfg)


def _count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_real_configs_parameter_counts(family):
    unet, vae, encoders = _meta_build(real_configs(family))
    assert (_count(unet), _count(vae), [_count(e) for e in encoders]) == REAL_COUNTS[family]
    cross = unet.config.cross_attention_dim
    assert cross == sum(e.config.hidden_size for e in encoders)
    if family == "sdxl":
        # time ids (6 x 256) + pooled bigG projection (1280) feed the added embedding
        assert unet.add_embedding.linear_1.in_features == 6 * 256 + 1280


def test_key_values():
    sd1, sd2, xl = real_configs("sd1"), real_configs("sd2"), real_configs("sdxl")
    assert sd1["unet"]["attention_head_dim"] == 8 and sd1["unet"]["cross_attention_dim"] == 768
    assert sd1["unet"]["block_out_channels"] == [320, 640, 1280, 1280]
    assert sd2["unet"]["attention_head_dim"] == [5, 10, 20, 20]
    assert sd2["unet"]["use_linear_projection"] is True
    assert sd2["text_encoder"]["num_hidden_layers"] == 23
    assert sd2["text_encoder"]["hidden_act"] == "gelu"
    assert xl["unet"]["transformer_layers_per_block"] == [1, 2, 10]
    assert xl["unet"]["addition_embed_type"] == "text_time"
    assert xl["vae"]["scaling_factor"] == 0.13025 and sd1["vae"]["scaling_factor"] == 0.18215
    assert (sd2["tokenizer"]["pad_token"], xl["tokenizer_2"]["pad_token"]) == ("!", "!")
    v = real_configs("sd2", "v_prediction")
    assert v["scheduler"]["prediction_type"] == "v_prediction" and v["unet"]["sample_size"] == 96
    assert config_key("sd2", "v_prediction") == "sd2-v" and REPOS["sd2-v"].endswith("2-1")


def test_real_configs_are_copies():
    real_configs("sd1")["unet"]["cross_attention_dim"] = 1
    assert real_configs("sd1")["unet"]["cross_attention_dim"] == 768


def test_bad_family():
    with pytest.raises(ValueError, match="family"):
        real_configs("sd3")


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_write_config_folder(tmp_path, family):
    write_config_folder(family, tmp_path, tokenizer_cache_dir=tmp_path / "tok")
    missing, missing_tok = check_diffusers_folder(tmp_path, weights=False)
    assert missing == [] and missing_tok == []
    missing, _ = check_diffusers_folder(tmp_path)
    assert "unet/diffusion_pytorch_model.safetensors" in missing
