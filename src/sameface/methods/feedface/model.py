"""FeedFace's trainable parts (seed 002 §2.1): a linear face projection and the face-controlnet.

    face crops (B, R, 3, H, W) ──CLIP (frozen)──> features (B, R, L, C)
        ──linear──> face tokens (B, R·L, D)          (R references concatenated, B.3.1)
    UNet block output = origin(h, text) + s · control(h, face tokens)   (`ControlBlocks`)

The projection and the control blocks are the only weights trained (§2.2); the CLIP encoder
and the base model stay frozen.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...adapters.control_blocks import SCALE_KEY, TOKENS_KEY, ControlBlocks
from .config import FeedFaceConfig


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

    # ---- attachment ---------------------------------------------------------------------

    def remove(self) -> None:
        """Detach the control blocks: the base UNet is exactly as it was."""
        self.controls.remove()

    def __enter__(self) -> FeedFaceModel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()
