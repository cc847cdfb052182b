"""FeedFace (seed 002) training cost: step time and peak memory beside PuLID's stage 1.

Real SD1.5 config with random weights (the cost does not depend on them), batch 1, at
`--resolution` (default 256), on the prepared bundled portraits, in one run:

  * FeedFace — CLIP ViT-B/32 real config (frozen, one face view per sample), the face
    projection and the 16 control blocks trained with the regularisation mask loss (one
    extra frozen UNet pass per step for ε_θ̂, seed §2.2);
  * PuLID stage 1 — `benchmarks/pulid_train.py`'s stage 1 (IDFormer + ID adapter, L_diff,
    CLIP ViT-L/14-336).

Each runs in its own process (clean peak memory); the step time is the difference between a
run of 1 + N steps and a run of 1 step, divided by N (so building the models and loading
the data are not counted). Reports both and the ratio FeedFace / PuLID stage 1.

    python benchmarks/feedface_train.py [--resolution 256] [--steps 2] [--dtype float32|bfloat16]
                                        [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from steps import prepare_portraits  # noqa: E402

HERE = Path(__file__).resolve().parent


def child(args) -> dict:
    import torch

    from sameface.methods.feedface import FeedFaceConfig
    from sameface.methods.feedface.train import train
    from sameface.models import real_config_base_model
    from sameface.models.clip_vision import random_clip_vision

    torch.set_num_threads(args.threads)
    dtype = None if args.dtype == "float32" else getattr(torch, args.dtype)
    base = real_config_base_model("sd1", dtype=dtype)
    vision = random_clip_vision("openai/clip-vit-base-patch32", dtype)
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "data"
        prepare_portraits(data, args.resolution)

        def timed(steps: int, name: str) -> float:
            cfg = FeedFaceConfig(
                steps=steps,
                batch_size=1,
                resolution=args.resolution,
                checkpoint_every=0,
                log_every=1000,
            )
            t0 = time.perf_counter()
            train(data, base, cfg, Path(d) / name, vision=vision, progress=False)
            return time.perf_counter() - t0

        timed(1, "warm")
        short, long = timed(1, "short"), timed(1 + args.steps, "long")
    return {
        "method": "feedface",
        "step_s": (long - short) / args.steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _result(cmd: list[str], what: str) -> dict:
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=os.environ | {"OPENCV_LOG_LEVEL": "ERROR"},
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"{what} failed:\n{proc.stderr[-3000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--steps", type=int, default=2, help="timed steps")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args)))
        return 0
    common = ["--resolution", str(args.resolution), "--steps", str(args.steps),
              "--dtype", args.dtype, "--threads", str(args.threads)]  # fmt: skip
    feedface = _result([sys.executable, __file__, "--child", *common], "FeedFace")
    pulid = _result(
        [sys.executable, str(HERE / "pulid_train.py"), "--stage", "1", *common], "PuLID stage 1"
    )
    out = {
        "setting": {k: v for k, v in vars(args).items() if k not in ("json", "child")},
        "feedface": feedface,
        "pulid_stage1": pulid,
        "step_ratio": feedface["step_s"] / pulid["step_s"],
        "memory_ratio": feedface["peak_rss_mb"] / pulid["peak_rss_mb"],
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"Training step: SD1.5 real config (random weights), batch 1, {args.resolution} px, "
        f"{args.dtype}, {args.threads} threads"
    )
    for name, r in (("FeedFace (ViT-B/32)", feedface), ("PuLID stage 1 (ViT-L/14-336)", pulid)):
        print(f"  {name:30s}: {r['step_s']:7.2f} s / step   peak RSS {r['peak_rss_mb']:7.0f} MB")
    print(
        f"  FeedFace / PuLID stage 1: {out['step_ratio']:.2f}x time, {out['memory_ratio']:.2f}x memory"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
