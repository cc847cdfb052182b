"""DreamIdentity in the proving-ground world: its preset, data, training, the world's encoder.

    train_world_dreamidentity(world)   reconstruction data (rendered anonymous portraits) +
                                       the self-augmented set (the world's known people, drawn
                                       by the world's base model) + training (resumable)
                                       -> WORLD/dreamidentity/, the folder `--adapter` takes
    RECIPE                             what `sameface world dreamidentity`, the bench and the demo read

The M² encoder reads the world's recogniser at its four blocks + its embedding (`WorldStages`);
the self-augmented triplets are scored with the world's recogniser and CLIP (never the judge).
Imports nothing heavy: the CLI reads `RECIPE`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..spec import WorldRecipe

DREAMIDENTITY_DIR = "dreamidentity"
"""The world's trained M² ID encoder: `WORLD/dreamidentity/`."""

PRESET = MappingProxyType(
    {
        "scales": "multi",
        "projection": "mlp",
        "init_word": "person",
        "augmented_share": 0.5,
        "reg_weight": 0.01,
        "batch_size": 8,
        "learning_rate": 1e-3,
        "steps": 2000,
        "checkpoint_every": 100,
        "log_every": 10,
    }
)
"""DreamIdentity settings for the shipped world (`configs/dreamidentity/world.yaml` holds the
same); the backbone is the world's recogniser. The learning rate and step count are the
world's scale (only the projections train)."""

DEFAULT_IMAGES = 3000
"""Reconstruction portraits rendered by `train_world_dreamidentity`."""
DEFAULT_NAMES = 240
"""Known people whose self-augmented triplets are drawn (of the world's 2,000)."""
PER_NAME = 8
"""Edit prompts per name (drawn from `world_edit_templates`)."""
FACE_TEMPLATE = "a photo of {name}"
"""The world's "{name} face": a plain portrait, the framing its detector knows."""
AUGMENT_STEPS = 20
"""DDIM steps of the self-augmented images (the world's base model; 20 keep the faces)."""


def world_edit_templates(n: int = 64, seed: int = 0) -> list[str]:
    """`n` distinct edit prompts in the world's caption grammar (style, framing, accessories,
    background), each naming "{name}": random contexts, as the world's own captions vary."""
    import numpy as np

    from ...world.captions import write_caption
    from ...world.render import Context

    rng = np.random.default_rng(seed)
    plain = FACE_TEMPLATE.format(name="{name}")
    out: list[str] = []
    while len(out) < n:
        text = write_caption("{name}", Context.random(rng), rng=rng)
        if text not in out and text != plain:
            out.append(text)
    return out


def world_dreamidentity_config(world: Any, **overrides: Any) -> Any:
    """`PRESET` with the world's recogniser as backbone, + overrides."""
    from .config import DreamIdentityConfig

    settings = dict(PRESET) | {"backbone": f"world:{Path(world.folder).resolve()}"}
    return DreamIdentityConfig.from_dict(settings | overrides)


def train_world_dreamidentity(
    world_dir: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    *,
    n_images: int = DEFAULT_IMAGES,
    n_names: int = DEFAULT_NAMES,
    augmented: bool = True,
    seed: int = 0,
    overrides: dict | None = None,
    publish: bool = True,
    log: Callable[[str], None] = print,
    analyzer: Any = None,
) -> Path:
    """Make the data, train DreamIdentity in the world and write the encoder to
    `WORLD/dreamidentity/`. Resumable: finished parts are not repeated.

    Args:
        world_dir: the world folder (default: `resolve_world`).
        out: work folder (default `WORLD/.dreamidentity`).
        progress: progress bars.
        n_images: reconstruction portraits.
        n_names: known people drawn for the self-augmented set.
        augmented: train with the self-augmented set (False: reconstruction only, the
            paper's ablation).
        seed: data and training seed.
        overrides: settings over `PRESET` (e.g. {"scales": "last"} for the other ablation).
        publish: copy the result into the world (False: leave it in `out/<run name>`).
        log: where one-line messages go.
        analyzer: the `FaceAnalyzer` that finds and embeds the self-augmented faces (default:
            the world's detector and recogniser).

    Returns:
        The encoder folder (`WORLD/dreamidentity`, or the training folder without `publish`).
    """
    from ...errors import SamefaceError
    from ...world.recipes import finished_run, record_time, render_face_dataset
    from ...world.world import World
    from .augment import self_augment
    from .encode import load_encoder_backbone
    from .train import train

    world = World.load(world_dir)
    work = Path(out) if out is not None else world.folder / ".dreamidentity"
    data = work / "data"
    t0 = time.perf_counter()
    render_face_dataset(
        world, data, n_images, seed, progress=progress, desc="render reconstruction data"
    )
    log(f"[data] {n_images} portraits in {data} ({time.perf_counter() - t0:.0f} s)")
    triplets = None
    if augmented:
        triplets = work / "augmented"
        if not (triplets / "triplets.jsonl").is_file():
            t0 = time.perf_counter()
            summary = self_augment(
                world.base, world.people[0].names[:n_names], triplets,
                analyzer=analyzer or world.analyzer(), clip=world.clip, templates=world_edit_templates(seed=seed),
                face_template=FACE_TEMPLATE, per_name=PER_NAME, num_inference_steps=AUGMENT_STEPS,
                seed=seed, progress=progress,
            )  # fmt: skip
            record_time(work, "augmented", time.perf_counter() - t0, names=n_names)
            log(f"[self-augment] kept {summary['kept']} of {summary['candidates']} triplets")
    cfg = world_dreamidentity_config(world, **({"seed": seed} | (overrides or {})))
    ablation = not augmented or cfg.scales != "multi"
    if publish and ablation:
        raise SamefaceError(
            "an ablation (no self-augmented data, or scales=last) would replace the world's "
            "encoder; add --no-publish (publish=False)"
        )
    name = "train" + ("" if augmented else "-noaug") + ("" if cfg.scales == "multi" else "-last")
    folder = work / name
    if finished_run(folder, "dreamidentity.json", cfg, n_images):
        log(f"[train] done earlier: {folder}")
    else:
        backbone = load_encoder_backbone(cfg, None, "cpu")
        t0 = time.perf_counter()
        train(
            data, world.base, cfg, folder, augmented=triplets, backbone=backbone, progress=progress
        )
        seconds = time.perf_counter() - t0
        record_time(work, name, seconds, steps=cfg.steps, batch_size=cfg.batch_size)
        log(f"[train] {cfg.steps} steps in {seconds:.0f} s -> {folder}")
    return publish_encoder(folder, world.folder) if publish else folder


def publish_encoder(folder: str | os.PathLike, world_folder: str | os.PathLike) -> Path:
    """Copy a trained encoder to `WORLD/dreamidentity/` (atomically), its base and backbone
    recorded relative to it ("../base", "world:../"), so the world folder can move."""
    from ...world.recipes import publish_trained
    from .model import META_FILE, WEIGHTS_FILE

    def rewrite(meta: dict) -> dict:
        meta["base"] = "../base"
        meta["config"] = dict(meta["config"]) | {"backbone": "world:../"}
        meta["backbone"] = dict(meta.get("backbone") or {}) | {"folder": "../"}
        if (meta.get("trained") or {}).get("augmented"):  # a local work path: keep its name only
            meta["trained"]["augmented"] = Path(meta["trained"]["augmented"]).name
        return meta

    return publish_trained(
        folder, world_folder, DREAMIDENTITY_DIR, META_FILE, (WEIGHTS_FILE,), rewrite
    )


# ---- `sameface world dreamidentity` and the world bench -------------------------------------


def _add_arguments(p: Any) -> None:
    from ...world.recipes import add_recipe_arguments

    add_recipe_arguments(
        p,
        work="WORLD/.dreamidentity",
        images=DEFAULT_IMAGES,
        config="configs/dreamidentity/world.yaml",
    )
    p.add_argument("--steps", type=int, help=f"optimisation steps (default {PRESET['steps']})")
    p.add_argument(
        "--names", type=int, default=DEFAULT_NAMES,
        help=f"known people drawn for the self-augmented set (default {DEFAULT_NAMES})",
    )  # fmt: skip
    p.add_argument(
        "--no-augmented", action="store_true",
        help="train on reconstruction data only (the paper's ablation; needs --no-publish)",
    )  # fmt: skip
    p.add_argument(
        "--no-publish", action="store_true",
        help="leave the result in WORK/train* instead of replacing WORLD/dreamidentity (ablations)",
    )  # fmt: skip


def _run(args: Any) -> Path:
    from ...world.recipes import parse_settings

    overrides = parse_settings(args.set) | ({"steps": args.steps} if args.steps else {})
    out = train_world_dreamidentity(
        args.world,
        args.work,
        progress=not args.quiet,
        n_images=args.images or DEFAULT_IMAGES,
        n_names=args.names,
        augmented=not args.no_augmented,
        overrides=overrides,
        publish=not args.no_publish,
    )
    print(
        f"DreamIdentity encoder written to {out}; use it with --method dreamidentity --adapter {out}"
    )
    return out


def _settings(world: Any, folder: Path) -> dict:
    """The world's encoder (its backbone, the world's recogniser, is recorded in it)."""
    del world
    return {"adapter": str(folder)}


RECIPE = WorldRecipe(
    folder=DREAMIDENTITY_DIR,
    what="DreamIdentity encoder",
    help="train the world's DreamIdentity M² ID encoder (WORLD/dreamidentity; resumable)",
    description="Render reconstruction portraits of random anonymous people, draw the "
    "self-augmented editability set from the world's known people with the world's base model "
    "(scored by the world's recogniser and CLIP, top quarter kept), train the M² encoder's "
    "projections on both, and write the encoder to WORLD/dreamidentity (docs/dreamidentity.md). "
    "Rerun the same command to resume.",
    add_arguments=_add_arguments,
    run=_run,
    settings=_settings,
)
