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


__all__ = ["recorded_path", "trained_base", "trained_record"]
