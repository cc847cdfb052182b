"""Face masks in the ArcFace-aligned frame (e.g. for PuLID's parsed face, seed 004).

PuLID parses the *aligned* face (facexlib's 5-point warp) and keeps only the face region.
An `Identity` stores its aligned 112×112 crops, but its masks belong to the FeedFace square
crops. `aligned_mask_from_square` carries a square mask into the aligned frame with the
composite warp (square pixels → source photo → ArcFace template), so the FaceMesh oval, when
that is what the identity used, survives; `template_face_mask` is the landmark ellipse drawn
directly on the template, for crops with no other mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .align import ARCFACE_TEMPLATE_112, arcface_matrix
from .masks import landmark_mask
from .types import Face

__all__ = ["aligned_face_masks", "aligned_mask_from_square", "template_face_mask"]


def template_face_mask(size: int = 112) -> np.ndarray:
    """uint8 size×size face ellipse (255 inside) from the ArcFace template landmarks."""
    lm = ARCFACE_TEMPLATE_112 * (size / 112.0)
    face = Face(bbox=(0.0, 0.0, float(size), float(size)), landmarks=lm, score=1.0)
    return landmark_mask((size, size), face)


def aligned_mask_from_square(
    mask: np.ndarray,
    square_box: tuple[int, int, int, int] | list[int],
    landmarks: np.ndarray,
    size: int = 112,
) -> np.ndarray:
    """Warp a square-crop face mask into the ArcFace-aligned frame of the same photo.

    Args:
        mask: S×S uint8 mask of the square crop (`Identity.masks[i]`).
        square_box: (left, top, right, bottom) of that square in the source photo
            (`identity.meta["photos"][i]["square_box"]`).
        landmarks: (5, 2) landmarks in source-photo pixels (`Identity.landmarks[i]`).
        size: aligned crop side (112, as `Identity.aligned`).

    Returns:
        uint8 size×size mask, soft at the edge (bilinear), 0 outside the square.
    """
    import cv2

    m = np.asarray(mask)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected a square H×W mask, got shape {m.shape}")
    left, top, right, _ = (float(v) for v in square_box)
    scale = (right - left) / m.shape[0]
    # cv2.resize samples destination pixel x at source x_s = (x + 0.5)·scale − 0.5 (box coords).
    to_source = np.array(
        [[scale, 0, left + 0.5 * scale - 0.5], [0, scale, top + 0.5 * scale - 0.5], [0, 0, 1]]
    )
    to_aligned = np.vstack([arcface_matrix(np.asarray(landmarks, np.float64), size), [0, 0, 1]])
    warp = (to_aligned @ to_source)[:2]
    return cv2.warpAffine(
        m.astype(np.uint8), warp, (size, size), flags=cv2.INTER_LINEAR, borderValue=0
    )


def aligned_face_masks(identity: Any, size: int | None = None) -> np.ndarray:
    """(N, size, size) uint8 face masks matching `identity.aligned`, one per photo.

    Uses the identity's own masks, warped from its square crops, when the square boxes are
    recorded (every identity `Identity.from_images` builds); otherwise the template ellipse.
    """
    size = int(size or identity.aligned.shape[1])
    photos = identity.meta.get("photos") if isinstance(identity.meta, dict) else None
    out = []
    for i in range(identity.num_photos):
        box = None
        if isinstance(photos, list) and i < len(photos) and isinstance(photos[i], dict):
            box = photos[i].get("square_box")
        usable = (
            isinstance(box, (list, tuple))
            and len(box) == 4
            and i < len(identity.masks)
            and i < len(identity.landmarks)
        )
        if usable:
            out.append(
                aligned_mask_from_square(identity.masks[i], box, identity.landmarks[i], size)
            )
        else:
            out.append(template_face_mask(size))
    return np.stack(out)
