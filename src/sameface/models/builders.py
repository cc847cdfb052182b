"""Random-weight base models for tests: tiny ones (fast tests) and real-architecture ones (slow).

Tiny models follow diffusers' `get_dummy_components` but keep what the methods depend on: the
real CLIP tokenizer (so the text encoders keep CLIP's 49408-token vocabulary), the families'
block layout (cross-attention where SD has it, two text encoders for SDXL) and a VAE that
downsamples 8x like the real one. Same seed, same weights.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from sameface.models.base import PAD_TOKENS, BaseModel, save_base_model
from sameface.models.configs import REPOS, config_key, real_configs
from sameface.models.random_init import fast_random

__all__ = ["real_config_base_model", "save_base_model", "tiny_base_model"]

_TINY_TEXT = {
    "vocab_size": 49408,  # the real CLIP vocabulary, so real token ids index it
    "max_position_embeddings": 77,
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 3,  # >= 2: SDXL reads the penultimate hidden state
    "projection_dim": 32,
    "layer_norm_eps": 1e-05,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}
# SDXL's second encoder is wider than the first in the tiny model too, so code that mixes up
# the two (or their pooled outputs) fails on shapes instead of passing silently.
_TINY_TEXT_2 = {**_TINY_TEXT, "hidden_size": 64, "projection_dim": 64}
_TINY_TIME_DIM = 8

_TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,  # 4 blocks: 8x downsampling like SD
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [8, 16, 32, 32],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 64,
}

_TINY_UNET_COMMON = {
    "sample_size": 8,  # 8x8 latents = 64 px images
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": [32, 64],
    "norm_num_groups": 32,
}


def _tiny_unet_config(family: str) -> dict[str, Any]:
    if family == "sdxl":
        return {
            **_TINY_UNET_COMMON,
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "attention_head_dim": [2, 4],
            "transformer_layers_per_block": [1, 2],
            "use_linear_projection": True,
            "cross_attention_dim": _TINY_TEXT["hidden_size"] + _TINY_TEXT_2["hidden_size"],
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": _TINY_TIME_DIM,
            # 6 size/crop numbers, each Fourier-embedded, + the pooled second-encoder embedding
            "projection_class_embeddings_input_dim": 6 * _TINY_TIME_DIM
            + _TINY_TEXT_2["projection_dim"],
        }
    return {
        **_TINY_UNET_COMMON,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "attention_head_dim": [2, 4] if family == "sd2" else 2,
        "use_linear_projection": family == "sd2",
        "cross_attention_dim": _TINY_TEXT["hidden_size"],
    }


def _tiny_scheduler(family: str, prediction_type: str | None) -> Any:
    import diffusers

    common = {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "steps_offset": 1,
        "prediction_type": prediction_type or "epsilon",
    }
    if family == "sdxl":
        return diffusers.EulerDiscreteScheduler(**common, timestep_spacing="leading")
    return diffusers.DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=False)


@contextlib.contextmanager
def _seeded(seed: int, dtype: Any = None) -> Iterator[None]:
    """Seed torch's RNG (restoring the caller's state after) and optionally the default dtype."""
    import torch

    old_dtype = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            if dtype is not None:
                # Parameters are created in `dtype` directly: an SDXL UNet never exists in fp32.
                torch.set_default_dtype(dtype)
            yield
        finally:
            torch.set_default_dtype(old_dtype)


def _tokenizers(family: str, tokenizer_cache_dir: Any) -> list[Any]:
    from sameface.models.tokenizer import clip_tokenizer

    return [clip_tokenizer(pad_token=p, cache_dir=tokenizer_cache_dir) for p in PAD_TOKENS[family]]


def tiny_base_model(
    family: str = "sd1",
    seed: int = 0,
    *,
    prediction_type: str | None = None,
    tokenizer_cache_dir: str | os.PathLike[str] | None = None,
) -> BaseModel:
    """A tiny random-weight base model (about 1-3 M parameters plus CLIP-sized embeddings).

    Args:
        family: `"sd1"`, `"sd2"` or `"sdxl"`.
        seed: RNG seed; the same seed gives identical weights.
        prediction_type: `"epsilon"` (default) or `"v_prediction"` (as SD2.1-768 uses).
        tokenizer_cache_dir: folder for the offline-built CLIP tokenizer files.
    """
    import diffusers
    import transformers

    if family not in PAD_TOKENS:
        raise ValueError(f"family must be 'sd1', 'sd2' or 'sdxl', not {family!r}")
    with _seeded(seed):
        unet = diffusers.UNet2DConditionModel(**_tiny_unet_config(family))
        vae = diffusers.AutoencoderKL(
            **_TINY_VAE, scaling_factor=0.13025 if family == "sdxl" else 0.18215
        )
        # OpenAI CLIP uses quick_gelu, OpenCLIP (SD2, SDXL's second encoder) gelu; family
        # detection of tiny folders relies on it, as cross-attention widths are not the real ones.
        act = "gelu" if family == "sd2" else "quick_gelu"
        encoders = [
            transformers.CLIPTextModel(transformers.CLIPTextConfig(**_TINY_TEXT, hidden_act=act))
        ]
        if family == "sdxl":
            encoders.append(
                transformers.CLIPTextModelWithProjection(
                    transformers.CLIPTextConfig(**_TINY_TEXT_2, hidden_act="gelu")
                )
            )
    scheduler = _tiny_scheduler(family, prediction_type)
    return _assemble(family, encoders, unet, vae, scheduler, f"tiny:{family}", tokenizer_cache_dir)


def real_config_base_model(
    family: str,
    *,
    dtype: Any = None,
    seed: int = 0,
    prediction_type: str | None = None,
    tokenizer_cache_dir: str | os.PathLike[str] | None = None,
) -> BaseModel:
    """A real-architecture base model (SD1.5, SD2.1-base or SDXL base 1.0) with random weights
    (drawn from a seeded pool by `fast_random`: seconds, where per-value init takes a minute).

    Memory: SD1.5 ~1.1 B parameters (4.3 GB fp32), SDXL ~3.5 B (7 GB in bfloat16). With
    `dtype` set, parameters are created in that dtype directly, never in fp32 first.

    Args:
        family: `"sd1"`, `"sd2"` or `"sdxl"`.
        dtype: parameter dtype, e.g. `torch.bfloat16` (default float32).
        seed: RNG seed.
        prediction_type: `"v_prediction"` with sd2 gives SD2.1 (768 px).
        tokenizer_cache_dir: folder for the offline-built CLIP tokenizer files.
    """
    import diffusers

    cfg = real_configs(family, prediction_type)
    with _seeded(seed, dtype):
        unet, vae, encoders = fast_random(lambda: modules_from_configs(cfg), seed=seed, dtype=dtype)
    sched_conf = dict(cfg["scheduler"])
    scheduler = getattr(diffusers, sched_conf.pop("_class_name")).from_config(sched_conf)
    source = f"random:{REPOS[config_key(family, prediction_type)]}"
    return _assemble(family, encoders, unet, vae, scheduler, source, tokenizer_cache_dir)


def modules_from_configs(cfg: dict) -> tuple[Any, Any, list[Any]]:
    """(unet, vae, text encoders) built from `real_configs` dicts, with random weights.

    Call it under `torch.device("meta")` to get shapes only (no memory, no init time).
    """
    import diffusers
    import transformers

    unet = diffusers.UNet2DConditionModel.from_config(cfg["unet"])
    vae = diffusers.AutoencoderKL.from_config(cfg["vae"])
    encoders = []
    for name in ("text_encoder", "text_encoder_2"):
        if name in cfg:
            conf = dict(cfg[name])
            cls = getattr(transformers, conf.pop("architectures")[0])
            conf.pop("model_type", None)
            encoders.append(cls(transformers.CLIPTextConfig(**conf)))
    return unet, vae, encoders


def _assemble(family, encoders, unet, vae, scheduler, source, tokenizer_cache_dir) -> BaseModel:
    # Eval mode like `from_pretrained` gives, so built and loaded models behave alike.
    return BaseModel(
        family=family,
        tokenizers=_tokenizers(family, tokenizer_cache_dir),
        text_encoders=encoders,
        unet=unet,
        vae=vae,
        scheduler=scheduler,
        source=source,
    )._eval()
