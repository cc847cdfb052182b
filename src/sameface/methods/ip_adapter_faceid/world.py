"""IP-Adapter-FaceID in the proving-ground world: its preset, training there, the world's
adapter. There are no released weights for the world, so it is trained as the release's
`tutorial_train_faceid.py` trains, at the world's scale, on the world recogniser's embedding.

    train_world_faceid(world)   data (`sameface.world.recipes.render_face_dataset`) + training
                                (resumable) -> WORLD/ip-adapter-faceid/, the folder
                                `--adapter` / `IPAdapterFaceIDConfig.adapter` take
    RECIPE                      what `sameface world ip-adapter-faceid`, the world bench and
                                the demo read

Imports nothing heavy: the CLI reads `RECIPE` to build `sameface world ip-adapter-faceid`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..spec import WorldRecipe

FACEID_DIR = "ip-adapter-faceid"
"""The world's trained adapter: `WORLD/ip-adapter-faceid/`."""

PRESET = MappingProxyType(
    {
        "recognizer": "world",
        "num_tokens": 4,
        "lora_rank": 8,
        "lora_targets": "attention",
        "batch_size": 8,
        "learning_rate": 5e-4,
        "steps": 2400,
        "checkpoint_every": 100,
        "log_every": 10,
    }
)
"""Settings for the shipped world (`configs/ip-adapter-faceid/world.yaml` holds the same).

The release's tokens, targets, drop rates and loss; its rank (128 on widths 320-1280) becomes
8 on the world UNet's widths, and the learning rate and steps are those of PuLID's stage 1 in
the world (the same data and loss), so the two are trained alike."""

DEFAULT_IMAGES = 3000
"""Training portraits rendered by `train_world_faceid`."""


def world_faceid_config(world: Any, **overrides: Any) -> Any:
    """`PRESET` with the world's recogniser, + overrides."""
    from .config import IPAdapterFaceIDConfig

    settings = dict(PRESET) | {"world": str(world.folder)}
    return IPAdapterFaceIDConfig.from_dict(settings | overrides)


def train_world_faceid(
    world_dir: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    *,
    n_images: int = DEFAULT_IMAGES,
    seed: int = 0,
    overrides: dict | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Train IP-Adapter-FaceID in the world and write it to `WORLD/ip-adapter-faceid/`.

    Renders the data, then trains with `sameface.methods.ip_adapter_faceid.train.train`.
    Resumable: a finished run is not repeated and an interrupted one resumes.

    Args:
        world_dir: the world folder (default: `resolve_world`).
        out: work folder for the data and the training output (default `WORLD/.ip-adapter-faceid`).
        progress: progress bars.
        n_images: training portraits.
        seed: data and training seed.
        overrides: settings over `PRESET`.
        log: where one-line messages go.

    Returns:
        The adapter folder in the world.
    """
    from ...world.recipes import finished_run, record_time, render_face_dataset
    from ...world.world import World
    from .model import META_FILE
    from .train import train

    world = World.load(world_dir)
    work = Path(out) if out is not None else world.folder / f".{FACEID_DIR}"
    data = work / "data"
    t0 = time.perf_counter()
    render_face_dataset(world, data, n_images, seed, progress=progress, desc="render FaceID data")
    log(f"[data] {n_images} portraits in {data} ({time.perf_counter() - t0:.0f} s)")
    cfg = world_faceid_config(world, **({"seed": seed} | (overrides or {})))
    folder = work / "train"
    if finished_run(folder, META_FILE, cfg, n_images):
        log(f"[train] done earlier: {folder}")
    else:
        t0 = time.perf_counter()
        train(data, world.base, cfg, folder, progress=progress)
        seconds = time.perf_counter() - t0
        record_time(work, folder.name, seconds, steps=cfg.steps, batch_size=cfg.batch_size)
        log(f"[train] {cfg.steps} steps in {seconds:.0f} s -> {folder}")
    return publish_adapter(folder, world.folder)


def publish_adapter(folder: str | os.PathLike, world_folder: str | os.PathLike) -> Path:
    """Copy a trained folder to `WORLD/ip-adapter-faceid/` (atomically, float16), its base and
    world recorded relative to it ("../base", ".."), so the world folder can move."""
    from ...world.recipes import publish_trained
    from .model import META_FILE, WEIGHTS_FILE

    def rewrite(meta: dict) -> dict:
        meta["base"] = "../base"
        meta["config"] = dict(meta["config"]) | {"world": ".."}
        return meta

    return publish_trained(
        folder, world_folder, FACEID_DIR, META_FILE, (WEIGHTS_FILE,), rewrite, store="float16"
    )


# ---- `sameface world ip-adapter-faceid` and the world bench -------------------------------


def _add_arguments(p: Any) -> None:
    from ...world.recipes import add_recipe_arguments

    add_recipe_arguments(
        p,
        work=f"WORLD/.{FACEID_DIR}",
        images=DEFAULT_IMAGES,
        config="configs/ip-adapter-faceid/world.yaml",
    )
    p.add_argument("--steps", type=int, help=f"optimisation steps (default {PRESET['steps']})")


def _run(args: Any) -> Path:
    from ...world.recipes import parse_settings

    overrides = parse_settings(args.set) | ({"steps": args.steps} if args.steps else {})
    out = train_world_faceid(
        args.world,
        args.work,
        progress=not args.quiet,
        n_images=args.images or DEFAULT_IMAGES,
        overrides=overrides,
    )
    print(
        f"IP-Adapter-FaceID written to {out}; use it with --method ip-adapter-faceid --adapter {out}"
    )
    return out


def _settings(world: Any, folder: Path) -> dict:
    """The world's adapter, and the world itself (`recognizer: world` reads it)."""
    return {"adapter": str(folder), "world": str(world.folder), "recognizer": "world"}


RECIPE = WorldRecipe(
    folder=FACEID_DIR,
    what="IP-Adapter-FaceID adapter",
    help="train the world's IP-Adapter-FaceID (WORLD/ip-adapter-faceid; resumable)",
    description="Render training portraits of random anonymous people, train the FaceID "
    "projection, ID attention and LoRA with the release's recipe on the world recogniser's "
    "embedding and the world's base model, and write the adapter to WORLD/ip-adapter-faceid "
    "(docs/ip-adapter-faceid.md). Rerun the same command to resume.",
    add_arguments=_add_arguments,
    run=_run,
    settings=_settings,
)
