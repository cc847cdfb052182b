"""The build's rendered training data: portraits with their person, identity, context and geometry.

Stored as one safetensors file of numpy arrays (no pickle). Rendering is split into
fixed chunks, each seeded by (seed, chunk), so the pool is the same whatever the number of
worker processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .render import BACKGROUNDS, FRAMINGS, PATTERNS, STYLES, Context

ANONYMOUS = -1
"""`person` value of a random one-off person (captioned "a person")."""
NO_FACE = -2
"""`person` value of an image without a face (detector negatives)."""
CONTEXT_COLUMNS = ("background", "pattern", "style", "framing", "hat", "glasses", "scarf")
_CHOICES = {"background": BACKGROUNDS, "pattern": PATTERNS, "style": STYLES, "framing": FRAMINGS}
CHUNK = 500


def encode_context(ctx: Context) -> np.ndarray:
    """Context -> int16 row in `CONTEXT_COLUMNS` order."""
    return np.array(
        [
            _CHOICES[c].index(getattr(ctx, c)) if c in _CHOICES else int(getattr(ctx, c))
            for c in CONTEXT_COLUMNS
        ],
        np.int16,
    )


def decode_context(row: np.ndarray) -> dict:
    """int row -> {attribute: value} (what captions and classifiers use)."""
    return {
        c: (_CHOICES[c][int(v)] if c in _CHOICES else bool(v))
        for c, v in zip(CONTEXT_COLUMNS, row, strict=False)
    }


@dataclass
class Pool:
    """Rendered images and their ground truth (row i of every array describes image i)."""

    images: np.ndarray  # (N, S, S, 3) uint8
    person: np.ndarray  # (N,) int32: known person index, ANONYMOUS or NO_FACE
    params: np.ndarray  # (N, D) float32 identity vectors (zeros for NO_FACE)
    context: np.ndarray  # (N, 7) int16, CONTEXT_COLUMNS
    boxes: np.ndarray  # (N, 4) float32 face boxes in pixels
    landmarks: np.ndarray  # (N, 5, 2) float32

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: np.ndarray) -> Pool:
        return Pool(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def save(self, path: str | os.PathLike) -> Path:
        from safetensors.numpy import save_file

        from ..fileio import write_with

        arrays = {f.name: np.ascontiguousarray(getattr(self, f.name)) for f in fields(self)}
        return write_with(Path(path), lambda tmp: save_file(arrays, str(tmp)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Pool:
        from safetensors.numpy import load_file

        return cls(**load_file(str(path)))

    @classmethod
    def concat(cls, pools: list[Pool]) -> Pool:
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in pools]) for f in fields(cls)}
        )


def _render_chunk(job: tuple) -> Pool:
    """Render one chunk: `job` = (seed, chunk index, person ids, identity rows, size)."""
    from .render import render, render_background

    seed, chunk, person, params, size = job
    rng = np.random.default_rng([seed, chunk])
    n = len(person)
    out = Pool(
        images=np.zeros((n, size, size, 3), np.uint8),
        person=np.asarray(person, np.int32),
        params=np.asarray(params, np.float32),
        context=np.zeros((n, len(CONTEXT_COLUMNS)), np.int16),
        boxes=np.zeros((n, 4), np.float32),
        landmarks=np.zeros((n, 5, 2), np.float32),
    )
    for i in range(n):
        ctx = Context.random(rng)
        out.context[i] = encode_context(ctx)
        if person[i] == NO_FACE:
            out.images[i] = render_background(ctx, size=size, rng=rng)
            continue
        r = render(params[i], ctx, size=size, rng=rng)
        out.images[i], out.boxes[i], out.landmarks[i] = r.image, r.box, r.landmarks
    return out


def render_pool(
    person: np.ndarray,
    params: np.ndarray,
    *,
    seed: int,
    size: int,
    workers: int = 2,
    progress: bool = True,
    desc: str = "render",
) -> Pool:
    """Render one image per row of (`person`, `params`), in parallel chunks (deterministic)."""
    from tqdm.auto import tqdm

    jobs = [
        (seed, c, person[i : i + CHUNK], params[i : i + CHUNK], size)
        for c, i in enumerate(range(0, len(person), CHUNK))
    ]
    bar = tqdm(total=len(person), desc=desc, disable=None if progress else True)
    parts = []
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as procs:
            for part in procs.imap(_render_chunk, jobs):
                parts.append(part)
                bar.update(len(part))
    else:
        for job in jobs:
            parts.append(_render_chunk(job))
            bar.update(len(parts[-1]))
    bar.close()
    return Pool.concat(parts)
