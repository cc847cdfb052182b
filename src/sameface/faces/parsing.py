"""PuLID's "parsed face" (seed 004): the face in grey on a white background.

PuLID feeds the CLIP image encoder only the face's features: it parses the aligned face
(BiSeNet), paints background, clothes, hat, ears, earrings and neck white and turns the rest
to grey (luma), so colour, lighting and scene cannot leak into the ID tokens. No parsing
weights ship in any package here, so the face region comes from sameface's face masks
(FaceMesh face oval or the landmark ellipse). They also drop the hair, which PuLID's label
set keeps; ears, neck, clothes and background go in both.

Inside the mask: ITU-R BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B, repeated to 3 channels
(PuLID's `to_gray`). Outside: white. A soft mask blends the two: m·Y + (1 − m)·white.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["LUMA_601", "parsed_face", "parsed_face_tensor", "to_gray"]

LUMA_601 = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights for R, G, B."""


def to_gray(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB H×W×3 image, as float32 H×W in the image's own range."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an RGB image H×W×3, got shape {img.shape}")
    return img.astype(np.float32) @ np.asarray(LUMA_601, np.float32)


def _mask_weight(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A face mask as float32 weights in [0, 1]: uint8 masks are 0..255, bool 0/1, floats as is."""
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.shape != shape:
        raise ValueError(f"mask shape {m.shape} does not match the image's {shape}")
    if m.dtype == np.uint8:
        return m.astype(np.float32) / 255.0
    return np.clip(m.astype(np.float32), 0.0, 1.0)


def parsed_face(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Grey face on white (PuLID's parsed face) from an aligned RGB crop and its face mask.

    Args:
        image: RGB H×W×3, uint8 (0..255) or float (0..1).
        mask: H×W face mask: uint8 with 255 inside (sameface's masks), bool, or float in [0, 1].

    Returns:
        H×W×3 in the image's dtype: luma inside the mask, white (255 or 1.0) outside.
    """
    img = np.asarray(image)
    gray = to_gray(img)
    w = _mask_weight(mask, img.shape[:2])
    white = 255.0 if img.dtype == np.uint8 else 1.0
    out = w * gray + (1.0 - w) * white
    out = np.repeat(out[..., None], 3, axis=2)
    if img.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(img.dtype if np.issubdtype(img.dtype, np.floating) else np.float32)


def parsed_face_tensor(image: Any, mask: Any, *, white: float = 1.0) -> Any:
    """Torch version of `parsed_face` (differentiable in the image), for batches on any device.

    Args:
        image: float tensor (3, H, W) or (B, 3, H, W), RGB in [0, 1] (or any range whose
            white is `white`).
        mask: (H, W), (1, H, W), (B, H, W) or (B, 1, H, W); bool, float in [0, 1], or uint8
            with 255 inside.
        white: the background value (1.0 for [0, 1] images; 1.0 also for [-1, 1]).

    Returns:
        A tensor shaped like `image`.
    """
    import torch

    if image.ndim not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(
            f"expected an RGB tensor (3, H, W) or (B, 3, H, W), got {tuple(image.shape)}"
        )
    if not image.is_floating_point():
        raise ValueError("parsed_face_tensor takes float images; use parsed_face for uint8 arrays")
    weights = torch.tensor(LUMA_601, dtype=image.dtype, device=image.device).view(3, 1, 1)
    gray = (image * weights).sum(dim=-3, keepdim=True)
    m = mask.to(image.device)
    m = m.to(image.dtype) / 255.0 if m.dtype == torch.uint8 else m.to(image.dtype).clamp(0, 1)
    if m.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"mask size {tuple(m.shape[-2:])} does not match the image's {tuple(image.shape[-2:])}"
        )
    if m.ndim == 2 or (m.ndim == 3 and image.ndim == 4):
        m = m.unsqueeze(-3)  # (H, W) -> (1, H, W); (B, H, W) -> (B, 1, H, W)
    out = m * gray + (1 - m) * white
    if torch.broadcast_shapes(out.shape, image.shape) != image.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not fit image {tuple(image.shape)}")
    return out.expand_as(image).contiguous()  # grey repeated to 3 channels
