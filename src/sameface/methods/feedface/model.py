"""FeedFace's trainable parts (seed 002 §2.1): a linear face projection and the face-controlnet.

    face crops (B, R, 3, H, W) ──CLIP (frozen)──> features (B, R, L, C)
        ──linear──> face tokens (B, R·L, D)          (R references concatenated, B.3.1)
    UNet block output = origin(h, text) + s · control(h, face tokens)   (`ControlBlocks`)

The projection and the control blocks are the only weights trained (§2.2); the CLIP encoder
and the base model stay frozen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...adapters.control_blocks import SCALE_KEY, TOKENS_KEY, ControlBlocks
from ...errors import ArtifactError
from ..trained import read_trained_meta, read_trained_weights, save_trained
from .config import FeedFaceConfig

WEIGHTS_FILE = "feedface.safetensors"
META_FILE = "feedface.json"
FORMAT = "sameface.feedface"
FORMAT_VERSION = 1


class FeedFaceModel(nn.Module):
    """Face projection + control blocks on `base.unet` (installed on construction).

    Args:
        base: the `BaseModel` (frozen); its UNet gets the control blocks.
        config: a `FeedFaceConfig` (CLIP output, control init, seed).
        vision: the frozen `ClipVision` that encodes face crops; None builds a model that only
            turns given CLIP features into tokens (then `feature_dim` is required).
        feature_dim: width of the CLIP features; default from `vision` and `clip_output`.
    """

    def __init__(
        self,
        base: Any,
        config: FeedFaceConfig | None = None,
        *,
        vision: Any = None,
        feature_dim: int | None = None,
    ):
        super().__init__()
        self.config = config = config or FeedFaceConfig()
        if feature_dim is None:
            if vision is None:
                raise ValueError("FeedFaceModel needs a CLIP vision model or a feature_dim")
            feature_dim = vision.vit_dim if config.clip_output == "hidden" else vision.clip_dim
        self.feature_dim = int(feature_dim)
        self.base, self.vision = base, vision  # plain references: neither is trained here
        cross = base.unet.config.cross_attention_dim
        self.cross_dim = int(cross[0] if isinstance(cross, (list, tuple)) else cross)
        with torch.random.fork_rng(devices=[]):  # same seed, same init; caller's RNG untouched
            torch.manual_seed(config.seed)
            self.proj = nn.Linear(self.feature_dim, self.cross_dim)
            self.controls = ControlBlocks(base.unet, self.cross_dim, init=config.control_init)
        self.proj.to(base.device)
        self.controls.install()

    # ---- conditioning -------------------------------------------------------------------

    @torch.no_grad()
    def features(self, faces: torch.Tensor) -> torch.Tensor:
        """CLIP features of face crops: (B, R, 3, H, W) RGB in [0, 1] -> (B, R, L, C).

        L = the sequence length for "hidden" (CLS + patches), 1 for "pooled".
        """
        if self.vision is None:
            raise ValueError("this FeedFace model has no CLIP vision model to encode faces with")
        if faces.ndim != 5 or faces.shape[2] != 3:
            raise ValueError(f"expected face crops (B, R, 3, H, W), got {tuple(faces.shape)}")
        b, r = faces.shape[:2]
        last = self.vision.num_layers
        pooled, hidden = self.vision.features(faces.flatten(0, 1), [last])
        if self.config.clip_output == "hidden":
            feats = self.vision.model.vision_model.post_layernorm(hidden[0])
        else:
            feats = pooled[:, None]
        return feats.reshape(b, r, *feats.shape[1:]).float()

    def tokens(self, features: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        """Face tokens (B, R·L, D) from CLIP features (B, R, L, C).

        Args:
            features: from `features`.
            drop: (B,) bool; those samples get the zero face condition (seed B.2: "the face
                condition feature is set to a zero vector" for CFG).
        """
        b, r, n, c = features.shape
        if c != self.feature_dim:
            raise ValueError(f"features have width {c}, this model expects {self.feature_dim}")
        tokens = self.proj(features.to(self.proj.weight)).reshape(b, r * n, self.cross_dim)
        if drop is not None:
            tokens = tokens * (~drop.to(tokens.device)).to(tokens.dtype)[:, None, None]
        return tokens

    def zero_tokens(self, like: torch.Tensor) -> torch.Tensor:
        """The unconditional face condition (the zero vector) of `like`'s shape."""
        return torch.zeros_like(like)

    def cross_attention_kwargs(self, tokens: torch.Tensor | None, scale: float = 1.0) -> dict:
        """What the UNet call takes to condition on `tokens` (None: the base model)."""
        if tokens is None:
            return {}
        return {TOKENS_KEY: tokens, SCALE_KEY: float(scale)}

    # ---- persistence --------------------------------------------------------------------

    def meta(self) -> dict:
        """What `feedface.json` records (everything `load` checks)."""
        from ... import __version__

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "method": "feedface",
            "sameface_version": __version__,
            "family": self.base.family,
            "base": self.base.source,
            "cross_attention_dim": self.cross_dim,
            "feature_dim": self.feature_dim,
            "clip_vision": self.vision.describe() if self.vision is not None else None,
            "control_blocks": list(self.controls.names),
            "config": self.config.to_dict(),
        }

    def save(self, folder: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write `feedface.safetensors` and `feedface.json` (last) into `folder`, atomically;
        both carry one save id, so `load` refuses a folder mixing two saves."""
        tensors = dict(self.state_dict())
        return save_trained(
            folder, WEIGHTS_FILE, META_FILE, tensors, {**(extra or {}), **self.meta()}
        )

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike,
        base: Any,
        vision: Any = None,
    ) -> FeedFaceModel:
        """Load a saved FeedFace model onto `base` (installs the control blocks), strictly.

        Raises:
            ArtifactError: files missing or from two saves, or made for another base family,
                UNet layout or CLIP vision model.
        """
        folder = Path(folder)
        meta = read_meta(folder)
        if meta.get("family") != base.family:
            raise ArtifactError(
                f"{folder}: this FeedFace model was trained for a {meta.get('family')} base "
                f"model, not {base.family}"
            )
        try:
            config = FeedFaceConfig.from_dict(meta["config"])
            feature_dim = int(meta["feature_dim"])
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{folder / META_FILE}: corrupt settings ({e})") from None
        if vision is not None:
            want = vision.vit_dim if config.clip_output == "hidden" else vision.clip_dim
            if want != feature_dim:
                raise ArtifactError(
                    f"{folder}: CLIP vision model {vision.name} gives {want}-wide features, this "
                    f"FeedFace model was trained on {feature_dim}"
                )
        path = folder / WEIGHTS_FILE
        tensors = read_trained_weights(folder, WEIGHTS_FILE, meta, str(base.device))
        model = cls(base, config, vision=vision, feature_dim=feature_dim)
        try:
            model.load_state_dict(tensors)
        except RuntimeError as e:
            model.remove()
            raise ArtifactError(
                f"{path}: does not fit this base model's UNet ({str(e).splitlines()[0]})"
            ) from None
        return model

    # ---- attachment ---------------------------------------------------------------------

    def remove(self) -> None:
        """Detach the control blocks: the base UNet is exactly as it was."""
        self.controls.remove()

    def __enter__(self) -> FeedFaceModel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def read_meta(folder: str | os.PathLike) -> dict:
    """The `feedface.json` of a saved FeedFace model."""
    return read_trained_meta(folder, META_FILE, FORMAT, FORMAT_VERSION, "FeedFace")
