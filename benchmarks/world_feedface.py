"""FeedFace in the proving-ground world: the paper's loss ablation and 1 vs 4 references.

For each loss of the ablation (seed 002, B.1) — `regularization` (the paper's, the shipped
`WORLD/feedface`), `mask` and `standard` — the adapter is trained like the shipped one with
only `loss` changed (`sameface world feedface --set loss=... --no-publish`, resumable, same
data and steps), then run through a world suite with `sameface bench --world` (resumable).
Each run reports, against the no-identity baseline `none` (same identity, prompt, seed):

  * Δ face sim   — paired gain in the judge's face similarity (misses = 0), mean ± 95%
                   interval, and how many identities rose;
  * context acc. — the context classifier's accuracy on what each prompt asks, and its
                   paired change;
  * background   — mean |image − base image| outside the faces (`sameface.eval.background`):
                   how much the image changes where the person is not (the paper's claim is
                   that the regularisation loss keeps the base model's background).

    python benchmarks/world_feedface.py --out runs/feedface-ablation \
        [--suite benchmarks/suites/world-1ref-quick.yaml] [--losses regularization mask standard]
        [--steps 1500] [--world DIR] [--work DIR] [--json]

1 vs 4 references: run it with `--suite benchmarks/suites/world-4ref-quick.yaml --losses
regularization` beside the 1-reference run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOSSES = ("regularization", "mask", "standard")


def _sameface(*args: str) -> None:
    cmd = [sys.executable, "-m", "sameface.cli", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=os.environ | {"OPENCV_LOG_LEVEL": "ERROR"})
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")


def adapter_for(loss: str, world: Path, work: Path, steps: int | None) -> Path:
    """The shipped adapter for the paper's loss at the preset's steps; every other adapter
    trained on demand (resumable; a finished one is not trained again)."""
    if loss == "regularization" and steps is None:
        return world / "feedface"
    more = ["--steps", str(steps)] if steps else []
    _sameface("world", "feedface", "--world", str(world), "--work", str(work),
              "--set", f"loss={loss}", *more, "--no-publish", "--quiet")  # fmt: skip
    return work / ("train" if loss == "regularization" else f"train-{loss}")


def summarise(run: Path, world) -> dict:
    """Gains over `none`, context accuracy and background change of `feedface` in a run."""
    from sameface.eval.background import background_changes
    from sameface.eval.runner import read_results
    from sameface.eval.stats import mean_ci95, paired_gain

    rows = read_results(run)
    images = [r for r in rows if r.get("type") == "image"]
    ids = sorted({r["identity"] for r in images})
    key = "face_similarity_with_misses"
    per_id = [paired_gain(rows, "feedface", key, identity=i).mean for i in ids]
    ctx = {m: mean_ci95(r.get("context_accuracy") for r in images if r["method"] == m)
           for m in ("none", "feedface")}  # fmt: skip
    bg = background_changes(run, world.detector, ["feedface"])["feedface"]
    return {
        "images": sum(r["method"] == "feedface" for r in images),
        "face_sim": _d(mean_ci95(r.get(key) for r in images if r["method"] == "feedface")),
        "gain": _d(paired_gain(rows, "feedface", key)),
        "identities_rising": f"{sum(g is not None and g > 0 for g in per_id)} of {len(ids)}",
        "context_none": _d(ctx["none"]),
        "context": _d(ctx["feedface"]),
        "context_gain": _d(paired_gain(rows, "feedface", "context_accuracy")),
        "background_change": _d(mean_ci95(bg)),
    }


def _d(summary) -> dict:
    return summary._asdict() | {"half_width": summary.half_width}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder of the runs (one per loss)")
    ap.add_argument("--suite", default=str(REPO / "benchmarks/suites/world-1ref-quick.yaml"))
    ap.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    ap.add_argument("--world", help="world folder (default: the shipped world)")
    ap.add_argument(
        "--work",
        help="where the ablation adapters train (default WORLD/.feedface, WORLD/.feedface-N "
        "with --steps N)",
    )  # fmt: skip
    ap.add_argument(
        "--steps", type=int,
        help="train all three adapters for N steps (default: the preset's; the paper's loss "
        "is then the shipped adapter). docs/feedface.md's ablation: --steps 1500",
    )  # fmt: skip
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from sameface.world.world import World

    world = World.load(args.world)
    # Another step count trains in its own folder: the paper's-loss run would else be the
    # preset's, left there by `sameface world feedface`.
    default = ".feedface" if args.steps is None else f".feedface-{args.steps}"
    work = Path(args.work) if args.work else world.folder / default
    results = {}
    for loss in args.losses:
        adapter = adapter_for(loss, world.folder, work, args.steps)
        run = Path(args.out) / loss
        _sameface("bench", "--world", str(world.folder), "--suite", args.suite,
                  "--methods", "feedface", "--set", f"feedface.adapter={adapter}",
                  "--out", str(run))  # fmt: skip
        results[loss] = summarise(run, world)
    if args.json:
        print(json.dumps({"suite": args.suite, "losses": results}, indent=1))
        return 0
    print(f"FeedFace in the world, {Path(args.suite).name} (± = 95% interval; Δ vs none, paired)")
    print(
        "loss            face sim         Δ face sim        rising   context  Δ context        background"
    )
    for loss, r in results.items():
        f, g, c, cg, b = (
            r[k] for k in ("face_sim", "gain", "context", "context_gain", "background_change")
        )
        print(
            f"{loss:15s} {f['mean']:+.3f} ± {f['half_width']:.3f}  {g['mean']:+.3f} ± {g['half_width']:.3f}"
            f"  {r['identities_rising']:>8}  {c['mean']:.3f}   {cg['mean']:+.3f} ± {cg['half_width']:.3f}"
            f"  {b['mean']:.4f} ± {b['half_width']:.4f}"
        )
    none = next(iter(results.values()))["context_none"]
    print(f"none (base model): context {none['mean']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
