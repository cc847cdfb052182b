"""Personalisation methods behind one registry.

Each method is a package (`config.py`, `model.py`, `train.py`, `pipeline.py`) whose
`__init__` defines `METHOD`, a `MethodSpec`. The registry below is a constant mapping of
names to packages, imported only when a method is asked for, so `import sameface` stays
light. Adding a method: see docs/adding-a-method.md.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

from .spec import GenerationOutput, MethodSpec, WorldRecipe

METHOD_PACKAGES = {
    "dreamidentity": "sameface.methods.dreamidentity",
    "feedface": "sameface.methods.feedface",
    "ip-adapter-faceid": "sameface.methods.ip_adapter_faceid",
    "magicapture": "sameface.methods.magicapture",
    "pulid": "sameface.methods.pulid",
    "textual-inversion": "sameface.methods.textual_inversion",
}
"""Registered method names -> the package defining `METHOD`."""


def available_methods() -> list[str]:
    """Names of the registered methods."""
    return sorted(METHOD_PACKAGES)


def get_method(name: str) -> MethodSpec:
    """The `MethodSpec` registered under `name` (case-insensitive, `_` or `-`)."""
    key = name.strip().lower().replace("_", "-")
    if key not in METHOD_PACKAGES:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(available_methods())}")
    return importlib.import_module(METHOD_PACKAGES[key]).METHOD


def world_recipes() -> dict[str, WorldRecipe]:
    """Registered methods that train parts in the proving-ground world -> their recipe.

    Cheap: a method package builds its `METHOD` without torch, so the CLI can list these.
    """
    recipes = {name: get_method(name).world for name in available_methods()}
    return {name: r for name, r in recipes.items() if r is not None}


def artifact_method(folder: str | os.PathLike) -> str | None:
    """The method that wrote an artifact folder (from its `artifact.json`), or None."""
    try:
        meta = json.loads((Path(folder) / "artifact.json").read_text())
    except (OSError, ValueError):
        return None
    return meta.get("method") if isinstance(meta, dict) else None


__all__ = [
    "METHOD_PACKAGES",
    "GenerationOutput",
    "MethodSpec",
    "WorldRecipe",
    "artifact_method",
    "available_methods",
    "get_method",
    "world_recipes",
]
