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

import json
import os
from pathlib import Path
from typing import Any

from ...errors import ArtifactError
from ...fileio import write_json_atomic

META_FILE = "artifact.json"
TOKENS_FILE = "id_tokens.safetensors"
TOKEN_KEYS = ("cond", "uncond")


def save_tokens(folder: Path, cond: Any, uncond: Any, meta: dict) -> None:
    """Write the tokens, then `artifact.json` (each atomically; the JSON last)."""
    from ...tensorfile import save_safetensors

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        "cond": cond.detach().float().cpu().contiguous(),
        "uncond": uncond.detach().float().cpu().contiguous(),
    }
    tag = {"method": "pulid", "adapter_save_id": str(meta.get("adapter_save_id", ""))}
    save_safetensors(tensors, folder / TOKENS_FILE, tag)
    write_json_atomic(folder / META_FILE, meta, sort_keys=True)


def load_tokens(folder: str | os.PathLike) -> tuple[Any, Any, dict]:
    """(cond, uncond, artifact meta) of a PuLID artifact.

    Raises:
        ArtifactError: files missing, unreadable, or not a PuLID artifact.
    """
    from ...tensorfile import read_safetensors

    folder = Path(folder)
    if not (folder / META_FILE).is_file() or not (folder / TOKENS_FILE).is_file():
        raise ArtifactError(
            f"{folder}: not a PuLID artifact ({META_FILE} and {TOKENS_FILE} needed)"
        )
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{folder / META_FILE}: unreadable ({e})") from None
    if not isinstance(meta, dict) or meta.get("method") != "pulid":
        raise ArtifactError(f"{folder / META_FILE}: not a PuLID artifact")
    version = meta.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version != 1:
        raise ArtifactError(f"{folder / META_FILE}: unknown format_version {version!r}")
    tensors, _ = read_safetensors(folder / TOKENS_FILE)
    missing = [k for k in TOKEN_KEYS if k not in tensors]
    if missing or not meta.get("adapter"):
        raise ArtifactError(f"{folder}: incomplete PuLID artifact (missing {missing or 'adapter'})")
    cond, uncond = tensors["cond"], tensors["uncond"]
    if cond.ndim != 3 or cond.shape != uncond.shape or not cond.is_floating_point():
        raise ArtifactError(
            f"{folder / TOKENS_FILE}: cond {tuple(cond.shape)} and uncond {tuple(uncond.shape)} "
            "must both be (1, N, D)"
        )
    return cond, uncond, meta
