"""How much a method changes the image outside the face, against the base model's image for
the same identity, prompt and seed (FeedFace's claim, seed 002 §2.2 / B.1: the
regularisation mask loss keeps the background the base model would draw).

    change = mean over background pixels of |image − base image|   (RGB in [0, 1])

The background is everything outside the faces found in either image (each detected box
expanded `FACE_EXPAND`× about its centre, to cover hair and chin). Read from a finished
bench run (`results.jsonl` + its images), paired with the no-identity baseline ("none"),
which draws the same prompt and seed with "a person".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

FACE_EXPAND = 1.5


def face_free_mask(shape: tuple[int, int], boxes: list) -> np.ndarray:
    """(H, W) bool: True outside every box (x0, y0, x1, y1) expanded `FACE_EXPAND`×."""
    h, w = shape
    keep = np.ones((h, w), bool)
    for x0, y0, x1, y1 in boxes:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        hw, hh = (x1 - x0) * FACE_EXPAND / 2, (y1 - y0) * FACE_EXPAND / 2
        left, right = max(0, int(np.floor(cx - hw))), min(w, int(np.ceil(cx + hw)))
        t, b = max(0, int(np.floor(cy - hh))), min(h, int(np.ceil(cy + hh)))
        keep[t:b, left:right] = False
    return keep


def background_change(image: np.ndarray, base_image: np.ndarray, boxes: list) -> float | None:
    """Mean |image − base_image| (RGB, [0, 1]) outside the face boxes; None if no pixel is left."""
    keep = face_free_mask(image.shape[:2], boxes)
    if not keep.any():
        return None
    diff = np.abs(image.astype(np.float32) - base_image.astype(np.float32)) / 255.0
    return float(diff[keep].mean())


def background_changes(
    run_dir: str | os.PathLike, detector: Any, methods: list[str], *, baseline: str = "none"
) -> dict[str, list[float]]:
    """Per method, the background change of each of its images against the baseline's image
    with the same identity, prompt and seed, in a finished bench run.

    Args:
        run_dir: the bench run folder.
        detector: a face detector (`detect(image) -> [Face]`), e.g. the world's.
        methods: the methods to measure.
        baseline: the method whose images are the reference ("none": the base model).
    """
    from ..imageio import load_image
    from .records import read_results, record_key

    run = Path(run_dir)
    rows, seen = [], set()
    for r in read_results(run):  # results.jsonl and any unmerged parts: each image once
        if r.get("type") == "image" and record_key(r) not in seen:
            seen.add(record_key(r))
            rows.append(r)
    key = lambda r: (r["identity"], r["prompt_index"], r["seed"])  # noqa: E731
    base = {key(r): r["image"] for r in rows if r["method"] == baseline}
    boxes_of: dict[str, list] = {}

    def boxes(path: str, image: np.ndarray) -> list:
        if path not in boxes_of:
            boxes_of[path] = [f.bbox for f in detector.detect(image)]
        return boxes_of[path]

    out: dict[str, list[float]] = {m: [] for m in methods if m != baseline}
    for r in rows:
        if r["method"] not in out or key(r) not in base:
            continue
        img, ref = load_image(run / r["image"]), load_image(run / base[key(r)])
        change = background_change(img, ref, boxes(r["image"], img) + boxes(base[key(r)], ref))
        if change is not None:
            out[r["method"]].append(change)
    return out


__all__ = ["background_change", "background_changes", "face_free_mask"]
