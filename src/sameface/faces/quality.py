"""Per-face quality: size, detector score, blur and a rough head pose from the 5 landmarks."""

from __future__ import annotations

import math

import numpy as np

from .align import ARCFACE_TEMPLATE_112, align_face
from .types import Face, FaceQuality

# In the frontal ArcFace template the nose tip sits this far between the eye line (0) and
# the mouth line (1); deviations from it indicate pitch.
_FRONTAL_NOSE_RATIO = float(
    (ARCFACE_TEMPLATE_112[2, 1] - ARCFACE_TEMPLATE_112[:2, 1].mean())
    / (ARCFACE_TEMPLATE_112[3:, 1].mean() - ARCFACE_TEMPLATE_112[:2, 1].mean())
)


def estimate_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """Rough (yaw, pitch, roll) in degrees from 5 landmarks.

    Roll is the eye-line angle. Yaw comes from the nose tip's horizontal offset from the
    eye/mouth midline relative to half the inter-eye distance (±1 maps to ±90°), pitch from
    the nose's vertical position between eye and mouth lines relative to a frontal face.
    Good enough to flag profile or tilted photos, not a pose estimator.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    dx, dy = lm[1] - lm[0]  # right eye -> left eye
    roll = math.degrees(math.atan2(dy, dx))
    # Undo roll so the rest is measured in the face's own frame.
    c, s = math.cos(-math.radians(roll)), math.sin(-math.radians(roll))
    rot = np.array([[c, -s], [s, c]])
    p = (lm - lm[:2].mean(0)) @ rot.T
    half_eye = max(abs(p[1, 0] - p[0, 0]) / 2, 1e-6)
    mid_x = (p[0, 0] + p[1, 0] + p[3, 0] + p[4, 0]) / 4
    yaw = math.degrees(math.asin(float(np.clip((p[2, 0] - mid_x) / half_eye, -1, 1))))
    eye_y, mouth_y = (p[0, 1] + p[1, 1]) / 2, (p[3, 1] + p[4, 1]) / 2
    span = mouth_y - eye_y
    ratio = (p[2, 1] - eye_y) / span if abs(span) > 1e-6 else _FRONTAL_NOSE_RATIO
    pitch = float(np.clip((ratio - _FRONTAL_NOSE_RATIO) / 0.5, -1, 1)) * 90.0
    return yaw, pitch, roll


def blur_score(image: np.ndarray, face: Face) -> float:
    """Variance of the Laplacian over the 112×112 aligned face (higher is sharper)."""
    import cv2

    crop = align_face(image, face.landmarks, 112)
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def assess_quality(
    image: np.ndarray,
    face: Face,
    *,
    min_size: float = 64.0,
    min_score: float = 0.8,
    min_blur: float = 40.0,
    max_yaw: float = 40.0,
) -> FaceQuality:
    """Quality report for one face with warnings for small, uncertain, blurry or turned faces."""
    size = float(min(face.width, face.height))
    yaw, pitch, roll = estimate_pose(face.landmarks)
    blur = blur_score(image, face)
    warnings = []
    if size < min_size:
        warnings.append(f"small face: {size:.0f} px < {min_size:.0f} px")
    if face.score < min_score:
        warnings.append(f"low detector score: {face.score:.2f}")
    if blur < min_blur:
        warnings.append(f"blurry: sharpness {blur:.0f} < {min_blur:.0f}")
    if abs(yaw) > max_yaw:
        warnings.append(f"turned face: yaw {yaw:+.0f}°")
    return FaceQuality(
        size=size,
        score=float(face.score),
        blur=blur,
        yaw=yaw,
        pitch=pitch,
        roll=roll,
        warnings=warnings,
    )
