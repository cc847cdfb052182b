"""PuLID in the proving-ground world: its preset, training there, the world's adapter.

PuLID runs in the world unchanged; only its face models are the world's (`recognizer: world`:
the world's recogniser for the ID embedding and the ID loss, its detector for the loss) and
its CLIP vision model is the world's CLIP (`WORLD/clip`).

    train_world_pulid(world)   data (`sameface.world.recipes.render_face_dataset`), stages 1,
                               2, 3 (resumable) -> WORLD/pulid/, the folder `--adapter` /
                               `PuLIDConfig.adapter` take
    RECIPE                     what `sameface world pulid`, the world bench and the demo read

Imports nothing heavy: the CLI reads `RECIPE` to build `sameface world pulid`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ...errors import SamefaceError
from ..spec import WorldRecipe

PULID_DIR = "pulid"
"""The world's trained PuLID adapter: `WORLD/pulid/`."""

PRESET = MappingProxyType(
    {
        "recognizer": "world",
        "vit_layers": [1, 2, 3],
        "encoder": "idformer",
        "num_tokens": 8,
        "num_id_tokens": 4,
        "encoder_dim": 64,
        "depth_per_layer": 1,
        "heads": 4,
        "dim_head": 16,
        "ff_mult": 2,
        "mlp_dim": 128,
        "batch_size": 8,
        "learning_rate": 5e-4,
        "steps": 400,
        "id_drop_prob": 0.1,
        "lightning_steps": 4,
        "fast_sampler": "ddim",
        "lambda_id": 1.0,
        "checkpoint_every": 50,
        "log_every": 10,
    }
)
"""PuLID settings for the shipped world (`configs/pulid/world.yaml` holds the same)."""

STAGE_STEPS = MappingProxyType({1: 2400, 2: 120, 3: 120})
"""Optimisation steps per stage: the shipped adapter's (stages 2 and 3 run a few-step
generation per step: ~6× slower than stage 1)."""
DEFAULT_STAGES = (1, 2, 3)
"""PuLID's three stages: diffusion loss, + ID loss, + alignment loss (keeps editability)."""

DEFAULT_IMAGES = 3000
"""Training portraits rendered by `train_world_pulid`."""


def world_pulid_config(world: Any, stage: int, **overrides: Any) -> Any:
    """`PRESET` for `stage` (its `STAGE_STEPS`), with the world's recogniser and CLIP, + overrides."""
    from .config import PuLIDConfig

    settings = dict(PRESET) | {
        "stage": stage,
        "steps": STAGE_STEPS.get(stage, PRESET["steps"]),
        "world": str(world.folder),
        "clip_vision": str(world.folder / "clip"),
    }
    return PuLIDConfig.from_dict(settings | overrides)


def train_world_pulid(
    world_dir: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    stages: Sequence[int] = DEFAULT_STAGES,
    progress: bool = True,
    *,
    n_images: int = DEFAULT_IMAGES,
    seed: int = 0,
    overrides: dict | None = None,
    stage_overrides: dict[int, dict] | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Train PuLID in the world and write the adapter to `WORLD/pulid/`.

    Renders the data (`sameface.world.recipes.render_face_dataset`), then trains each stage with
    `sameface.methods.pulid.train.train`, each from the previous stage's output. Resumable:
    finished stages are skipped and an interrupted one resumes from its checkpoint.

    Args:
        world_dir: the world folder (default: `resolve_world`).
        out: work folder for the data and each stage's output (default `WORLD/.pulid`).
        stages: the stages to run, in order (stage n > 1 starts from stage n - 1's output).
        progress: progress bars.
        n_images: training portraits.
        seed: data and training seed.
        overrides: PuLID settings over `PRESET` for every stage (e.g. {"batch_size": 4}).
        stage_overrides: more settings per stage (e.g. {2: {"steps": 50}}).
        log: where one-line stage messages go.

    Returns:
        The adapter folder `WORLD/pulid`.
    """
    world, work, data, vision = _prepare(world_dir, out, n_images, seed, progress, log)
    folder = None
    for stage in stages:
        settings = (overrides or {}) | {"seed": seed} | (stage_overrides or {}).get(stage, {})
        cfg = world_pulid_config(world, stage, **settings)
        folder = work / f"stage{stage}"
        _train_stage(cfg, data, world, vision, folder, _previous_stage(work, stage), progress, log)
    if folder is None:
        raise SamefaceError("no stage to train: pass stages=(1, 2, 3)")
    return publish_adapter(folder, world.folder)


def _prepare(world_dir, out, n_images: int, seed: int, progress: bool, log) -> tuple:
    """(world, work folder, rendered training data, the world's CLIP vision) for training."""
    from ...models.clip_vision import ClipVision
    from ...world.recipes import render_face_dataset
    from ...world.world import World

    world = World.load(world_dir)
    work = Path(out) if out is not None else world.folder / ".pulid"
    data = work / "data"
    t0 = time.perf_counter()
    render_face_dataset(world, data, n_images, seed, progress=progress, desc="render PuLID data")
    log(f"[data] {n_images} portraits in {data} ({time.perf_counter() - t0:.0f} s)")
    return world, work, data, ClipVision.load(world.folder / "clip")


def _train_stage(cfg, data, world, vision, folder: Path, init, progress, log) -> Path:
    """Train one stage into `folder` (skipped when done, resumed when interrupted)."""
    from ...world.recipes import record_time
    from .train import train

    if _finished(folder, cfg):
        log(f"[{folder.name}] done earlier")
        return folder
    t0 = time.perf_counter()
    train(data, world.base, cfg, folder, vision=vision, init_from=init, progress=progress)
    seconds = time.perf_counter() - t0
    record_time(folder.parent, folder.name, seconds, steps=cfg.steps, batch_size=cfg.batch_size)
    log(f"[{folder.name}] stage {cfg.stage}, {cfg.steps} steps in {seconds:.0f} s -> {folder}")
    return folder


_STAGES_2_AND_3 = "as many ID-loss steps as stages 2 and 3 together"

ABLATION_ROWS: tuple[tuple[str, str, int, str | None, dict], ...] = (
    ("diffusion-only", "stage1", 1, None, {}),
    ("naive-id", "stage2-naive", 2, "stage1", {"id_loss_branch": "one-step"}),
    ("accurate-id", "stage2", 2, "stage1", {}),
    ("alignment", "stage3", 3, "stage2", {}),
    ("accurate-id-longer", "stage2-longer", 2, "stage1", {"steps": _STAGES_2_AND_3}),
)
"""PuLID's ablation (arXiv 2404.16022, §4.3): (row, folder under the work folder, stage, the
folder it starts from, settings). Stage 1 is the diffusion loss only; the naive row adds an
ID loss on the step's one-step x̂0; the accurate row the paper's ID loss on the few-step
branch (stage 2); the alignment row adds the alignment loss (stage 3). Stage 3 also trains
the ID loss for its steps, so a control row, stage 2 for as many ID-loss steps as stages 2
and 3 together, tells what the alignment loss itself does. The three rows of the plain
recipe are the folders `train_world_pulid` writes, so each is trained once."""


def train_world_pulid_ablation(
    world_dir: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    *,
    n_images: int = DEFAULT_IMAGES,
    seed: int = 0,
    overrides: dict | None = None,
    stage_overrides: dict[int, dict] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Train the rows of PuLID's ablation in the world; the world's own adapter is untouched.

    Args:
        world_dir: the world folder (default: `resolve_world`).
        out: work folder (default `WORLD/.pulid`, shared with `train_world_pulid`).
        progress: progress bars.
        n_images: training portraits.
        seed: data and training seed.
        overrides: PuLID settings over `PRESET` for every row.
        stage_overrides: more settings per stage (e.g. {1: {"steps": 800}}).
        log: where one-line messages go.

    Returns:
        {row: its trained PuLID folder}, in `ABLATION_ROWS` order.
    """
    world, work, data, vision = _prepare(world_dir, out, n_images, seed, progress, log)

    def settings_of(stage: int) -> dict:
        return (overrides or {}) | {"seed": seed} | (stage_overrides or {}).get(stage, {})

    rows = {}
    for row, name, stage, start, extra in ABLATION_ROWS:
        settings = settings_of(stage) | extra
        if settings.get("steps") == _STAGES_2_AND_3:
            settings["steps"] = sum(
                world_pulid_config(world, s, **settings_of(s)).steps for s in (2, 3)
            )
        cfg = world_pulid_config(world, stage, **settings)
        init = None if start is None else work / start
        rows[row] = _train_stage(cfg, data, world, vision, work / name, init, progress, log)
    return rows


def _previous_stage(work: Path, stage: int) -> Path | None:
    if stage == 1:
        return None
    prev = work / f"stage{stage - 1}"
    if not (prev / "pulid.json").is_file():
        raise SamefaceError(f"stage {stage} starts from stage {stage - 1}: train that first")
    return prev


def _finished(folder: Path, cfg: Any) -> bool:
    try:
        trained = json.loads((folder / "pulid.json").read_text())["trained"]
    except (OSError, ValueError, KeyError):
        return False
    return trained.get("stage") == cfg.stage and trained.get("steps", 0) >= cfg.steps


def publish_adapter(stage_folder: str | os.PathLike, world_folder: str | os.PathLike) -> Path:
    """Copy a trained PuLID folder to `WORLD/pulid/` (atomically), its base, CLIP and world
    recorded relative to it ("../base", "../clip", ".."), so the world folder can move."""
    from ...world.recipes import publish_trained

    def rewrite(meta: dict) -> dict:
        meta["base"] = "../base"
        meta["clip_vision"] = dict(meta.get("clip_vision") or {}) | {"name": "../clip"}
        meta["config"] = dict(meta["config"]) | {"clip_vision": "../clip", "world": ".."}
        return meta

    files = ("adapter.safetensors", "encoder.safetensors")
    return publish_trained(stage_folder, world_folder, PULID_DIR, "pulid.json", files, rewrite)


def world_pulid_adapter(world_dir: str | os.PathLike | None = None) -> Path:
    """The world's trained PuLID folder (`WORLD/pulid`).

    Raises:
        ModelNotFoundError: the world has none yet.
    """
    from ...world.recipes import trained_in_world

    return trained_in_world(
        world_dir, PULID_DIR, "pulid.json", "PuLID adapter", "sameface world pulid"
    )


# ---- `sameface world pulid` and the world bench ---------------------------------------------


def _add_arguments(p: Any) -> None:
    from ...world.recipes import add_recipe_arguments

    add_recipe_arguments(
        p, work="WORLD/.pulid", images=DEFAULT_IMAGES, config="configs/pulid/world.yaml"
    )
    p.add_argument(
        "--stage", type=int, choices=[1, 2, 3], action="append",
        help="train only this stage (repeatable; default 1, 2 and 3)",
    )  # fmt: skip
    p.add_argument(
        "--steps", action="append", metavar="STAGE=N", help="steps of a stage, e.g. --steps 1=800"
    )


def _run(args: Any) -> Path:
    from ...world.recipes import parse_settings

    stage_overrides: dict[int, dict] = {}
    for item in args.steps or []:
        stage, _, n = item.partition("=")
        if not (stage.isdigit() and n.isdigit()):
            raise SamefaceError(f"--steps takes STAGE=N, e.g. --steps 1=400, got {item!r}")
        stage_overrides[int(stage)] = {"steps": int(n)}
    out = train_world_pulid(
        args.world,
        args.work,
        stages=sorted(set(args.stage or DEFAULT_STAGES)),
        progress=not args.quiet,
        n_images=args.images or DEFAULT_IMAGES,
        overrides=parse_settings(args.set),
        stage_overrides=stage_overrides,
    )
    print(f"PuLID adapter written to {out}; use it with --method pulid --adapter {out}")
    return out


def _settings(world: Any, folder: Path) -> dict:
    """The world's adapter, and the world itself (`recognizer: world` reads it)."""
    return {"adapter": str(folder), "world": str(world.folder)}


RECIPE = WorldRecipe(
    folder=PULID_DIR,
    what="PuLID adapter",
    help="train the world's PuLID adapter (WORLD/pulid; resumable)",
    description="Render PuLID training portraits of random anonymous people, train PuLID "
    "stages 1, 2 and 3 with the world's recogniser, detector and CLIP, and write the adapter "
    "to WORLD/pulid (docs/pulid.md). Rerun the same command to resume.",
    add_arguments=_add_arguments,
    run=_run,
    settings=_settings,
)
