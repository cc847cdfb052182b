"""What a method's world recipe builds on: training data of anonymous world people, timing
records, and publishing a trained folder into the world.

A method that trains in the proving ground (an encoder method's adapter) keeps its recipe in
its own package (`methods/<name>/world.py`, a `WorldRecipe`); this module knows no method.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SamefaceError


def anonymous_identities(world: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, D) random identities at least `MIN_IDENTITY_DISTANCE` from every known and new person."""
    from .people import sample_identities

    known, new = world.people
    return sample_identities(n, rng, avoid=np.concatenate([known.params, new.params]))


def render_face_dataset(
    world: Any,
    out_dir: str | os.PathLike,
    n_images: int,
    seed: int = 0,
    *,
    progress: bool = True,
    desc: str = "render training portraits",
    mask: str = "face",
) -> dict:
    """Render `n_images` portraits of random anonymous people as a face training dataset.

    One person per image, each in a random context, captioned like the world's own "a person"
    captions. The files are exactly `sameface data prepare`'s (`sameface.data.prepare`
    layout, written by its `write_sample`): the whole portrait as the crop (the base model
    draws whole portraits), the aligned face and landmarks from the renderer's ground truth,
    the mask `mask` chooses (below), the world recogniser's embedding. Resumable: a rerun
    continues after the last complete sample, and a larger `n_images` adds samples. No
    known or new person of the world appears.

    Args:
        world: a `World` (or its folder).
        out_dir: dataset folder.
        n_images: samples the dataset should hold.
        seed: decides the people and their portraits.
        mask: "face": `Render.face_mask`, the face with what is on it (moustache, beard,
            fringe), like `landmark_mask`'s face region on photos (not the skin mask, which
            cuts facial hair out and would hide it from a mask loss); "head":
            `Render.head_mask`, the face and the hair (a face parser's face + hair classes).
        progress: progress bar.
        desc: the progress bar's label.

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
    if mask not in ("face", "head"):
        raise ValueError(f"mask {mask!r}: 'face' or 'head'")
    source = {"world": str(world.folder), "seed": int(seed), "mask": mask}
    _check_same_source(out, source)
    out.mkdir(parents=True, exist_ok=True)
    people = anonymous_identities(world, n_images, np.random.default_rng([seed, 0]))
    rec, size = world.recognizer, world.image_size
    start = len(read_index(out))
    for i in tqdm(range(start, n_images), desc=desc, disable=None if progress else True):
        rng = np.random.default_rng([seed, 1, i])
        ctx = Context.random(rng)
        r = render(people[i], ctx, size=size, rng=rng)
        aligned = rec.align(r.image, Face(bbox=tuple(r.box), landmarks=r.landmarks, score=1.0))
        write_sample(
            out,
            i,
            crop=r.image,
            aligned=aligned,
            mask=((r.face_mask if mask == "face" else r.head_mask) * 255).round().astype(np.uint8),
            embedding=rec.embed(aligned),
            source=f"world:{seed}:{i}",
            caption=write_caption(PERSON, ctx, rng=rng),
            landmarks=r.landmarks,
            score=1.0,
            box=r.box,
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


def parse_settings(items: list[str] | None, example: str = "batch_size=4") -> dict:
    """`--set KEY=VALUE` options as a settings dict (values read as YAML: numbers, lists, ...)."""
    import yaml

    out = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SamefaceError(f"--set takes KEY=VALUE, e.g. --set {example}, got {item!r}")
        out[key.strip().replace("-", "_")] = yaml.safe_load(raw)
    return out


def add_recipe_arguments(p: Any, *, work: str, images: int, config: str) -> None:
    """The options every world recipe command takes: --world, --work, --images, --set, --quiet."""
    p.add_argument("--world", metavar="DIR", help="world folder (default: the shipped world)")
    p.add_argument("--work", metavar="DIR", help=f"data and training outputs (default {work})")
    p.add_argument("--images", type=int, help=f"training portraits to render (default {images})")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE",
        help=f"a setting over {config}'s, e.g. --set batch_size=4",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def publish_trained(
    src: str | os.PathLike,
    world_folder: str | os.PathLike,
    name: str,
    meta_file: str,
    files: tuple[str, ...],
    rewrite: Any,
    *,
    store: str | None = None,
) -> Path:
    """Copy a trained folder into `WORLD/name` atomically, its JSON record passed through
    `rewrite(meta) -> meta` (record the base, CLIP, world relative to the folder, e.g.
    "../base", so the world folder can move). `store`, to keep a shipped world small:
    "float16" (the float tensors of `files`) or "int8" (`tensorfile.quantize_rows`:
    matrices int8 with row scales); loading casts them back."""
    import shutil

    from ..fileio import write_folder_atomic

    src = Path(src)
    meta = rewrite(json.loads((src / meta_file).read_text()))

    def write(tmp: Path) -> None:
        for f in files:
            if store is None:
                shutil.copy2(src / f, tmp / f)
            else:
                _save_smaller(src / f, tmp / f, store)
        (tmp / meta_file).write_text(json.dumps(meta, indent=1) + "\n")

    return write_folder_atomic(Path(world_folder) / name, write)


def _save_smaller(src: Path, dst: Path, store: str) -> None:
    from ..tensorfile import quantize_rows, read_safetensors, save_safetensors

    tensors, tags = read_safetensors(src)
    if store == "float16":
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    elif store == "int8":
        tensors, more = quantize_rows(tensors)
        tags |= more
    else:
        raise ValueError(f"store {store!r}: float16 or int8")
    save_safetensors(tensors, dst, tags)


def trained_in_world(
    world_dir: str | os.PathLike | None, name: str, meta_file: str, what: str, command: str
) -> Path:
    """A world's trained folder `WORLD/name` (holding `meta_file`).

    Raises:
        ModelNotFoundError: the world has none yet (the message says how to train it).
    """
    from ..errors import ModelNotFoundError
    from .world import resolve_world

    folder = resolve_world(world_dir) / name
    if not (folder / meta_file).is_file():
        raise ModelNotFoundError(
            f"{folder.parent} has no {what}; train one with `{command} --world {folder.parent}`"
        )
    return folder


def finished_run(folder: str | os.PathLike, meta_file: str, config: Any, n_images: int) -> bool:
    """Whether `folder` holds a finished training run with exactly `config`'s settings on
    `n_images` samples (its `meta_file` records "config" and "trained": steps, samples)."""
    try:
        meta = json.loads((Path(folder) / meta_file).read_text())
    except (OSError, ValueError):
        return False
    trained = meta.get("trained", {})
    return (
        meta.get("config") == config.to_dict()
        and trained.get("steps") == config.steps
        and trained.get("samples") == n_images
    )


def record_time(work: str | os.PathLike, key: str, seconds: float, **info: Any) -> None:
    """Add `key`'s wall time (and the thread count, and `info`) to `work/timings.json`."""
    import torch

    from ..fileio import write_json_atomic

    path = Path(work) / "timings.json"
    times = json.loads(path.read_text()) if path.is_file() else {}
    times[key] = {"seconds": round(seconds, 1), **info, "threads": torch.get_num_threads()}
    write_json_atomic(path, times)


__all__ = [
    "add_recipe_arguments",
    "anonymous_identities",
    "finished_run",
    "parse_settings",
    "publish_trained",
    "record_time",
    "render_face_dataset",
    "trained_in_world",
]
