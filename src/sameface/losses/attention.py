"""MagiCapture's Attention Refocusing loss (Hyeon et al. 2024, seed 003, "Attention Refocusing").

A special token's cross-attention map A_k, rescaled to [0, 1], is pushed to 0 where its
region mask M_v is 0 and left free where it is 1 (the best values inside vary across layers
and timesteps):

    L_AR = mean over pixels of ( (Â_k − M_v) ⊙ ¬M_v )² = mean( (Â_k ⊙ (1 − M_v))² )

with Â_k the token's maps, each min-max rescaled to [0, 1] (min and max taken as constants,
as in the public code), upsampled to the mask's grid and averaged over the layers given. The
public code uses the 16×16 cross-attention layers of SD1.5 at 512 px (latent / 4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def rescaled_map(maps: Any, size: tuple[int, int]) -> Any:
    """(B, n, L) attention maps over a square image grid -> (B, n, H, W) upsampled bilinearly
    to `size` and min-max rescaled to [0, 1] per map (min and max without gradient)."""
    import torch.nn.functional as F

    b, n, length = maps.shape
    side = math.isqrt(length)
    if side * side != length:
        raise ValueError(f"attention maps over {length} positions are not a square grid")
    grid = maps.float().reshape(b * n, 1, side, side)
    grid = F.interpolate(grid, size=size, mode="bilinear", align_corners=False)
    flat = grid.flatten(1)
    lo = flat.min(dim=1, keepdim=True).values.detach()
    hi = flat.max(dim=1, keepdim=True).values.detach()
    flat = (flat - lo) / (hi - lo).clamp_min(1e-8)
    return flat.reshape(b, n, *size)


def attention_refocusing_loss(maps: Sequence[Any], masks: Any) -> Any:
    """L_AR = mean(((mean_layers Â_k) ⊙ (1 − M_v))²) (MagiCapture, Attention Refocusing loss).

    Args:
        maps: per layer, (B, n, L) attention maps of n special tokens over a square grid of L
            image positions (`adapters.attention.AttentionMaps`).
        masks: (B, n, H, W) each token's region in [0, 1] (1 = where it may attend).
    """
    if not maps:
        raise ValueError("no attention maps to refocus")
    if masks.dim() != 4 or masks.shape[:2] != maps[0].shape[:2]:
        raise ValueError(
            f"masks {tuple(masks.shape)} must be (batch, tokens, H, W) for maps "
            f"{tuple(maps[0].shape)}"
        )
    size = tuple(masks.shape[-2:])
    mean = sum(rescaled_map(m, size) for m in maps) / len(maps)
    return (mean * (1 - masks.float())).pow(2).mean()
