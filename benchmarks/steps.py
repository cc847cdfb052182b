"""What the benchmarks share: per-step timing of a diffusers pipeline call (generation
benchmarks) and the bundled portraits prepared as training data (training benchmarks)."""

from __future__ import annotations

import itertools
import time


def step_times(
    pipe, steps: int, prompt: str = "portrait of a person, cinematic", **kwargs
) -> list[float]:
    """Seconds per denoising step for steps 2..1+steps of one pipeline call."""
    import torch

    marks: list[float] = []

    def hook(_pipe, _i, _t, callback_kwargs):
        marks.append(time.perf_counter())
        return callback_kwargs

    pipe(
        prompt=prompt,
        negative_prompt="lowres, blurry",
        num_inference_steps=1 + steps,
        guidance_scale=7.5,
        output_type="latent",  # the VAE decode is not part of the step
        generator=torch.Generator().manual_seed(0),
        callback_on_step_end=hook,
        **kwargs,
    )
    return [b - a for a, b in itertools.pairwise(marks)]


def prepare_portraits(out, resolution: int) -> None:
    """`examples/faces` prepared into `out` (`sameface data prepare`) at `resolution`."""
    from pathlib import Path

    from sameface.data.prepare import PrepareSettings, prepare_face_dataset
    from sameface.faces import FaceAnalyzer

    repo = Path(__file__).resolve().parents[1]
    settings = PrepareSettings(resolution=resolution)
    prepare_face_dataset(repo / "examples" / "faces", out, FaceAnalyzer(), settings, progress=False)


# ---- a reference and sameface, each in its own process (clean peak memory) ---------------


def run_side(args, sides) -> None:
    """In a side's own process: `args.threads` torch threads, `sides[args.side](args)`, and
    its result printed as one `RESULT {json}` line with the process's peak RSS."""
    import json
    import resource

    import torch

    torch.set_num_threads(args.threads)
    out = sides[args.side](args)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def compare_sides(script: str, args) -> dict:
    """Run `script --side reference` then `--side sameface` with `args`, each in a fresh
    process; their results and the ratios sameface / reference of step time and peak RSS."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    setting = {k: v for k, v in vars(args).items() if k not in ("side", "json")}
    argv = [f"--{k}={v}" for k, v in setting.items()]
    results = {}
    for side in ("reference", "sameface"):
        proc = subprocess.run(
            [sys.executable, script, "--side", side, *argv],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
            env=os.environ | {"OPENCV_LOG_LEVEL": "ERROR"},
        )
        lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if not lines:
            raise SystemExit(f"{side} run failed:\n{proc.stderr[-3000:]}")
        results[side] = json.loads(lines[-1][7:])
    ref, ours = results["reference"], results["sameface"]
    return {
        "setting": setting,
        "reference": ref,
        "sameface": ours,
        "time_ratio": ours["step_s"] / ref["step_s"],
        "memory_ratio": ours["peak_rss_mb"] / ref["peak_rss_mb"],
    }


def random_identity(batch: int, resolution: int, face_box: bool = False):
    """An `Identity` of `batch` random-pixel squares (training speed does not depend on the
    pixels): masks over the whole square, or over its centre half with `face_box`."""
    import numpy as np

    from sameface.identity import Identity

    rng = np.random.default_rng(0)
    squares = rng.integers(0, 256, (batch, resolution, resolution, 3), dtype=np.uint8)
    masks = np.full(squares.shape[:3], 0 if face_box else 255, np.uint8)
    if face_box:
        q = resolution // 4
        masks[:, q : 3 * q, q : 3 * q] = 255
    return Identity(
        aligned=np.zeros((batch, 112, 112, 3), np.uint8),
        squares=squares,
        masks=masks,
        embeddings=np.eye(batch, 128, dtype=np.float32),
        embedding=np.eye(1, 128, dtype=np.float32)[0],
        bboxes=np.zeros((batch, 4), np.float32),
        landmarks=np.zeros((batch, 5, 2), np.float32),
        meta={"recognizer": {"name": "sface"}},
    )
