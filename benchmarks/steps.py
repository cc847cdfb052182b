"""Per-step timing of a diffusers pipeline call, shared by the generation benchmarks."""

from __future__ import annotations

import itertools
import time


def step_times(pipe, steps: int, **kwargs) -> list[float]:
    """Seconds per denoising step for steps 2..1+steps of one pipeline call."""
    import torch

    marks: list[float] = []

    def hook(_pipe, _i, _t, callback_kwargs):
        marks.append(time.perf_counter())
        return callback_kwargs

    pipe(
        prompt="portrait of a person, cinematic",
        negative_prompt="lowres, blurry",
        num_inference_steps=1 + steps,
        guidance_scale=7.5,
        output_type="latent",  # the VAE decode is not part of the step
        generator=torch.Generator().manual_seed(0),
        callback_on_step_end=hook,
        **kwargs,
    )
    return [b - a for a, b in itertools.pairwise(marks)]
