"""The world's face detector, recogniser and context classifier behind sameface's interfaces.

`WorldDetector` has YuNet's `detect(rgb) -> list[Face]`, `WorldRecognizer` is a
`sameface.faces.Recognizer` (so `FaceAnalyzer`, `Identity.from_images` and the benchmark
take it unchanged), and its `torch_module()` is the differentiable network that
`sameface.losses.identity.face_id_loss` expects ((N, 3, 112, 112) 0..255 aligned crops).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..faces.align import align_face
from ..faces.recognizers.base import Recognizer, unit
from ..faces.types import Face
from .nets import load_net, to_net_input

JUDGE = "judge"
"""The scoring-only second recogniser's name in `faces/` (built by `train_vision.stage_judge`)."""

MIN_FACE_SIZE = 12.0
"""World faces are ~20–45 px in a 64 px image; analyzers for the world use this minimum."""


class WorldDetector:
    """One face (or none) per image: box and 5 landmarks regressed by a small CNN.

    Args:
        folder: the world's `faces/` folder.
        threshold: minimum face probability.
    """

    def __init__(self, folder: str | os.PathLike, threshold: float = 0.5):
        self.net, self.meta = load_net(folder, "detector")
        self.threshold = threshold
        self.size = int(self.net.config["input_size"])

    @torch.no_grad()
    def detect(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        out = self.net(to_net_input(image, self.size))
        score = float(torch.sigmoid(out["logit"][0]))
        if score < self.threshold:
            return []
        scale = np.array([w, h], np.float32)
        box = out["box"][0].numpy().reshape(2, 2) * scale
        lms = out["landmarks"][0].numpy() * scale
        return [Face(bbox=tuple(float(v) for v in box.reshape(-1)), landmarks=lms, score=score)]


class WorldRecognizer(Recognizer):
    """The world's metric-learned recogniser (ArcFace loss over the known people).

    Args:
        folder: the world's `faces/` folder.
        net: which network: "recognizer" (the world's; methods condition on it) or "judge"
            (the scoring-only second recogniser, named "world-judge").
    """

    name = "world"
    version = "1"

    def __init__(self, folder: str | os.PathLike, net: str = "recognizer"):
        self.folder = Path(folder)
        self.net, self.meta = load_net(folder, net)
        if net != "recognizer":
            self.name = f"world-{net}"
        self.dim = int(self.net.config["dim"])
        self.same_person_threshold = float(self.meta.get("same_person_threshold", 0.5))

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        return align_face(image, np.asarray(face.landmarks, np.float32), 112)

    @torch.no_grad()
    def embed(self, aligned: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(aligned)).permute(2, 0, 1)[None].float()
        return unit(self.net(x)[0].numpy())

    def torch_module(self) -> torch.nn.Module:
        """The differentiable network: (N, 3, 112, 112) aligned crops in 0..255 -> (N, dim) unit."""
        return self.net

    def describe(self) -> dict:
        return super().describe() | {"folder": str(self.folder)}


class ContextClassifier:
    """Reads the context attributes off an image (the exact editability measure)."""

    def __init__(self, folder: str | os.PathLike):
        from .pool import CONTEXT_COLUMNS, decode_context

        self.net, self.meta = load_net(folder, "context")
        self.size = int(self.net.config["input_size"])
        self._columns = CONTEXT_COLUMNS
        self._decode = decode_context

    @torch.no_grad()
    def predict(self, images: list[np.ndarray]) -> list[dict]:
        """Per image, {attribute: value}: background/pattern/style/framing names, accessories as bools."""
        if not images:
            return []
        x = torch.cat([to_net_input(im, self.size) for im in images])
        logits = self.net(x)
        rows = np.stack([logits[c].argmax(1).numpy() for c in self._columns], axis=1)
        return [self._decode(r) for r in rows]


def context_accuracy(predicted: dict, asked: dict) -> float | None:
    """Fraction of the attributes a prompt asked for that the image shows; None if it asked none."""
    keys = [k for k in asked if k in predicted]
    if not keys:
        return None
    return float(np.mean([predicted[k] == asked[k] for k in keys]))
