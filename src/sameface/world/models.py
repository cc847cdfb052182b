"""Sizes and constructors of the world's SD-shaped models (VAE, text encoder, UNet, scheduler, CLIP).

The shapes follow Stable Diffusion 1.x exactly — `AutoencoderKL` with 4 latent channels,
`CLIPTextModel` with CLIP's real 49,408-token vocabulary and tokenizer, a cross-attention
`UNet2DConditionModel`, an SD noise schedule — only narrower and shallower, so a
`StableDiffusionPipeline` loads the folder and every method runs on it unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

CLIP_VOCAB = 49408
BOS, EOS = 49406, 49407


@dataclass
class WorldSizes:
    """Model widths and depths. `WorldSizes()` is the shipped world; `tiny()` is for tests."""

    image_size: int = 64
    vae_channels: tuple[int, ...] = (16, 32, 64)  # 3 levels: latents are image_size / 4
    text_hidden: int = 64
    text_layers: int = 3
    unet_channels: tuple[int, ...] = (32, 64, 128)
    unet_head_dim: int = 8
    clip_text_hidden: int = 32
    clip_vision_hidden: int = 64
    clip_layers: int = 2
    clip_projection: int = 64
    recognizer_dim: int = 64
    net_widths: tuple[int, ...] = (24, 48, 96, 128)

    @classmethod
    def tiny(cls) -> WorldSizes:
        return cls(
            image_size=32,
            vae_channels=(8, 16, 16),
            text_hidden=16,
            text_layers=1,
            unet_channels=(16, 16, 32),
            unet_head_dim=8,
            clip_text_hidden=16,
            clip_vision_hidden=16,
            clip_layers=1,
            clip_projection=16,
            recognizer_dim=16,
            net_widths=(8, 16, 16, 16),
        )

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> WorldSizes:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** (len(self.vae_channels) - 1)


@dataclass
class NoiseSchedule:
    """Stable Diffusion 1.x's training noise schedule."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    extra: dict = field(default_factory=dict)


def _groups(channels: tuple[int, ...]) -> int:
    """Largest GroupNorm group count (≤ 32) dividing every width."""
    return max(g for g in (32, 16, 8, 4, 2, 1) if all(c % g == 0 for c in channels))


def build_vae(s: WorldSizes) -> Any:
    from diffusers import AutoencoderKL

    n = len(s.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(s.vae_channels),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=_groups(s.vae_channels),
        sample_size=s.image_size,
    )


def text_config(s: WorldSizes) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=CLIP_VOCAB,
        hidden_size=s.text_hidden,
        intermediate_size=4 * s.text_hidden,
        num_hidden_layers=s.text_layers,
        num_attention_heads=max(1, s.text_hidden // 16),
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=s.text_hidden,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=EOS,
    )


def build_text_encoder(s: WorldSizes) -> Any:
    from transformers import CLIPTextModel

    return CLIPTextModel(text_config(s))


def build_unet(s: WorldSizes) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=s.latent_size,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=tuple(s.unet_channels),
        layers_per_block=1,
        cross_attention_dim=s.text_hidden,
        attention_head_dim=s.unet_head_dim,
        norm_num_groups=_groups(s.unet_channels),
    )


def _schedule() -> dict:
    """Scheduler arguments shared by training and sampling: SD 1.x's betas, ε-prediction."""
    n = NoiseSchedule()
    return {
        "num_train_timesteps": n.num_train_timesteps,
        "beta_start": n.beta_start,
        "beta_end": n.beta_end,
        "beta_schedule": n.beta_schedule,
        "clip_sample": False,
        "prediction_type": "epsilon",
    }


def build_train_scheduler() -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(**_schedule())


def build_sample_scheduler() -> Any:
    """The scheduler shipped with the pipeline: DDIM with SD 1.x's settings."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**_schedule(), set_alpha_to_one=False, steps_offset=1)


def build_clip(s: WorldSizes) -> Any:
    """The world's CLIP (vision + text), scored like any CLIP by `sameface.models.clip.ClipScorer`."""
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(
        text_config={
            "hidden_size": s.clip_text_hidden,
            "intermediate_size": 4 * s.clip_text_hidden,
            "num_hidden_layers": s.clip_layers,
            "num_attention_heads": max(1, s.clip_text_hidden // 16),
            "vocab_size": CLIP_VOCAB,
            "max_position_embeddings": 77,
            "bos_token_id": BOS,
            "eos_token_id": EOS,
            "pad_token_id": EOS,
        },
        vision_config={
            "hidden_size": s.clip_vision_hidden,
            "intermediate_size": 4 * s.clip_vision_hidden,
            "num_hidden_layers": s.clip_layers + 1,
            "num_attention_heads": max(1, s.clip_vision_hidden // 16),
            "image_size": s.image_size,
            "patch_size": 8,
        },
        projection_dim=s.clip_projection,
    )
    return CLIPModel(cfg)
