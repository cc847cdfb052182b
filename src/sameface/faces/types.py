"""Plain data records for detected faces."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

# Landmark order everywhere in sameface (YuNet's and ArcFace's order):
LANDMARK_NAMES = ("right_eye", "left_eye", "nose_tip", "right_mouth_corner", "left_mouth_corner")
"""Subject's right eye first (it appears on the image's left), as YuNet and ArcFace order them."""


@dataclass
class FaceQuality:
    """Per-face quality report.

    Attributes:
        size: shorter side of the detection box in pixels.
        score: detector confidence in [0, 1].
        blur: variance of the Laplacian over the aligned face (higher is sharper).
        yaw, pitch, roll: head pose in degrees, estimated from the 5 landmarks (rough).
        warnings: human-readable problems ("small face: 38 px < 64 px", ...).
    """

    size: float
    score: float
    blur: float
    yaw: float
    pitch: float
    roll: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Face:
    """One detected face in image pixel coordinates.

    Attributes:
        bbox: (x0, y0, x1, y1) box in pixels.
        landmarks: (5, 2) float array in `LANDMARK_NAMES` order.
        score: detector confidence in [0, 1].
        quality: filled in by `assess_quality`.
    """

    bbox: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float
    quality: FaceQuality | None = None

    @property
    def width(self) -> float:
        return self.bbox[2] - self.bbox[0]

    @property
    def height(self) -> float:
        return self.bbox[3] - self.bbox[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.bbox[0] + self.bbox[2]) / 2, (self.bbox[1] + self.bbox[3]) / 2)

    def to_dict(self) -> dict:
        """JSON-ready record: bbox, landmarks, score and quality fields."""
        out = {
            "bbox": [round(float(v), 2) for v in self.bbox],
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "score": round(float(self.score), 4),
        }
        if self.quality is not None:
            q = self.quality.to_dict()
            out.update({k: (round(v, 3) if isinstance(v, float) else v) for k, v in q.items()})
        return out
