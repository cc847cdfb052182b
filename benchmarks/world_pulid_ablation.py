"""PuLID's ablation in the proving-ground world (arXiv 2404.16022, §4.3; issue "papers' tables").

Trains the four rows of the paper's ablation in the world — diffusion loss only (stage 1);
+ a naive ID loss on the step's one-step x̂0 (`id_loss_branch: one-step`); + the accurate
ID loss on the few-step branch (stage 2); + the alignment loss (stage 3) — and a control
(stage 2 for as many ID-loss steps as stages 2 and 3 together) with
`sameface.methods.pulid.world.train_world_pulid_ablation` (resumable; the rows the plain
recipe trains are shared with `sameface world pulid`, the world's own adapter is left as it
is), then runs `benchmarks/suites/world-pulid-ablation.yaml` with `sameface bench --world`,
each row a variant of `pulid` with its adapter (resumable), and prints per row:

  * Δ face sim    — paired gain in the judge's face similarity (misses = 0) over `none`,
                    mean ± 95% interval, and how many identities rose;
  * context acc.  — the context classifier's accuracy on what each prompt asks, and its
                    paired change over `none`;
  * CLIP-I        — CLIP similarity to the base model's image for the same prompt and seed
                    (the paper's measure of how much the ID insertion disturbs the model).

    python benchmarks/world_pulid_ablation.py --out runs/pulid-ablation \
        [--suite benchmarks/suites/world-pulid-ablation.yaml] [--world DIR] [--work DIR]
        [--steps 1=2400 --steps 2=120 --steps 3=120] [--images N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "benchmarks" / "suites" / "world-pulid-ablation.yaml"


def summarise(run: Path, rows: list[str]) -> dict:
    """Per row: Δ face sim over `none` (and identities that rose), context accuracy and its
    change, CLIP-I."""
    from sameface.eval.runner import read_results
    from sameface.eval.stats import mean_ci95, paired_gain

    recs = [r for r in read_results(run) if r.get("type") == "image"]
    identities = sorted({r["identity"] for r in recs})
    out = {}
    for label in ["none", *rows]:
        mine = [r for r in recs if r["method"] == label]
        row = {
            "face_sim": mean_ci95(r["face_similarity_with_misses"] for r in mine)._asdict(),
            "context_accuracy": mean_ci95(r.get("context_accuracy") for r in mine)._asdict(),
            "clip_i": mean_ci95(r.get("clip_i") for r in mine)._asdict(),
        }
        if label != "none":
            gain = paired_gain(recs, label, "face_similarity_with_misses")
            row["gain_face_sim"] = gain._asdict()
            row["gain_context"] = paired_gain(recs, label, "context_accuracy")._asdict()
            row["identities_rose"] = sum(
                paired_gain(recs, label, "face_similarity_with_misses", identity=i).mean > 0
                for i in identities
            )
            row["identities"] = len(identities)
        out[label] = row
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="bench run folder")
    p.add_argument("--suite", type=Path, default=SUITE)
    p.add_argument("--world", help="world folder (default: $SAMEFACE_WORLD or the shipped one)")
    p.add_argument("--work", type=Path, help="training folder (default WORLD/.pulid)")
    p.add_argument("--steps", action="append", metavar="STAGE=N", help="steps of a stage")
    p.add_argument("--images", type=int, help="training portraits (default the recipe's)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args()
    # The bench runs from the repository root: every path the caller gave, made absolute.
    for name in ("out", "suite", "work"):
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name).resolve())
    if args.world:
        args.world = str(Path(args.world).resolve())

    from sameface.methods.pulid.world import DEFAULT_IMAGES, train_world_pulid_ablation

    stage_overrides = {}
    for item in args.steps or []:
        stage, _, n = item.partition("=")
        stage_overrides[int(stage)] = {"steps": int(n)}
    folders = train_world_pulid_ablation(
        args.world,
        args.work,
        n_images=args.images or DEFAULT_IMAGES,
        stage_overrides=stage_overrides,
        log=lambda s: print(s, file=sys.stderr),
    )
    sets = []
    for row, folder in folders.items():
        sets += ["--set", f"pulid@{row}.adapter={folder}"]
    world = ["--world", args.world] if args.world else ["--world"]
    cmd = [sys.executable, "-m", "sameface.cli", "bench", *world, "--suite", str(args.suite)]
    cmd += ["--out", str(args.out), *sets]
    if subprocess.run(cmd, cwd=REPO, env=os.environ | {"OPENCV_LOG_LEVEL": "ERROR"}).returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    summary = summarise(args.out, [f"pulid@{row}" for row in folders])
    (args.out / "ablation.json").write_text(json.dumps(summary, indent=1))
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(
        f"{'row':28} {'Δ face sim':>18} {'rose':>6} {'context':>8} {'Δ context':>18} {'CLIP-I':>7}"
    )
    for label, row in summary.items():
        if label == "none":
            continue
        g, c = row["gain_face_sim"], row["gain_context"]
        print(
            f"{label:28} {g['mean']:+.3f} ± {(g['high'] - g['low']) / 2:.3f}"
            f" {row['identities_rose']:>3}/{row['identities']:<2} {row['context_accuracy']['mean']:8.3f}"
            f" {c['mean']:+.3f} ± {(c['high'] - c['low']) / 2:.3f} {row['clip_i']['mean']:7.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
