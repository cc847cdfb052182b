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
