"""The PuLID personalisation artifact: cached ID tokens of one identity + a pointer to the
trained PuLID model.

    out/artifact.json          {"method": "pulid", "adapter": <trained PuLID folder>, "base",
                               "family", "id_scale", ...}
    out/id_tokens.safetensors  {"cond": (1, N, D), "uncond": (1, N, D)}: the identity's ID tokens
                               and the unconditional ones (CFG's negative half), computed once
    out/identity/              the identity they were computed from (`Identity.save`)

The adapter weights stay in the trained folder (`PuLIDModel.save`: adapter.safetensors,
encoder.safetensors, pulid.json); the artifact records that folder's save id, so tokens are
never used with an adapter retrained since.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import ArtifactError
from ..encoded import load_encoded, save_encoded

TOKENS_FILE = "id_tokens.safetensors"
TOKEN_KEYS = ("cond", "uncond")


def save_tokens(folder: Path, cond: Any, uncond: Any, meta: dict) -> None:
    """Write the tokens, then `artifact.json` (each atomically; the JSON last)."""
    save_encoded(folder, TOKENS_FILE, {"cond": cond, "uncond": uncond}, meta)


def load_tokens(folder: str | os.PathLike) -> tuple[Any, Any, dict]:
    """(cond, uncond, artifact meta) of a PuLID artifact.

    Raises:
        ArtifactError: files missing, unreadable, or not a PuLID artifact.
    """
    tensors, meta = load_encoded(folder, "pulid", TOKENS_FILE, TOKEN_KEYS)
    cond, uncond = tensors["cond"], tensors["uncond"]
    if cond.ndim != 3 or cond.shape != uncond.shape or not cond.is_floating_point():
        raise ArtifactError(
            f"{Path(folder) / TOKENS_FILE}: cond {tuple(cond.shape)} and uncond "
            f"{tuple(uncond.shape)} must both be (1, N, D)"
        )
    return cond, uncond, meta
