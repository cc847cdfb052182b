"""Data: the celebrity bank (names the base model knows, with their face embeddings).

Dataset preparation for the encoder methods lives here too as it is added.
"""

from .celebs import (
    CelebrityBank,
    build_bank_from_model,
    build_bank_from_photos,
    consolidate_bank,
    distributed_context,
    load_celebrity_names,
)

__all__ = [
    "CelebrityBank",
    "build_bank_from_model",
    "build_bank_from_photos",
    "consolidate_bank",
    "distributed_context",
    "load_celebrity_names",
]
