"""PuLID in the proving-ground world: rendered training data, training, the world's adapter.

PuLID runs here unchanged; only its face models are the world's (`recognizer: world`: the
world's recogniser for the ID embedding and the ID loss, its detector for the loss) and its
CLIP vision model is the world's CLIP (`WORLD/clip`).

    prepare_world_pulid_data(world, out, n)   portraits of random anonymous people (never the
                                              world's known or new people), captioned
                                              "... of a person ...", in the dataset format of
                                              `sameface data prepare`
    train_world_pulid(world)                  data, stage 1, stage 2 (resumable) -> WORLD/pulid/,
                                              the folder `--adapter` / `PuLIDConfig.adapter` take
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ..errors import SamefaceError

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


def anonymous_identities(world: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, D) random identities at least `MIN_IDENTITY_DISTANCE` from every known and new person."""
    from .people import sample_identities

    known, new = world.people
    return sample_identities(n, rng, avoid=np.concatenate([known.params, new.params]))


def prepare_world_pulid_data(
    world: Any,
    out_dir: str | os.PathLike,
    n_images: int,
    seed: int = 0,
    *,
    progress: bool = True,
) -> dict:
    """Render `n_images` portraits of random anonymous people as a PuLID training dataset.

    One person per image, each in a random context, captioned like the world's own "a person"
    captions. The files are exactly `sameface data prepare`'s (`sameface.data.prepare`
    layout, written by its `write_sample`): the whole portrait as the crop (the base model
    draws whole portraits), the aligned face and landmarks from the renderer's ground truth,
    the face mask from `Render.mask`, the world recogniser's embedding. Resumable: a rerun
    continues after the last complete sample, and a larger `n_images` adds samples.

    Args:
        world: a `World` (or its folder).
        out_dir: dataset folder.
        n_images: samples the dataset should hold.
        seed: decides the people and their portraits.
        progress: progress bar.

    Returns:
        The dataset summary (`prepare.json`).
    """
    from tqdm.auto import tqdm

    from ..data.prepare import read_index, write_sample
    from ..faces.types import Face
    from ..fileio import write_json_atomic
    from .captions import PERSON, write_caption
    from .render import Context, render
    from .world import World

    world = world if isinstance(world, World) else World.load(world)
    out = Path(out_dir)
    source = {"world": str(world.folder), "seed": int(seed)}
    _check_same_source(out, source)
    out.mkdir(parents=True, exist_ok=True)
    people = anonymous_identities(world, n_images, np.random.default_rng([seed, 0]))
    rec, size = world.recognizer, world.image_size
    start = len(read_index(out))
    for i in tqdm(
        range(start, n_images), desc="render PuLID data", disable=None if progress else True
    ):
        rng = np.random.default_rng([seed, 1, i])
        ctx = Context.random(rng)
        r = render(people[i], ctx, size=size, rng=rng)
        aligned = rec.align(r.image, Face(bbox=tuple(r.box), landmarks=r.landmarks, score=1.0))
        write_sample(
            out,
            i,
            crop=r.image,
            aligned=aligned,
            mask=(r.mask * 255).round().astype(np.uint8),
            embedding=rec.embed(aligned),
            source=f"world:{seed}:{i}",
            caption=write_caption(PERSON, ctx, rng=rng),
            landmarks=r.landmarks,
            score=1.0,
        )
    summary = {
        "settings": {"resolution": size, "expand": None, "source": "rendered world portraits"},
        "recognizer": rec.describe(),
        "samples": len(read_index(out)),
        "this_run": {"kept": max(0, n_images - start)},
        "world_source": source,
    }
    write_json_atomic(out / "prepare.json", summary)
    return summary


def _check_same_source(out: Path, source: dict) -> None:
    try:
        saved = json.loads((out / "prepare.json").read_text()).get("world_source")
    except (OSError, ValueError):
        return
    if saved is not None and saved != source:
        raise SamefaceError(
            f"{out} holds data rendered from {saved}; use another folder for {source}"
        )


def world_pulid_config(world: Any, stage: int, **overrides: Any) -> Any:
    """`PRESET` for `stage` (its `STAGE_STEPS`), with the world's recogniser and CLIP, + overrides."""
    from ..methods.pulid import PuLIDConfig

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

    Renders the data (`prepare_world_pulid_data`), then trains each stage with
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
    from ..methods.pulid import ClipVision
    from ..methods.pulid.train import train
    from .world import World

    world = World.load(world_dir)
    work = Path(out) if out is not None else world.folder / ".pulid"
    data = work / "data"
    t0 = time.perf_counter()
    prepare_world_pulid_data(world, data, n_images, seed, progress=progress)
    log(f"[data] {n_images} portraits in {data} ({time.perf_counter() - t0:.0f} s)")
    base = world.base
    vision = ClipVision.load(world.folder / "clip")
    folder = None
    for stage in stages:
        settings = (overrides or {}) | {"seed": seed} | (stage_overrides or {}).get(stage, {})
        cfg = world_pulid_config(world, stage, **settings)
        init = _previous_stage(work, stage)
        folder = work / f"stage{stage}"
        if _finished(folder, cfg):
            log(f"[stage {stage}] done earlier")
            continue
        t0 = time.perf_counter()
        train(data, base, cfg, folder, vision=vision, init_from=init, progress=progress)
        seconds = time.perf_counter() - t0
        _record_time(work, stage, cfg, seconds)
        log(f"[stage {stage}] {cfg.steps} steps in {seconds:.0f} s -> {folder}")
    if folder is None:
        raise SamefaceError("no stage to train: pass stages=(1, 2, 3)")
    return publish_adapter(folder, world.folder)


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


def _record_time(work: Path, stage: int, cfg: Any, seconds: float) -> None:
    from ..fileio import write_json_atomic

    path = work / "timings.json"
    times = json.loads(path.read_text()) if path.is_file() else {}
    times[f"stage{stage}"] = {
        "seconds": round(seconds, 1),
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "threads": _threads(),
    }
    write_json_atomic(path, times)


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def publish_adapter(stage_folder: str | os.PathLike, world_folder: str | os.PathLike) -> Path:
    """Copy a trained PuLID folder to `WORLD/pulid/` (atomically), its base, CLIP and world
    recorded relative to it ("../base", "../clip", ".."), so the world folder can move."""
    from .train_world import _atomic_folder

    src = Path(stage_folder)
    meta = json.loads((src / "pulid.json").read_text())
    meta["base"] = "../base"
    meta["clip_vision"] = dict(meta.get("clip_vision") or {}) | {"name": "../clip"}
    meta["config"] = dict(meta["config"]) | {"clip_vision": "../clip", "world": ".."}

    def write(tmp: Path) -> None:
        for name in ("adapter.safetensors", "encoder.safetensors"):
            shutil.copy2(src / name, tmp / name)
        (tmp / "pulid.json").write_text(json.dumps(meta, indent=1) + "\n")

    return _atomic_folder(Path(world_folder) / PULID_DIR, write)


def world_pulid_adapter(world_dir: str | os.PathLike | None = None) -> Path:
    """The world's trained PuLID folder (`WORLD/pulid`).

    Raises:
        ModelNotFoundError: the world has none yet.
    """
    from ..errors import ModelNotFoundError
    from .world import resolve_world

    folder = resolve_world(world_dir) / PULID_DIR
    if not (folder / "pulid.json").is_file():
        raise ModelNotFoundError(
            f"{folder.parent} has no PuLID adapter; train one with "
            f"`sameface world pulid --world {folder.parent}`"
        )
    return folder
