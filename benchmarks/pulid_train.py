"""PuLID (seed 004) training cost per stage: step time and peak memory, on real architectures.

Real SD1.5 config and a real-config CLIP ViT-L/14-336 vision tower (random weights: the
cost does not depend on them), the default IDFormer (32 tokens), batch 1, at `--resolution`
(default 256), on the prepared bundled portraits. Each stage runs in its own process (clean
peak memory); its step time is the difference between a run of 1 + N steps and a run of 1
step, divided by N (so model building and data loading are not counted):

  stage 1: L_diff
  stage 2: + λ_id L_id (4-step DDIM branch from pure noise, decoded, checkpointed)
  stage 3: + L_align (a second UNet pass without the ID, recording Q and K)

    python benchmarks/pulid_train.py [--resolution 256] [--steps 2] [--dtype float32|bfloat16] [--threads 2] [--json]
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


def child(args) -> dict:
    import torch

    from sameface.methods.pulid import PuLIDConfig
    from sameface.methods.pulid.train import train
    from sameface.models import real_config_base_model
    from sameface.models.clip_vision import random_clip_vision_l336

    torch.set_num_threads(args.threads)
    dtype = None if args.dtype == "float32" else getattr(torch, args.dtype)
    base = real_config_base_model("sd1", dtype=dtype)
    vision = random_clip_vision_l336(dtype)
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "data"
        prepare_portraits(data, args.resolution)

        def timed(steps: int, name: str) -> float:
            cfg = PuLIDConfig(
                stage=args.stage,
                steps=steps,
                batch_size=1,
                resolution=args.resolution,
                checkpoint_every=0,
                log_every=1000,
                lightning_steps=4,
                fast_sampler="ddim",
            )
            t0 = time.perf_counter()
            train(data, base, cfg, Path(d) / name, vision=vision, progress=False)
            return time.perf_counter() - t0

        timed(1, "warm")
        short, long = timed(1, "short"), timed(1 + args.steps, "long")
    return {
        "stage": args.stage,
        "step_s": (long - short) / args.steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per stage")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stage", type=int, help=argparse.SUPPRESS)  # set in the child processes
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.stage:
        print("RESULT " + json.dumps(child(args)))
        return 0
    rows = []
    for stage in (1, 2, 3):
        cmd = [
            sys.executable,
            __file__,
            "--stage",
            str(stage),
            "--resolution",
            str(args.resolution),
            "--steps",
            str(args.steps),
            "--dtype",
            args.dtype,
            "--threads",
            str(args.threads),
        ]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            cwd=REPO,
            env=os.environ | {"OPENCV_LOG_LEVEL": "ERROR"},
        )
        result = next(
            (
                json.loads(line[7:])
                for line in proc.stdout.splitlines()
                if line.startswith("RESULT ")
            ),
            None,
        )
        if result is None:
            raise SystemExit(f"stage {stage} failed:\n{proc.stderr[-3000:]}")
        rows.append(result)
    if args.json:
        print(json.dumps({"setting": vars(args), "stages": rows}, indent=2))
        return 0
    print(
        f"PuLID training step: SD1.5 + CLIP ViT-L/14-336 real configs, IDFormer 32 tokens, batch 1, {args.resolution} px, {args.dtype}, {args.threads} threads"
    )
    for r in rows:
        print(
            f"  stage {r['stage']}: {r['step_s']:7.2f} s / step   peak RSS {r['peak_rss_mb']:7.0f} MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
