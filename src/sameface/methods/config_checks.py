"""Checks every training config shares (mixed precision, resolution, counts, learning rates);
each returns readable problems for the config's one `ValueError`."""

from __future__ import annotations

import math
from typing import Any


def number_problems(cfg: Any, *, positive=(), non_negative=(), unit=(), whole=()) -> list[str]:
    """Problems of the named fields: `positive` numbers > 0, `non_negative` >= 0, `unit` in
    [0, 1], `whole` whole numbers >= 1 (booleans and non-finite values are refused)."""
    problems = []

    def number(name: str) -> float | None:
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            problems.append(f"{name} must be a number, got {v!r}")
            return None
        return float(v)

    for name in whole:
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            problems.append(f"{name} must be a whole number >= 1, got {v!r}")
    for names, ok, rule in (
        (positive, lambda v: v > 0, "> 0"),
        (non_negative, lambda v: v >= 0, ">= 0"),
        (unit, lambda v: 0 <= v <= 1, "in [0, 1]"),
    ):
        for name in names:
            v = number(name)
            if v is not None and not ok(v):
                problems.append(f"{name} must be {rule}, got {getattr(cfg, name)!r}")
    return problems


def training_problems(cfg: Any) -> list[str]:
    """`mixed_precision`, `resolution`, `checkpoint_every`, `max_nan_steps`, `seed`."""
    problems = []
    if cfg.mixed_precision not in ("no", "bf16"):
        problems.append(f"mixed_precision must be 'no' or 'bf16', got {cfg.mixed_precision!r}")
    r = cfg.resolution
    if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 64 or r % 8):
        problems.append(f"resolution must be a multiple of 8 and at least 64, got {r!r}")
    for name, low in (("checkpoint_every", 0), ("max_nan_steps", 1), ("seed", 0)):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            problems.append(f"{name} must be a whole number >= {low}, got {v!r}")
    if not isinstance(cfg.gradient_checkpointing, bool):
        problems.append(
            f"gradient_checkpointing must be true or false, got {cfg.gradient_checkpointing!r}"
        )
    return problems
