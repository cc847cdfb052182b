"""insightface ArcFace recognisers (antelopev2 / buffalo_l) from files the user already has.

Never downloads: the user passes the model folder or ONNX file, or has them in
insightface's own cache (`~/.insightface/models/<pack>/`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import ModelNotFoundError
from ..align import align_face
from ..types import Face
from .base import Recognizer, unit

# Recognition model of each insightface model pack (the other files are detectors etc.).
KNOWN_PACKS = {"antelopev2": "glintr100.onnx", "buffalo_l": "w600k_r50.onnx"}


def find_insightface_model(model_path: str | os.PathLike | None = None) -> Path:
    """Resolve the recognition ONNX from a file, a model-pack folder, or insightface's cache."""
    candidates: list[Path] = []
    if model_path is not None:
        p = Path(model_path).expanduser()
        if p.is_file():
            return p
        if not p.exists():
            raise ModelNotFoundError(f"insightface model path not found: {p}")
        candidates = [p / f for f in KNOWN_PACKS.values()] + [
            p / "models" / k / f for k, f in KNOWN_PACKS.items()
        ]
    else:
        root = Path(os.environ.get("INSIGHTFACE_HOME", "~/.insightface")).expanduser() / "models"
        candidates = [root / k / f for k, f in KNOWN_PACKS.items()]
    for c in candidates:
        if c.is_file():
            return c
    where = model_path if model_path is not None else "~/.insightface/models/"
    raise ModelNotFoundError(
        f"no insightface recognition model found in {where} (looked for "
        + ", ".join(f"{k}/{f}" for k, f in KNOWN_PACKS.items())
        + "). sameface never downloads them: get the antelopev2 or buffalo_l pack on a machine "
        "with access (e.g. by running insightface once there), copy the folder here and pass "
        "its path (--insightface-model DIR)."
    )


class InsightFaceRecognizer(Recognizer):
    """ArcFace ResNet from an insightface model pack (512-d), on ArcFace-aligned 112×112 crops.

    Runs with onnxruntime when installed (`insightface` extra), else OpenCV dnn.

    Args:
        model_path: ONNX file or model-pack folder; default looks in insightface's cache.
    """

    name = "insightface"
    dim = 512
    same_person_threshold = 0.28  # insightface's usual verification threshold for these packs

    def __init__(self, model_path: str | os.PathLike | None = None):
        path = find_insightface_model(model_path)
        self.model_path = str(path)
        self.version = path.parent.name + "/" + path.name
        self._session = None
        self._net = None
        try:
            import onnxruntime as ort

            self._session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            self._input = self._session.get_inputs()[0].name
        except ImportError:
            import cv2

            try:
                self._net = cv2.dnn.readNetFromONNX(str(path))
            except cv2.error as e:
                raise ModelNotFoundError(
                    f"cannot load {path}: {str(e).strip().splitlines()[-1]}"
                ) from None
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            raise ModelNotFoundError(f"cannot load {path}: {e}") from None
        # The embedding size differs between packs; one dummy forward tells it, and refuses
        # files that are not a recogniser (e.g. a pack's detector, det_10g.onnx).
        try:
            out = np.asarray(self._forward(np.zeros((1, 3, 112, 112), np.float32)))
        except Exception as e:
            raise ModelNotFoundError(
                f"{path} does not take a 112×112 face crop; not a recognition model ({e})"
            ) from None
        if out.ndim != 2 or out.shape[0] != 1 or not 64 <= out.shape[1] <= 2048:
            raise ModelNotFoundError(
                f"{path} outputs shape {list(out.shape)}, not a face embedding; not a recognition model"
            )
        self.dim = int(out.shape[1])

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        return align_face(image, face.landmarks, 112)

    def embed(self, aligned: np.ndarray) -> np.ndarray:
        return unit(self.embed_raw(aligned))

    def embed_raw(self, aligned: np.ndarray) -> np.ndarray:
        """ArcFace's output before normalisation (float32, length `dim`)."""
        import cv2

        if aligned.shape[:2] != (112, 112):
            aligned = cv2.resize(aligned, (112, 112), interpolation=cv2.INTER_AREA)
        # insightface's ArcFace preprocessing: RGB, (x - 127.5) / 127.5, NCHW.
        blob = cv2.dnn.blobFromImage(
            aligned, 1.0 / 127.5, (112, 112), (127.5, 127.5, 127.5), swapRB=False
        )
        return np.asarray(self._forward(blob), np.float32).reshape(-1)

    def _forward(self, blob: np.ndarray) -> np.ndarray:
        if self._session is not None:
            return np.asarray(self._session.run(None, {self._input: blob.astype(np.float32)})[0])
        self._net.setInput(blob)
        return np.asarray(self._net.forward())
