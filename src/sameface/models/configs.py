"""The real configs of SD1.5, SD2.1-base, SD2.1 (768, v) and SDXL base 1.0, as plain dicts.

Copied from the `model_index.json` / `*/config.json` files of the diffusers repos named in
`REPOS`, keeping every key that changes the architecture or the noise schedule. Used to build
real-architecture models with random weights (slow tests) and, on request, as a local config
folder for loading single-file checkpoints offline (`load_base_model(..., config="builtin")`).
Pure data: importing this module imports nothing heavy.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

REPOS = {
    "sd1": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd2": "stabilityai/stable-diffusion-2-1-base",
    "sd2-v": "stabilityai/stable-diffusion-2-1",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
}

_SD_BETAS = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "trained_betas": None,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}

_VAE = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}

_SD_UNET = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,  # diffusers' name; it is the number of heads (8 x 40..160 dims)
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
}

# OpenAI CLIP ViT-L/14 text tower (SD1.x, and SDXL's first encoder).
_CLIP_L = {
    "architectures": ["CLIPTextModel"],
    "model_type": "clip_text_model",
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "vocab_size": 49408,
}

# OpenCLIP ViT-H/14 text tower as SD2.x uses it: 23 of its 24 layers (SD2 conditions on the
# penultimate layer, so diffusers stores the model truncated), GELU, width 1024.
_OPENCLIP_H = {
    **_CLIP_L,
    "hidden_act": "gelu",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "projection_dim": 512,
}

# OpenCLIP ViT-bigG/14 text tower with its projection (SDXL's second encoder; all 32 layers,
# the pipeline takes hidden_states[-2] itself).
_OPENCLIP_BIGG = {
    **_CLIP_L,
    "architectures": ["CLIPTextModelWithProjection"],
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
}

_SD_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
    # The real repos list a safety checker; sameface never loads it.
    "safety_checker": [None, None],
    "feature_extractor": [None, None],
    "requires_safety_checker": False,
}

SD15: dict[str, Any] = {
    "model_index": _SD_INDEX,
    "unet": _SD_UNET,
    "vae": _VAE,
    "text_encoder": _CLIP_L,
    "scheduler": {"_class_name": "PNDMScheduler", **_SD_BETAS},
    "tokenizer": {"pad_token": "<|endoftext|>"},
}

SD21_BASE: dict[str, Any] = {
    "model_index": _SD_INDEX,
    "unet": {
        **_SD_UNET,
        "attention_head_dim": [5, 10, 20, 20],  # heads of 64 dims at every level
        "cross_attention_dim": 1024,
        "dual_cross_attention": False,
        "num_class_embeds": None,
        "only_cross_attention": False,
        "use_linear_projection": True,
    },
    "vae": {**_VAE, "sample_size": 768},
    "text_encoder": _OPENCLIP_H,
    "scheduler": {"_class_name": "PNDMScheduler", **_SD_BETAS, "prediction_type": "epsilon"},
    "tokenizer": {"pad_token": "!"},
}

SD21: dict[str, Any] = {
    **SD21_BASE,
    "unet": {**SD21_BASE["unet"], "sample_size": 96, "upcast_attention": True},
    "scheduler": {"_class_name": "DDIMScheduler", **_SD_BETAS, "prediction_type": "v_prediction"},
}

SDXL: dict[str, Any] = {
    "model_index": {
        "_class_name": "StableDiffusionXLPipeline",
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "image_encoder": [None, None],
        "feature_extractor": [None, None],
        "force_zeros_for_empty_prompt": True,
    },
    "unet": {
        "_class_name": "UNet2DConditionModel",
        "act_fn": "silu",
        "addition_embed_type": "text_time",
        "addition_embed_type_num_heads": 64,
        "addition_time_embed_dim": 256,
        "attention_head_dim": [5, 10, 20],
        "block_out_channels": [320, 640, 1280],
        "center_input_sample": False,
        "class_embed_type": None,
        "class_embeddings_concat": False,
        "conv_in_kernel": 3,
        "conv_out_kernel": 3,
        "cross_attention_dim": 2048,  # 768 (CLIP-L) + 1280 (bigG) hidden states, concatenated
        "cross_attention_norm": None,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "downsample_padding": 1,
        "dual_cross_attention": False,
        "encoder_hid_dim": None,
        "encoder_hid_dim_type": None,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 4,
        "layers_per_block": 2,
        "mid_block_only_cross_attention": None,
        "mid_block_scale_factor": 1,
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "num_attention_heads": None,
        "num_class_embeds": None,
        "only_cross_attention": False,
        "out_channels": 4,
        # 6 size/crop numbers x 256 Fourier dims + 1280 pooled bigG text embedding
        "projection_class_embeddings_input_dim": 2816,
        "resnet_out_scale_factor": 1.0,
        "resnet_skip_time_act": False,
        "resnet_time_scale_shift": "default",
        "sample_size": 128,
        "time_cond_proj_dim": None,
        "time_embedding_act_fn": None,
        "time_embedding_dim": None,
        "time_embedding_type": "positional",
        "timestep_post_act": None,
        "transformer_layers_per_block": [1, 2, 10],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "upcast_attention": None,
        "use_linear_projection": True,
    },
    "vae": {**_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True},
    "text_encoder": _CLIP_L,
    "text_encoder_2": _OPENCLIP_BIGG,
    "scheduler": {
        "_class_name": "EulerDiscreteScheduler",
        **_SD_BETAS,
        "interpolation_type": "linear",
        "prediction_type": "epsilon",
        "sample_max_value": 1.0,
        "timestep_spacing": "leading",
        "use_karras_sigmas": False,
    },
    "tokenizer": {"pad_token": "<|endoftext|>"},
    "tokenizer_2": {"pad_token": "!"},
}

_BY_KEY = {"sd1": SD15, "sd2": SD21_BASE, "sd2-v": SD21, "sdxl": SDXL}


def config_key(family: str, prediction_type: str | None = None) -> str:
    """Key into `REPOS` for a family: SD2 with v-prediction is the 768-px SD2.1 repo.

    Args:
        family: `"sd1"`, `"sd2"` or `"sdxl"`.
        prediction_type: `"v_prediction"` selects SD2.1 (768 px) for sd2.
    """
    if family not in ("sd1", "sd2", "sdxl"):
        raise ValueError(f"family must be 'sd1', 'sd2' or 'sdxl', not {family!r}")
    return "sd2-v" if family == "sd2" and prediction_type == "v_prediction" else family


def real_configs(family: str, prediction_type: str | None = None) -> dict[str, Any]:
    """A deep copy of one family's real configs: `{component: config dict}`.

    Args:
        family: `"sd1"` (SD1.5), `"sd2"` (SD2.1-base) or `"sdxl"` (SDXL base 1.0).
        prediction_type: `"v_prediction"` gives SD2.1 (768 px) for sd2; for other families it
            overrides the scheduler's prediction type.
    """
    cfg = copy.deepcopy(_BY_KEY[config_key(family, prediction_type)])
    if prediction_type:
        cfg["scheduler"]["prediction_type"] = prediction_type
    return cfg


def write_config_folder(
    family: str,
    folder: str | os.PathLike[str],
    *,
    prediction_type: str | None = None,
    tokenizer_cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Write a weightless diffusers folder (model_index, configs, tokenizers) for a family.

    This is what `from_single_file(..., config=folder)` needs to convert an original
    checkpoint without the hub.

    Args:
        family: `"sd1"`, `"sd2"` or `"sdxl"`.
        folder: destination (created).
        prediction_type: see `real_configs`.
        tokenizer_cache_dir: passed to `clip_tokenizer`.
    """
    from sameface.models.tokenizer import clip_tokenizer

    folder = Path(folder)
    cfg = real_configs(family, prediction_type)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps(cfg["model_index"], indent=2))
    for name, conf in cfg.items():
        if name == "model_index":
            continue
        sub = folder / name
        sub.mkdir(exist_ok=True)
        if name.startswith("tokenizer"):
            tok = clip_tokenizer(pad_token=conf["pad_token"], cache_dir=tokenizer_cache_dir)
            tok.save_pretrained(str(sub))
        else:
            fname = "scheduler_config.json" if name == "scheduler" else "config.json"
            (sub / fname).write_text(json.dumps(conf, indent=2))
    return folder
