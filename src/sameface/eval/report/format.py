"""Method labels, summary columns and number formatting shared by the report's sections."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..stats import Summary
from .run import BASELINE_LABELS

# (metric key, column label, number kind). Kinds pick the number format.
_SUMMARY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("detection_rate", "detection rate", "rate"),
    ("face_similarity", "face sim (detected only)", "score"),
    ("face_similarity_with_misses", "face sim (misses = 0)", "score"),
    ("clip_t", "CLIP-T", "score"),
    ("clip_i", "CLIP-I", "score"),
    ("face_clip_i", "face CLIP-I", "score"),
    ("id_norm", "id_norm", "score"),
    ("text_norm", "text_norm", "score"),
    ("aggregate", "aggregate", "score"),
    ("context_accuracy", "context acc.", "score"),
    ("personalize_time_s", "personalise s", "time"),
    ("gen_time_s", "s/image", "time"),
)
_MEMORY_COLUMN = ("personalize_peak_mem_mb", "personalise peak MB", "memory")
_SUMMARY_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Like the person",
        (
            "detection_rate",
            "face_similarity",
            "face_similarity_with_misses",
            "id_norm",
            "face_clip_i",
        ),
    ),
    ("Like the prompt", ("context_accuracy", "clip_t", "text_norm", "clip_i", "aggregate")),
    ("Cost", ("personalize_time_s", "gen_time_s", "personalize_peak_mem_mb")),
)
"""The summary's columns in tables of a few each, so no table is wider than a laptop."""

_DASH = "—"


def _label(method: str) -> str:
    """A method's name, with what its images are for a baseline."""
    what = BASELINE_LABELS.get(method)
    return f"{method} ({what})" if what else method


def _row_classes(methods: Sequence[str]) -> list[str]:
    return ["baseline" if m in BASELINE_LABELS else "" for m in methods]


# ---- number formatting --------------------------------------------------------------


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _decimals(kind: str, value: float) -> int:
    if kind == "score":
        return 3
    if kind == "rate":
        return 2
    if kind == "memory":
        return 0
    a = abs(value)  # times
    return 0 if a >= 100 else 1 if a >= 10 else 2


def _fmt_interval(s: Summary, kind: str) -> str:
    """`mean ± half-width`, `mean [low, high]` when asymmetric, `mean` when n = 1, `—` when n = 0."""
    if s.n == 0 or not _finite(s.mean):
        return _DASH
    d = _decimals(kind, s.mean)
    mean = f"{s.mean:.{d}f}"
    if not (_finite(s.low) and _finite(s.high)):
        return mean
    below, above = s.mean - s.low, s.high - s.mean
    if abs(below - above) <= 1e-9 * max(1.0, abs(s.mean)):
        return f"{mean} ± {(s.high - s.low) / 2:.{d}f}"
    return f"{mean} [{s.low:.{d}f}, {s.high:.{d}f}]"


def _fmt_scalar(v: Any) -> str:
    if v is None:
        return _DASH
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt_scalar(x) for x in v) if v else _DASH
    if isinstance(v, Mapping):
        return ", ".join(f"{k} {_fmt_scalar(x)}" for k, x in v.items()) if v else _DASH
    return str(v)


def _fmt_model(spec: Any) -> str:
    """A recogniser / CLIP description: `name (version v, k v…)` from a dict or a string."""
    if spec is None:
        return _DASH
    if not isinstance(spec, Mapping):
        return str(spec)
    name = spec.get("name") or spec.get("model")
    rest = {k: v for k, v in spec.items() if k not in ("name", "model") and v is not None}
    if name is None:
        return _fmt_scalar(rest)
    return f"{name} ({_fmt_scalar(rest)})" if rest else str(name)


def _model_name(spec: Any) -> str | None:
    if isinstance(spec, Mapping):
        spec = spec.get("name") or spec.get("model")
    return str(spec) if spec is not None else None
