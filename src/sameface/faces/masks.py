"""Face-region masks: MediaPipe FaceMesh (the `masks` extra) or a coarser landmark ellipse.

The landmark mask is an ellipse placed from the 5 landmarks by average facial proportions
(forehead to chin, cheek to cheek) and rotated with the eye line. It covers the face of a
frontal photo but ignores the real jaw line, hair line and profile; FaceMesh follows the
face oval. Every mask is uint8 H×W with 255 inside the face.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import DependencyMissingError
from .types import Face

MASK_METHODS = ("auto", "mediapipe", "landmarks")


def landmark_mask(image_size: tuple[int, int], face: Face) -> np.ndarray:
    """Coarse face-region ellipse from 5 landmarks. `image_size` is (height, width)."""
    import cv2

    h, w = image_size
    lm = np.asarray(face.landmarks, dtype=np.float64)
    eyes, mouth = lm[:2].mean(0), lm[3:].mean(0)
    axis = mouth - eyes
    d = float(np.linalg.norm(axis))
    e = float(np.linalg.norm(lm[1] - lm[0]))
    if d < 1e-3 or e < 1e-3:  # degenerate landmarks: place the face by the box instead
        d, e = face.height / 2.85, face.width / 2.1
        axis = np.array([0.0, d])
        cx, cy = face.center
        eyes = np.array([cx, cy - 0.325 * d])  # puts the ellipse's centre on the box centre
    u = axis / max(np.linalg.norm(axis), 1e-6)
    # Proportions of an average face in units of eye-mouth distance d and eye distance e:
    # hairline ~1.1 d above the eyes, chin ~0.75 d below the mouth, cheeks ~1.05 e from the centre.
    top, bottom = -1.1 * d, d + 0.75 * d
    center = eyes + u * (top + bottom) / 2
    semi_major, semi_minor = (bottom - top) / 2, 1.05 * e
    angle = math.degrees(math.atan2(u[1], u[0])) - 90.0
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(
        mask,
        (round(center[0]), round(center[1])),
        (max(1, round(semi_minor)), max(1, round(semi_major))),
        angle,
        0,
        360,
        255,
        thickness=-1,
    )
    return mask


class FaceMasker:
    """Make face-region masks with the best available method.

    Args:
        method: 'mediapipe' (FaceMesh face oval; needs the `masks` extra), 'landmarks'
            (coarse ellipse, always available) or 'auto' (mediapipe when installed).
    """

    def __init__(self, method: str = "auto"):
        if method not in MASK_METHODS:
            raise ValueError(
                f"mask method must be one of {', '.join(MASK_METHODS)}, got {method!r}"
            )
        self._mesh = None
        if method in ("auto", "mediapipe"):
            try:
                from ._mediapipe import FaceMeshMasker

                self._mesh = FaceMeshMasker()
                method = "mediapipe"
            except DependencyMissingError:
                if method == "mediapipe":
                    raise
                method = "landmarks"
        self.method = method

    def mask(self, image: np.ndarray, face: Face) -> np.ndarray:
        """uint8 H×W mask of `face` in `image` (RGB uint8)."""
        return self.mask_with_method(image, face)[0]

    def mask_with_method(self, image: np.ndarray, face: Face) -> tuple[np.ndarray, str]:
        """The mask and the method that made it ('mediapipe' or 'landmarks')."""
        if self._mesh is not None:
            m = self._mesh.mask(image, face)
            if m is not None:
                return m, "mediapipe"
        # FaceMesh can miss a face YuNet found (tiny or profile faces): use the ellipse then.
        return landmark_mask(image.shape[:2], face), "landmarks"

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
