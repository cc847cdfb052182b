"""FeedFace in the proving-ground world: its preset, training there, the world's adapter.

FeedFace runs in the world unchanged; only its CLIP face encoder is the world's CLIP
(`WORLD/clip`) and its training data are rendered world portraits of anonymous people (each
with its face box and face mask, as `sameface data prepare` writes them).

    train_world_feedface(world)   data + training (resumable) -> WORLD/feedface/, the folder
                                  `--adapter` / `FeedFaceConfig.adapter` take
    RECIPE                        what `sameface world feedface`, the world bench and the demo read

Imports nothing heavy: the CLI reads `RECIPE` to build `sameface world feedface`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ...errors import SamefaceError
from ..spec import WorldRecipe

FEEDFACE_DIR = "feedface"
"""The world's trained FeedFace adapter: `WORLD/feedface/`."""

PRESET = MappingProxyType(
    {
        "clip_output": "hidden",
        "control_init": "copy",
        "loss": "regularization",
        "batch_size": 8,
        "learning_rate": 3e-4,
        "steps": 3000,
        "checkpoint_every": 100,
        "log_every": 10,
    }
)
"""FeedFace settings for the shipped world (`configs/feedface/world.yaml` holds the same).

The paper's losses, probabilities (10% zero face, 10% standard loss) and optimiser; the
learning rate and step count are the world's scale (the paper: 2e-5 for 50,000 steps of
batch 96), as for PuLID's world preset."""

DEFAULT_IMAGES = 3000
"""Training portraits rendered by `train_world_feedface`."""

DATA_MASK = "face"
"""The regularisation loss's mask in the world (`render_face_dataset`): the face with what is
on it (moustache, beard, fringe), as the paper's facial mask from a face parser and
`landmark_mask` on photos. "head" (+ the hair) was measured beside it (docs/feedface.md):
no more identity in the full suites, and less context."""


def world_feedface_config(world: Any, **overrides: Any) -> Any:
    """`PRESET` with the world's CLIP, + overrides."""
    from .config import FeedFaceConfig

    settings = dict(PRESET) | {"clip_vision": str(Path(world.folder) / "clip")}
    return FeedFaceConfig.from_dict(settings | overrides)


def train_world_feedface(
    world_dir: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    *,
    n_images: int = DEFAULT_IMAGES,
    seed: int = 0,
    overrides: dict | None = None,
    publish: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Train FeedFace in the world and write the adapter to `WORLD/feedface/`.

    Renders the data (`sameface.world.recipes.render_face_dataset`), then trains with
    `sameface.methods.feedface.train.train`. Resumable: a finished run is not repeated and an
    interrupted one resumes from its checkpoint.

    Args:
        world_dir: the world folder (default: `resolve_world`).
        out: work folder for the data and the training output (default `WORLD/.feedface`).
        progress: progress bars.
        n_images: training portraits.
        seed: data and training seed.
        overrides: FeedFace settings over `PRESET` (e.g. {"loss": "mask"} for the ablation).
        publish: copy the result into the world (False: leave it in `out/train`, or
            `out/train-<loss>` for the ablation's other losses).
        log: where one-line messages go.

    Returns:
        The adapter folder (`WORLD/feedface`, or the training folder without `publish`).
    """
    from ...models.clip_vision import ClipVision
    from ...world.recipes import record_time, render_face_dataset
    from ...world.world import World
    from .train import train

    world = World.load(world_dir)
    work = Path(out) if out is not None else world.folder / ".feedface"
    data = work / "data"
    t0 = time.perf_counter()
    render_face_dataset(
        world, data, n_images, seed, progress=progress, desc="render FeedFace data", mask=DATA_MASK
    )
    log(f"[data] {n_images} portraits in {data} ({time.perf_counter() - t0:.0f} s)")
    cfg = world_feedface_config(world, **({"seed": seed} | (overrides or {})))
    if publish and cfg.loss != "regularization":
        raise SamefaceError(
            f"loss {cfg.loss!r} is an ablation: it would replace the world's adapter (the "
            "paper's regularisation loss); add --no-publish (publish=False)"
        )
    # The ablation's losses train beside the paper's, on the same data.
    folder = work / ("train" if cfg.loss == "regularization" else f"train-{cfg.loss}")
    if _finished(folder, cfg, n_images):
        log(f"[train] done earlier: {folder}")
    else:
        vision = ClipVision.load(world.folder / "clip")
        t0 = time.perf_counter()
        train(data, world.base, cfg, folder, vision=vision, progress=progress)
        seconds = time.perf_counter() - t0
        record_time(work, folder.name, seconds, steps=cfg.steps, batch_size=cfg.batch_size)
        log(f"[train] {cfg.steps} steps in {seconds:.0f} s -> {folder}")
    return publish_adapter(folder, world.folder) if publish else folder


def _finished(folder: Path, cfg: Any, n_images: int) -> bool:
    """A finished run with these settings on this many samples (more data trains again)."""
    from .config import FeedFaceConfig

    try:
        meta = json.loads((folder / "feedface.json").read_text())
        # Settings added since the run was saved read as their defaults (what it trained with).
        saved = FeedFaceConfig.from_dict(meta.get("config", {})).to_dict()
    except (OSError, ValueError, TypeError):
        return False
    same = {k: v for k, v in saved.items() if k != "steps"} == {
        k: v for k, v in cfg.to_dict().items() if k != "steps"
    }
    trained = meta.get("trained", {})
    if same and trained.get("steps", 0) > cfg.steps:
        raise SamefaceError(
            f"{folder} holds a {trained['steps']}-step run, more than the {cfg.steps} asked; "
            "train into another --work folder"
        )
    return same and trained.get("steps") == cfg.steps and trained.get("samples") == n_images


def publish_adapter(folder: str | os.PathLike, world_folder: str | os.PathLike) -> Path:
    """Copy a trained FeedFace folder to `WORLD/feedface/` (atomically; matrices int8 with a
    scale per row, `tensorfile.quantize_rows`, to stay within the world's 3 MB for it: float16
    would be 3.2 MB), its base and CLIP recorded relative to it ("../base", "../clip"), so
    the world folder can move."""
    from ...world.recipes import publish_trained
    from .model import META_FILE, WEIGHTS_FILE

    def rewrite(meta: dict) -> dict:
        meta["base"] = "../base"
        meta["clip_vision"] = dict(meta.get("clip_vision") or {}) | {"name": "../clip"}
        meta["config"] = dict(meta["config"]) | {"clip_vision": "../clip"}
        return meta

    files = (WEIGHTS_FILE,)
    return publish_trained(
        folder, world_folder, FEEDFACE_DIR, META_FILE, files, rewrite, store="int8"
    )


def world_feedface_adapter(world_dir: str | os.PathLike | None = None) -> Path:
    """The world's trained FeedFace folder (`WORLD/feedface`).

    Raises:
        ModelNotFoundError: the world has none yet.
    """
    from ...world.recipes import trained_in_world
    from .model import META_FILE

    return trained_in_world(
        world_dir, FEEDFACE_DIR, META_FILE, "FeedFace adapter", "sameface world feedface"
    )


# ---- `sameface world feedface` and the world bench ------------------------------------------


def _add_arguments(p: Any) -> None:
    from ...world.recipes import add_recipe_arguments

    add_recipe_arguments(
        p, work="WORLD/.feedface", images=DEFAULT_IMAGES, config="configs/feedface/world.yaml"
    )
    p.add_argument("--steps", type=int, help=f"optimisation steps (default {PRESET['steps']})")
    p.add_argument(
        "--no-publish", action="store_true",
        help="leave the result in WORK/train (WORK/train-LOSS for --set loss=mask|standard) "
        "instead of replacing WORLD/feedface (ablations)",
    )  # fmt: skip


def _run(args: Any) -> Path:
    from ...world.recipes import parse_settings

    overrides = parse_settings(args.set) | ({"steps": args.steps} if args.steps else {})
    out = train_world_feedface(
        args.world,
        args.work,
        progress=not args.quiet,
        n_images=args.images or DEFAULT_IMAGES,
        overrides=overrides,
        publish=not args.no_publish,
    )
    print(f"FeedFace adapter written to {out}; use it with --method feedface --adapter {out}")
    return out


def _settings(world: Any, folder: Path) -> dict:
    """The world's adapter (its CLIP is recorded in it)."""
    del world
    return {"adapter": str(folder)}


RECIPE = WorldRecipe(
    folder=FEEDFACE_DIR,
    what="FeedFace adapter",
    help="train the world's FeedFace adapter (WORLD/feedface; resumable)",
    description="Render FeedFace training portraits of random anonymous people (face box and "
    "mask from the renderer), train the face projection and control blocks with the "
    "regularisation mask loss on the world's base model and CLIP, and write the adapter to "
    "WORLD/feedface (docs/feedface.md). Rerun the same command to resume.",
    add_arguments=_add_arguments,
    run=_run,
    settings=_settings,
)
