"""Benchmarking in the miniature world (`sameface.world`): its evaluator, identities, baselines.

In the world every score is exact by construction: the world's recogniser was trained on its
people, its CLIP on its captions, and its context classifier reads the attributes a prompt
asks for (background, pattern, style, framing, accessories) off the image. Identities use the
whole 64 px portrait as their square crop (the model draws whole portraits), and both extra
baselines run: "known-by-name" against known people rendered here, and "copy-reference".
Where the world has a celebrity bank of its known people (`World.celebrity_bank`), textual
inversion's `id` and `rand2` inits use it, as they use a real model's bank.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .runner import EXTRA_BASELINES, BenchSettings, Evaluator

KNOWN_REFERENCES = "known_references"
"""Sub-folder of a run holding the known people's rendered reference photos."""

IDENTITY_RECOGNIZER = "world"


def world_evaluator(world: Any) -> Evaluator:
    """The world's judge recogniser (its plain recogniser in a world without one), detector,
    CLIP and context classifier.

    Identities are built with the world recogniser and PuLID conditions and trains on it;
    scoring with the separately trained judge keeps those methods from grading themselves.
    """
    return Evaluator(world.analyzer(world.judge), world.clip, context=world.context)


def unavailable_reason(world: Any, method: str) -> str | None:
    """Why `method` cannot run in `world`, or None when it can (a method with a world recipe
    needs its parts trained there: `sameface world <method>`)."""
    from ..methods import get_method, world_recipes

    recipe = world_recipes().get(method)
    if recipe is None and get_method(method).trains:
        return f"{method} has no world recipe yet: its encoder is not trained in the world"
    if recipe is not None and recipe.trained(world.folder) is None:
        folder = Path(world.folder) / recipe.folder
        return f"no trained {recipe.what} in this world ({folder} is missing; `sameface world {method}`)"
    return None


def world_method_settings(world: Any, methods: list[str]) -> dict:
    """Settings the world supplies to methods: for each method with a world recipe and its
    parts trained in `world`, what the recipe says (e.g. PuLID's adapter folder and the world)."""
    from ..methods import world_recipes

    out = {}
    for name, recipe in world_recipes().items():
        folder = recipe.trained(world.folder) if name in methods else None
        if folder is not None:
            out[name] = recipe.settings(world, folder)
    return out


def world_defaults(world: Any, method: str) -> dict:
    """A method's defaults in `world`, under a suite's or a user's settings: its world
    settings, and the world itself for a config with a `world` field (e.g. for an ID loss's
    recogniser)."""
    from ..methods import get_method

    spec = get_method(method)
    values = dict(spec.world_settings)
    if "world" in getattr(spec.config_cls, "__dataclass_fields__", {}):
        values["world"] = str(world.folder)
    return values


def world_settings(
    world: Any,
    out_dir: str | os.PathLike,
    methods: list[str],
    *,
    known_people: int,
    method_settings: dict | None = None,
    base_spec: str | None = None,
    bank: Any = None,
) -> BenchSettings:
    """Bench settings for a run in `world` (renders the known people's references into the run).

    Args:
        world: a loaded `sameface.world.world.World`.
        out_dir: the run folder; the known references go to `out_dir/known_references/`.
        methods: the rows to run (method names and `method@variant` labels).
        known_people: how many known people the "known-by-name" baseline cycles through.
        method_settings: per-method (or per-label) overrides, on top of the suite's.
        base_spec: how the base model was given (default: the world's `base/` folder).
        bank: a celebrity bank instead of the world's own (`World.celebrity_bank`).
    """
    from .variants import method_of

    known = world.render_known_references(Path(out_dir) / KNOWN_REFERENCES, max(1, known_people))
    names = list(dict.fromkeys(method_of(label) for label in methods))
    # What the world supplies (its trained parts, the world itself) sits under the suite's
    # settings, so a suite's variant can name another adapter.
    recipes = world_method_settings(world, names)
    defaults = {name: world_defaults(world, name) | recipes.get(name, {}) for name in names}
    return BenchSettings(
        methods=methods,
        base_spec=base_spec or str(Path(world.folder) / "base"),
        method_settings=dict(method_settings or {}),
        method_defaults=defaults,
        identity_recognizer=IDENTITY_RECOGNIZER,
        identity_analyzer=world.analyzer(),
        identity_square_expand=None,
        known_people=known,
        extra_baselines=EXTRA_BASELINES,
        bank=bank if bank is not None else world.celebrity_bank,
    )


__all__ = [
    "KNOWN_REFERENCES",
    "unavailable_reason",
    "world_defaults",
    "world_evaluator",
    "world_method_settings",
    "world_settings",
]
