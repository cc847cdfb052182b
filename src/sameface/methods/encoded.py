"""The artifact of a tuning-free (encoder) method: an identity's conditioning, computed once by
the trained encoder, and a pointer to that trained folder.

    out/artifact.json        {"method": ..., "format_version": 1, "adapter": <trained folder>,
                             "adapter_save_id", "base", "family", ...}
    out/<tokens file>        the conditioning tensors (e.g. {"cond", "uncond"}), checked on read
    out/identity/            the identity they were computed from (`Identity.save`)

The weights stay in the trained folder; the artifact records its save id, so cached tokens
are never used with a model retrained since.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import ArtifactError, SamefaceError
from ..fileio import write_json_atomic

META_FILE = "artifact.json"


def save_encoded(folder: Path, tokens_file: str, tensors: dict[str, Any], meta: dict) -> None:
    """Write the tensors, then `artifact.json` (each atomically; the JSON last)."""
    from ..tensorfile import save_safetensors

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}
    tag = {"method": str(meta["method"]), "adapter_save_id": str(meta.get("adapter_save_id", ""))}
    save_safetensors(tensors, folder / tokens_file, tag)
    write_json_atomic(folder / META_FILE, meta, sort_keys=True)


def load_encoded(
    folder: str | os.PathLike, method: str, tokens_file: str, keys: tuple[str, ...]
) -> tuple[dict[str, Any], dict]:
    """(tensors, artifact meta) of an encoder method's artifact.

    Raises:
        ArtifactError: files missing, unreadable, of another method or format, or without
            the expected tensors or trained folder.
    """
    from ..tensorfile import read_safetensors

    folder = Path(folder)
    if not (folder / META_FILE).is_file() or not (folder / tokens_file).is_file():
        raise ArtifactError(
            f"{folder}: not a {method} artifact ({META_FILE} and {tokens_file} needed)"
        )
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{folder / META_FILE}: unreadable ({e})") from None
    if not isinstance(meta, dict) or meta.get("method") != method:
        raise ArtifactError(f"{folder / META_FILE}: not a {method} artifact")
    version = meta.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version != 1:
        raise ArtifactError(f"{folder / META_FILE}: unknown format_version {version!r}")
    tensors, _ = read_safetensors(folder / tokens_file)
    missing = [k for k in keys if k not in tensors]
    if missing or not meta.get("adapter"):
        raise ArtifactError(
            f"{folder}: incomplete {method} artifact (missing {missing or 'adapter'})"
        )
    return tensors, meta


def check_identity_recognizer(
    identity: Any, want: str, dim: int, method: str, pack: str | None = None
) -> None:
    """Raise SamefaceError unless `identity`'s embeddings come from the recogniser `want`
    (`dim`-d), the one the encoder of `method` reads, and, for insightface, from model `pack`
    when the weights record one (antelopev2 and buffalo_l are both 512-d but embed faces
    differently).

    Raises:
        SamefaceError: another recogniser, width or pack (the message says how to rebuild).
    """
    rec = identity.meta.get("recognizer") if isinstance(identity.meta, dict) else None
    name = rec.get("name") if isinstance(rec, dict) else None
    have = int(identity.embeddings.shape[-1])
    if (name is not None and name != want) or have != dim:
        raise SamefaceError(
            f"this {method} model reads {want} embeddings ({dim}-d) but the identity has "
            f"{name or 'unknown'} embeddings ({have}-d); build the identity with "
            f"--recognizer {want}"
        )
    if pack and name == "insightface":
        from ..faces.recognizers.insightface import KNOWN_PACKS

        onnx = str(rec.get("version") or "").rsplit("/", 1)[-1]
        other = {f: p for p, f in KNOWN_PACKS.items()}.get(onnx)
        if other is not None and other != pack:
            raise SamefaceError(
                f"this {method} model reads insightface's {pack} embedding ({KNOWN_PACKS[pack]}) "
                f"but the identity was built with {other} ({onnx}); build it with "
                f"--recognizer insightface --insightface-model DIR/{pack}"
            )


__all__ = ["META_FILE", "check_identity_recognizer", "load_encoded", "save_encoded"]
