"""Face alignment: 5-point similarity warp to the ArcFace template, and FeedFace square crops."""

from __future__ import annotations

import numpy as np

ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
"""Standard ArcFace 5-point template for 112×112 crops (insightface, OpenCV SFace)."""


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) mapping `src` to `dst`.

    Umeyama (1991), "Least-squares estimation of transformation parameters between two point
    patterns", eq. 40-42. Returns a 2×3 matrix for `cv2.warpAffine`.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n = src.shape[0]
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / n
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(cov) < 0:  # avoid a reflection
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    var_s = (s**2).sum() / n
    scale = (sig * sign).sum() / var_s if var_s > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def arcface_matrix(landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """2×3 matrix warping an image so its 5 landmarks land on the ArcFace template at `size`."""
    return similarity_transform(landmarks, ARCFACE_TEMPLATE_112 * (size / 112.0))


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Warp an RGB image so the face's 5 landmarks sit on the ArcFace template (size×size crop)."""
    import cv2

    m = arcface_matrix(landmarks, size)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def expanded_square_box(
    bbox: tuple[float, float, float, float], image_size: tuple[int, int], expand: float = 1.1
) -> tuple[int, int, int, int]:
    """FeedFace crop box: the face box expanded `expand`× about its centre and squared on its longer side.

    The square is shifted to stay inside the image when it fits there (clamping); when it
    is larger than the image it keeps its centre and `square_crop` pads the outside.
    `image_size` is (height, width). Returns integer (x0, y0, x1, y1), possibly outside the image.
    """
    h, w = image_size
    x0, y0, x1, y1 = bbox
    side = max(x1 - x0, y1 - y0) * expand
    side = max(2, round(side))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    if side <= w:
        left = min(max(left, 0), w - side)
    if side <= h:
        top = min(max(top, 0), h - side)
    return (left, top, left + side, top + side)


def square_crop(
    image: np.ndarray,
    bbox: tuple[float, float, float, float],
    *,
    expand: float = 1.1,
    size: int | None = None,
    pad_value: int | tuple[int, ...] = 255,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """FeedFace data-prep crop (seed 002, §4 "expand the box 1.1×, square crop").

    Args:
        image: H×W×C or H×W uint8 array.
        bbox: face box (x0, y0, x1, y1) in pixels.
        expand: box expansion factor.
        size: resize the square to size×size if given.
        pad_value: fill for any part of the square outside the image.

    Returns:
        The crop and the integer square box it was cut from (image coordinates).
    """
    import cv2

    h, w = image.shape[:2]
    box = expanded_square_box(bbox, (h, w), expand)
    left, top, right, bottom = box
    side = right - left
    shape = (side, side, *image.shape[2:])
    out = np.empty(shape, dtype=image.dtype)
    out[...] = (
        pad_value
        if image.ndim == 2 or np.isscalar(pad_value)
        else np.asarray(pad_value, image.dtype)
    )
    sx0, sy0 = max(left, 0), max(top, 0)
    sx1, sy1 = min(right, w), min(bottom, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = image[sy0:sy1, sx0:sx1]
    if size is not None and size != side:
        interp = cv2.INTER_AREA if size < side else cv2.INTER_CUBIC
        out = cv2.resize(out, (size, size), interpolation=interp)
    return out, box
