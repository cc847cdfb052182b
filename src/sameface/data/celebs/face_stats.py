"""Face statistics of one person: embedding the faces, their mean and consistency, the verdict."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...errors import ImageLoadError

# ---- face statistics ----------------------------------------------------------------------


def _summarise_faces(embeddings: np.ndarray, dim: int) -> tuple[np.ndarray, float, int]:
    """(unit mean embedding, consistency, number of faces) of one person's face embeddings.

    Consistency is the mean pairwise cosine between the faces: how much they look like one
    person. NaN with fewer than two faces; the mean is a zero vector with none.
    """
    e = np.asarray(embeddings, dtype=np.float32).reshape(-1, dim)
    n = int(e.shape[0])
    if n == 0:
        return np.zeros(dim, np.float32), math.nan, 0
    mean = e.astype(np.float64).sum(0)
    mean = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
    if n < 2:
        return mean, math.nan, n
    sims = e.astype(np.float64) @ e.astype(np.float64).T
    consistency = float(sims[np.triu_indices(n, 1)].mean())
    return mean, consistency, n


def _verdict(
    num_faces: int,
    consistency: float,
    *,
    min_faces: int,
    threshold: float | None,
    reference_similarity: float | None = None,
    reference_used: bool = False,
) -> str | None:
    """Why a name is rejected, or None to keep it."""
    if num_faces < min_faces:
        return f"{num_faces} usable face(s), need {min_faces}"
    if threshold is not None and not math.isnan(consistency) and consistency < threshold:
        return f"faces disagree: consistency {consistency:.3f} < {threshold:.3f}"
    if reference_used:
        if reference_similarity is None:
            return "not in the reference bank"
        if threshold is not None and reference_similarity < threshold:
            return (
                f"generated faces unlike the reference photos: similarity "
                f"{reference_similarity:.3f} < {threshold:.3f}"
            )
    return None


def _embed_faces(
    analyzer: Any, images: Sequence[Any], name: str = ""
) -> tuple[np.ndarray, list[str]]:
    """Embed the chosen face of each image.

    Args:
        analyzer: a `FaceAnalyzer`.
        images: RGB arrays, PIL images or paths.
        name: who the images show (for messages).

    Returns:
        (n, D) float32 embeddings of the images where a usable face was found, and one
        message per image that gave none (unreadable, no face, only tiny faces).
    """
    dim = int(analyzer.recognizer.dim)
    embs, errors = [], []
    for i, img in enumerate(images):
        label = str(img) if isinstance(img, (str, os.PathLike)) else f"{name} image {i}".strip()
        try:
            res = analyzer.analyze(
                np.asarray(img) if not isinstance(img, (str, os.PathLike)) else img
            )
        except ImageLoadError as e:
            errors.append(str(e))
            continue
        if res.embedding is None:
            reason = (res.error or "no face found").removeprefix(f"{res.name}: ")
            errors.append(f"{label}: {reason}")
            continue
        embs.append(np.asarray(res.embedding, np.float32).reshape(dim))
    arr = np.stack(embs).astype(np.float32) if embs else np.zeros((0, dim), np.float32)
    return arr, errors
