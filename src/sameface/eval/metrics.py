"""Evaluation metrics: pure functions over embeddings and scores, plus the face/CLIP scoring of images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

NEUTRAL_SUBJECT = "a person"
"""What replaces the placeholder in CLIP-T prompts and in the no-identity baseline."""


def neutral_prompt(prompt: str, placeholder: str = "<id>") -> str:
    """The prompt with the person replaced by "a person" (CLIP-T text; baseline prompt)."""
    return prompt.replace(placeholder, NEUTRAL_SUBJECT)


def aggregate_score(clip: float, face: float) -> float:
    """score = (1 + score_clip) · (1 + score_id) (seed 001, eq. 4)."""
    return (1.0 + clip) * (1.0 + face)


MIN_NORM_RANGE = 0.01
"""The narrowest (max − min) a normalised score divides by, in cosine units. Narrower, an
image's noise of a few hundredths becomes ±1 and more (seen in the world: the normalised
text score's intervals spanned ±1.6 where the reference photos' and the base images' CLIP-T
nearly coincided), and an inverted range (min above max) reverses the scale: both make the
score undefined (None; reports say "not meaningful")."""


CLIP_T_MIN_SEPARATION = 0.05
"""How far (in CLIP-T) the no-identity images must score above a copied reference photo for
CLIP-T to be shown: below it the instrument cannot tell following the prompt from copying
the photo (the world's CLIP: 0.204 against 0.185 on a held-out suite; 0.292 against
0.259-0.315 in 2026-11's runs), and reports leave its columns out."""


def normalise(score: float | None, low: float | None, high: float | None) -> float | None:
    """score_norm = (score − score_min) / (score_max − score_min) (seed 002, appendix); None
    when undefined, including a range narrower than `MIN_NORM_RANGE` or inverted."""
    if score is None or low is None or high is None or not np.isfinite(high - low):
        return None
    if high - low < MIN_NORM_RANGE:
        return None
    return float((score - low) / (high - low))


def mean_pairwise(embeddings: np.ndarray) -> float | None:
    """Mean cosine over distinct pairs of unit embeddings; None with fewer than two."""
    n = len(embeddings)
    if n < 2:
        return None
    sims = embeddings @ embeddings.T
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


@dataclass
class FaceScore:
    """Face found in a generated image, scored against the reference identity.

    Attributes:
        detected: a usable face was found.
        similarity: cosine to the reference mean embedding (evaluator recogniser), or None.
        crop: the face's square crop (for face CLIP-I), or None.
        embedding: the face's embedding, or None.
    """

    detected: bool
    similarity: float | None
    crop: np.ndarray | None
    embedding: np.ndarray | None

    @property
    def with_misses(self) -> float:
        """Similarity counting a missed face as 0."""
        return 0.0 if self.similarity is None else self.similarity


def score_face(
    analyzer: Any, image: np.ndarray, reference: np.ndarray, crop_size: int = 224
) -> FaceScore:
    """Detect the face in a generated image and compare it with the reference embedding.

    Args:
        analyzer: a `FaceAnalyzer` with the evaluator recogniser.
        image: RGB uint8 generated image.
        reference: unit mean embedding of the reference photos, from the same recogniser.
        crop_size: side of the square face crop kept for face CLIP-I.
    """
    from ..faces import square_crop

    res = analyzer.analyze(image)
    if res.embedding is None:
        return FaceScore(False, None, None, None)
    crop, _ = square_crop(res.image, res.face.bbox, expand=1.1, size=crop_size)
    return FaceScore(True, float(res.embedding @ reference), crop, res.embedding)
