"""The convention every trained encoder / adapter folder keeps: a JSON record (named by
`MethodSpec.trained_meta`, e.g. `pulid.json`) with the base model it was trained on
("base") and its family ("family"), read here for the CLI, the runner and the UI, so no code
outside a method's package names the method."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import ArtifactError, SamefaceError


def recorded_path(folder: str | os.PathLike, spec: str) -> str:
    """A model path a trained folder records: "./…" and "../…" are relative to the folder (so a
    folder shipped inside another, e.g. a world's `pulid/` next to its `clip/`, can move);
    anything else (absolute path, hub id, "tiny-random") as it is."""
    if spec.startswith(("./", "../")):
        return str((Path(folder) / spec).resolve())
    return spec


def trained_record(method: Any, folder: str | os.PathLike) -> dict:
    """The JSON record of `method`'s trained folder.

    Raises:
        SamefaceError: the method keeps no such record (it trains nothing).
        ArtifactError: the record is missing or unreadable.
    """
    name = getattr(method, "trained_meta", None)
    if not name:
        raise SamefaceError(f"{method.name} has no trained weights folder")
    path = Path(folder) / name
    if not path.is_file():
        raise ArtifactError(f"{folder}: not a trained {method.name} folder (no {name})")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: unreadable ({e})") from None
    if not isinstance(record, dict):
        raise ArtifactError(f"{path}: not a {method.name} record")
    return record


def trained_base(method: Any, folder: str | os.PathLike) -> str:
    """The base model `method`'s trained folder was trained on, as a loadable spec.

    Raises:
        ArtifactError: the folder records none (pass the base model explicitly then).
    """
    spec = trained_record(method, folder).get("base")
    if not isinstance(spec, str) or not spec:
        raise ArtifactError(f"{folder}: records no base model; pass --base")
    return recorded_path(folder, spec)


def save_trained(
    folder: str | os.PathLike,
    weights_file: str,
    meta_file: str,
    tensors: dict[str, Any],
    meta: dict,
) -> Path:
    """Write a trained folder: the weights, then the JSON record (last), each atomically; both
    carry one new save id, so a folder mixing two saves is refused on load."""
    import uuid

    from ..fileio import write_json_atomic
    from ..tensorfile import save_safetensors

    folder = Path(folder)
    save_id = uuid.uuid4().hex
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    fmt = str(meta.get("format", ""))
    save_safetensors(tensors, folder / weights_file, {"save_id": save_id, "format": fmt})
    write_json_atomic(folder / meta_file, {**meta, "save_id": save_id})
    return folder


def read_trained_meta(
    folder: str | os.PathLike, meta_file: str, fmt: str, version: int, what: str
) -> dict:
    """The JSON record of a trained folder, checked for its format and version.

    Raises:
        ArtifactError: missing, unreadable, of another format or an unsupported version.
    """
    path = Path(folder) / meta_file
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{folder}: not a {what} folder ({meta_file} is missing)") from None
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: cannot read ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise ArtifactError(f"{path}: not a {what} file")
    if meta.get("format_version") != version:
        raise ArtifactError(
            f"{path}: format_version {meta.get('format_version')!r} is not supported "
            f"(this sameface reads {version})"
        )
    return meta


def read_trained_weights(
    folder: str | os.PathLike, weights_file: str, meta: dict, device: str = "cpu"
) -> dict[str, Any]:
    """The weights of a trained folder, checked to come from the same save as its `meta`.

    Raises:
        ArtifactError: missing or unreadable, or from another save than the record.
    """
    from ..tensorfile import read_safetensors

    path = Path(folder) / weights_file
    if not path.is_file():
        raise ArtifactError(f"{folder}: {weights_file} is missing")
    tensors, tags = read_safetensors(path, device=device)
    if tags.get("save_id") != meta.get("save_id"):
        raise ArtifactError(f"{folder}: the weights and their record come from two different saves")
    return tensors


__all__ = [
    "read_trained_meta",
    "read_trained_weights",
    "recorded_path",
    "save_trained",
    "trained_base",
    "trained_record",
]
