"""One object that loads an image, detects faces, rates them, picks one and embeds it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import FaceNotFoundError
from ..imageio import DEFAULT_MAX_PIXELS, ImageInput, describe_source, load_image
from .detect import YuNetDetector
from .quality import assess_quality
from .recognizers import Recognizer, get_recognizer, unit
from .select import FacePolicy, parse_policy, select_face
from .types import Face


@dataclass
class ImageFaces:
    """Faces found in one image, with the chosen one and its embedding.

    Attributes:
        name: the image's path or a description of an in-memory image.
        image: RGB uint8 pixels (upright, after EXIF rotation).
        faces: every detection, largest first, each with a quality report.
        chosen: index of the face used, or None when none is usable.
        embedding: unit embedding of the chosen face, or None.
        embedding_norm: the length of the recogniser's raw embedding (1 for recognisers
            without `embed_raw` of their own: sameface keeps no raw length for them), or None.
        aligned: the recogniser's aligned crop of the chosen face, or None.
        error: why no face is usable, or None.
    """

    name: str
    image: np.ndarray
    faces: list[Face] = field(default_factory=list)
    chosen: int | None = None
    embedding: np.ndarray | None = None
    embedding_norm: float | None = None
    aligned: np.ndarray | None = None
    error: str | None = None

    @property
    def face(self) -> Face | None:
        return None if self.chosen is None else self.faces[self.chosen]


class FaceAnalyzer:
    """Detect, rate, choose and embed faces.

    Args:
        recognizer: a `Recognizer` or its name ('sface', 'dlib', 'insightface').
        detector: a detector with `detect(rgb) -> list[Face]`; default YuNet.
        face_policy: which face to use when an image has several ('largest', 'central',
            'single' or an index).
        min_face_size: faces whose box is smaller (shorter side, pixels) are reported but
            never used: recognisers work on 112 px crops and tiny faces embed unreliably.
        max_pixels: refuse larger images.
        recognizer_kwargs: passed to `get_recognizer` when `recognizer` is a name.
    """

    def __init__(
        self,
        recognizer: str | Recognizer = "sface",
        *,
        detector=None,
        face_policy: FacePolicy = "largest",
        min_face_size: float = 32.0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        recognizer_kwargs: dict | None = None,
    ):
        if not min_face_size >= 1:  # also refuses NaN
            raise ValueError(f"min_face_size must be >= 1, got {min_face_size}")
        self.recognizer = (
            get_recognizer(recognizer, **(recognizer_kwargs or {}))
            if isinstance(recognizer, str)
            else recognizer
        )
        self.detector = detector if detector is not None else YuNetDetector()
        self.face_policy = parse_policy(face_policy)
        self.min_face_size = float(min_face_size)
        self.max_pixels = max_pixels

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in an RGB image, largest first, each with a quality report."""
        faces = self.detector.detect(image)
        for f in faces:
            f.quality = assess_quality(image, f)
        return faces

    def choose(
        self,
        image: np.ndarray,
        faces: list[Face],
        *,
        name: str = "image",
        face_policy: FacePolicy | None = None,
    ) -> int:
        """Index of the usable face under the policy; raises `FaceNotFoundError` when none is usable."""
        if not faces:
            raise FaceNotFoundError(f"{name}: no face found")
        usable = [i for i, f in enumerate(faces) if min(f.width, f.height) >= self.min_face_size]
        if not usable:
            biggest = max(min(f.width, f.height) for f in faces)
            raise FaceNotFoundError(
                f"{name}: only tiny faces found (largest {biggest:.0f} px < {self.min_face_size:.0f} px); "
                "use a photo where the face is larger"
            )
        policy = self.face_policy if face_policy is None else parse_policy(face_policy)
        if isinstance(
            policy, int
        ):  # an index counts over all detections, as the user sees them listed
            if policy >= len(faces):
                raise FaceNotFoundError(
                    f"{name}: face index {policy} requested but only {len(faces)} face(s) found"
                )
            if policy not in usable:
                raise FaceNotFoundError(f"{name}: face {policy} is too small to use")
            return policy
        sub = [faces[i] for i in usable]
        return usable[select_face(sub, image.shape[:2], policy, name=name)]

    def analyze(
        self, source: ImageInput, *, face_policy: FacePolicy | None = None, strict: bool = False
    ) -> ImageFaces:
        """Load an image, detect and rate faces, choose one and embed it.

        Args:
            source: path, PIL image or array.
            face_policy: override the analyzer's policy for this image.
            strict: raise `FaceNotFoundError` instead of returning a result with `error` set.

        Raises:
            ImageLoadError: the image cannot be read.
        """
        name = describe_source(source)
        image = load_image(source, max_pixels=self.max_pixels)
        result = ImageFaces(name=name, image=image, faces=self.detect(image))
        try:
            result.chosen = self.choose(image, result.faces, name=name, face_policy=face_policy)
        except FaceNotFoundError as e:
            if strict:
                raise
            result.error = str(e)
            return result
        result.aligned = self.recognizer.align(image, result.faces[result.chosen])
        rec = self.recognizer
        if getattr(type(rec), "embed_raw", Recognizer.embed_raw) is Recognizer.embed_raw:
            result.embedding, result.embedding_norm = rec.embed(result.aligned), 1.0
        else:  # a recogniser with a raw output of its own (insightface)
            raw = np.asarray(rec.embed_raw(result.aligned), np.float32).reshape(-1)
            result.embedding, result.embedding_norm = unit(raw), float(np.linalg.norm(raw))
        return result


def similarity_matrix(embeddings: list[np.ndarray | None]) -> list[list[float | None]]:
    """Pairwise cosine similarities of unit embeddings; None where an embedding is missing."""
    n = len(embeddings)
    out: list[list[float | None]] = [[None] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            a, b = embeddings[i], embeddings[j]
            if a is not None and b is not None:
                out[i][j] = float(np.dot(a, b))
    return out
