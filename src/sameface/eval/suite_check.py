"""Type and size checks for the fields of a suite YAML file, before any of them is used.

A suite file is untrusted: a nested list where a prompt belongs would otherwise become a
multi-megabyte prompt, a float seed a silent truncation, a huge count a huge run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import SamefaceError
from ..limits import MAX_GUIDANCE, MAX_IMAGES, MAX_PROMPT_CHARS, MAX_STEPS

MAX_ITEMS = 1000  # prompts, seeds, identities, photos per identity
MAX_NAME_CHARS = 200
MAX_SEED = 2**32 - 1  # torch generators take 64-bit seeds; numpy's legacy ones 32-bit
MAX_RESOLUTION = 2048
MAX_TRAINING_SEEDS = 16  # each one is a full personalisation per identity and row


def check_suite_fields(path: Path, doc: dict) -> None:
    """Raise `SamefaceError` naming the file and field when a suite field has a wrong type or size.

    Args:
        path: the suite file (for the message).
        doc: its parsed YAML mapping.
    """

    def fail(msg: str) -> None:
        raise SamefaceError(f"{path}: {msg}")

    for key, limit in (("name", MAX_NAME_CHARS), ("description", 10_000), ("placeholder", 64)):
        _text(fail, key, doc.get(key), limit, optional=True)
    _text(fail, "negative_prompt", doc.get("negative_prompt"), MAX_PROMPT_CHARS, optional=True)
    prompts = doc.get("prompts")
    if prompts is not None:
        _list(fail, "prompts", prompts)
        for i, p in enumerate(prompts):
            _text(fail, f"prompts[{i}]", p, MAX_PROMPT_CHARS)
    seeds = doc.get("seeds")
    if seeds is not None:
        _list(fail, "seeds", seeds)
        for i, s in enumerate(seeds):
            _int(fail, f"seeds[{i}]", s, 0, MAX_SEED)
    for key, low, high in (
        ("images_per_prompt", 1, MAX_IMAGES),
        ("num_inference_steps", 1, MAX_STEPS),
        ("resolution", 8, MAX_RESOLUTION),
    ):
        if doc.get(key) is not None:
            _int(fail, key, doc[key], low, high)
    if doc.get("resolution") is not None and doc["resolution"] % 8:
        fail(f"resolution must be a multiple of 8, got {doc['resolution']}")
    g = doc.get("guidance_scale")
    if g is not None and (
        isinstance(g, bool)
        or not isinstance(g, (int, float))
        or not math.isfinite(g)
        or not 0 <= g <= MAX_GUIDANCE
    ):
        fail(f"guidance_scale must be a finite number in 0..{MAX_GUIDANCE:g}, got {g!r}")
    methods = doc.get("methods")
    if methods is not None and not isinstance(methods, dict):
        fail("methods must be a mapping of method name to settings")
    for name, values in (methods or {}).items():
        _text(fail, "a key of methods (a method or method@variant)", name, MAX_NAME_CHARS)
        if values is not None and not isinstance(values, dict):
            fail(f"methods.{name} must be a mapping of setting to value")
    run = doc.get("run")
    if run is not None:
        _list(fail, "run", run)
        for i, label in enumerate(run):
            _text(fail, f"run[{i}]", label, MAX_NAME_CHARS)
    training = doc.get("training_seeds")
    if training is not None:
        _list(fail, "training_seeds", training)
        if len(training) > MAX_TRAINING_SEEDS:
            fail(f"training_seeds has {len(training)} seeds; at most {MAX_TRAINING_SEEDS}")
        for i, s in enumerate(training):
            _int(fail, f"training_seeds[{i}]", s, 0, MAX_SEED)
    ids = doc.get("identities")
    if isinstance(ids, list):
        _list(fail, "identities", ids)
        for i, item in enumerate(ids):
            if not isinstance(item, dict):
                fail(f"identities[{i}] must be a mapping with name and photos")
            _text(
                fail, f"identities[{i}].name (an identity name)", item.get("name"), MAX_NAME_CHARS
            )
            photos = item.get("photos")
            for j, p in enumerate(photos if isinstance(photos, list) else [photos]):
                _text(fail, f"identities[{i}].photos[{j}]", p, 4096)
            if isinstance(photos, list):
                _list(fail, f"identities[{i}].photos", photos)
    elif ids is not None and not isinstance(ids, str):
        fail("identities must be a list, a folder, or `world`")


def _text(fail: Any, key: str, value: Any, limit: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        fail(f"{key} must be text, got {type(value).__name__}")
    if len(value) > limit:
        fail(f"{key} is {len(value)} characters; at most {limit}")


def _list(fail: Any, key: str, value: Any) -> None:
    if not isinstance(value, list):
        fail(f"{key} must be a list, got {type(value).__name__}")
    if len(value) > MAX_ITEMS:
        fail(f"{key} has {len(value)} entries; at most {MAX_ITEMS}")


def _int(fail: Any, key: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(f"{key} must be a whole number, got {value!r}")
    if not low <= value <= high:
        fail(f"{key} must be in {low}..{high}, got {value}")
