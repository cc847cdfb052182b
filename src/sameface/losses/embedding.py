"""Regularisation of pseudo-words in the text encoders' input space."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def embedding_regularization(words: Sequence[Any], anchors: Sequence[Any]) -> Any:
    """L_reg = mean over text encoders and words of ‖S*_k − a‖² (DreamIdentity's "embedding
    regularisation", seed 000; the form is ours: the squared distance to the anchor word).

    Args:
        words: per text encoder, (B, K, D) pseudo-words.
        anchors: per text encoder, (D,) the word they start from (e.g. "person").
    """
    if len(words) != len(anchors) or not words:
        raise ValueError(f"{len(words)} word sets for {len(anchors)} anchors")
    terms = [
        ((w.float() - a.float()) ** 2).sum(-1).mean() for w, a in zip(words, anchors, strict=True)
    ]
    return sum(terms) / len(terms)
