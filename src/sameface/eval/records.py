"""The records of a run folder: `results.jsonl` (or one part per process while sharded), read,
keyed and merged."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import read_jsonl

RESULTS = "results.jsonl"


def json_default(x: Any) -> Any:
    """JSON for numpy numbers (and anything else as its text)."""
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)


def read_results(out: Path) -> list[dict]:
    """Every record in `results.jsonl` and any shard parts; damaged lines are skipped."""
    return [
        r for p in [out / RESULTS, *sorted(out.glob("results.part*.jsonl"))] for r in read_jsonl(p)
    ]


def record_key(rec: dict) -> tuple:
    """What makes a record unique."""
    kind = rec.get("type")
    if kind == "image":
        key = (rec["method"], rec["identity"], rec["prompt_index"], rec["seed"])
        return (*key, rec.get("training_seed"))
    if kind == "personalize":
        return ("personalize", rec["method"], rec["identity"], rec.get("training_seed"))
    return (kind, rec.get("identity"))


def done_keys(out: Path) -> set:
    """The keys of every record already written."""
    return {record_key(r) for r in read_results(out)}


def merge_results(out: Path) -> Path:
    """Fold shard parts into `results.jsonl` (first record of each key wins) and remove them."""
    seen, merged = set(), []
    for rec in read_results(out):
        key = record_key(rec)
        if key not in seen:
            seen.add(key)
            merged.append(rec)
    tmp = out / f".{RESULTS}.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in merged))
    os.replace(tmp, out / RESULTS)
    for p in out.glob("results.part*.jsonl"):
        p.unlink()
    return out / RESULTS


__all__ = ["RESULTS", "done_keys", "json_default", "merge_results", "read_results", "record_key"]
