"""DreamIdentity's self-augmented data generation (`sameface data self-augment`): throughput
with 1 and with 2 processes under `accelerate launch`, on the same cores.

Runs in the shipped proving-ground world (its base model draws, its recogniser and CLIP
score: what `sameface world dreamidentity` does), for the first `--names` known people with
`--per-name` edit prompts each (1 + per-name images a name). Each side starts a fresh
output folder; the time is measured inside the run, from the first name to the summary
written by the main process (model loading excluded). 1 process gets `--threads` torch
threads, 2 processes get `--threads // 2` each: the same cores.

    python benchmarks/dreamidentity_augment.py [--names 8] [--per-name 8] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(args) -> None:
    import torch

    from sameface.methods.dreamidentity.augment import self_augment
    from sameface.methods.dreamidentity.world import (
        AUGMENT_STEPS,
        FACE_TEMPLATE,
        world_edit_templates,
    )
    from sameface.training.distributed import distributed_context
    from sameface.world.world import World

    torch.set_num_threads(args.threads)
    ctx = distributed_context()
    world = World.load()
    names = world.people[0].names[: args.names]
    analyzer, clip = world.analyzer(), world.clip
    ctx.wait()
    t0 = time.perf_counter()
    self_augment(
        world.base, names, args.out, analyzer=analyzer, clip=clip, templates=world_edit_templates(),
        face_template=FACE_TEMPLATE, per_name=args.per_name, num_inference_steps=AUGMENT_STEPS,
        progress=False, context=ctx,
    )  # fmt: skip
    if ctx.is_main:
        Path(args.out, "seconds.txt").write_text(str(time.perf_counter() - t0))


def side(processes: int, args, tmp: Path) -> float:
    out = tmp / f"p{processes}"
    threads = max(1, args.threads // processes)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    if processes > 1:
        launch.insert(3, "--multi_gpu")
    cmd = [*launch, __file__, "--worker", "--out", str(out), "--names", str(args.names),
           "--per-name", str(args.per_name), "--threads", str(threads)]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    return float((out / "seconds.txt").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", type=int, default=8)
    ap.add_argument("--per-name", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0
    images = args.names * (1 + args.per_name)
    with tempfile.TemporaryDirectory() as tmp:
        seconds = {p: side(p, args, Path(tmp)) for p in (1, 2)}
    out = {
        "setting": {k: v for k, v in vars(args).items() if k not in ("json", "worker", "out")},
        "images": images,
        "seconds": seconds,
        "images_per_s": {p: images / s for p, s in seconds.items()},
        "speedup_2_over_1": seconds[1] / seconds[2],
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"self-augment in the world: {args.names} names x {1 + args.per_name} images, {args.threads} cores"
    )
    for p, s in seconds.items():
        print(f"  {p} process(es): {s:6.1f} s, {images / s:.2f} images/s")
    print(f"  speed-up 2 / 1 processes: {out['speedup_2_over_1']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
