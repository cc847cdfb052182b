"""The textual-inversion artifact: the shared pseudo-word embeddings file (`sameface.methods.words`)
plus `artifact.json`; DreamIdentity writes the same files."""

from __future__ import annotations

from ..words import (
    EMBEDS_FILE,
    META_FILE,
    SDXL_KEYS,
    embedding_keys,
    load_embeddings,
    save_embeddings,
)

FORMAT_VERSION = 1  # of artifact.json; train.py writes it

__all__ = [
    "EMBEDS_FILE",
    "FORMAT_VERSION",
    "META_FILE",
    "SDXL_KEYS",
    "embedding_keys",
    "load_embeddings",
    "save_embeddings",
]
