"""The small interface every face recogniser implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..types import Face


class Recognizer(ABC):
    """Face recogniser: aligned face crop -> unit identity embedding.

    Subclasses set `name`, `version`, `dim` and implement `align` (their own input crop
    from a full image and a detected face) and `embed`. Similarity is cosine for every
    recogniser (embeddings are unit vectors); `same_person_threshold` is the cosine above
    which two faces are taken for the same person.
    """

    name: str = ""
    version: str = ""
    dim: int = 0
    same_person_threshold: float = 0.5

    @abstractmethod
    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        """Crop and align `face` from an RGB uint8 image into this recogniser's input."""

    @abstractmethod
    def embed(self, aligned: np.ndarray) -> np.ndarray:
        """Aligned RGB uint8 crop (from `align`) -> float32 unit vector of length `dim`."""

    def embed_raw(self, aligned: np.ndarray) -> np.ndarray:
        """The network's embedding before normalisation (PuLID's release conditions on
        antelopev2's raw one, whose length varies with the face). Default: `embed`, the unit
        vector, for recognisers where sameface keeps no raw length (identities then record 1)."""
        return self.embed(aligned)

    def embed_face(self, image: np.ndarray, face: Face) -> np.ndarray:
        """Convenience: align then embed."""
        return self.embed(self.align(image, face))

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "dim": self.dim}


def unit(v: np.ndarray) -> np.ndarray:
    """L2-normalise a vector (float32); a zero vector stays zero."""
    v = np.asarray(v, dtype=np.float32).reshape(-1)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v
