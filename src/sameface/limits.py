"""Bounds on what one generation request may ask for, checked before anything is allocated.

A request's memory grows with images x height x width; these ceilings keep one request
within what the model family was made for and what one machine can hold.
"""

from __future__ import annotations

import math
from typing import Any

# Largest side each family is used at (SDXL's native 1024 doubled; SD1/SD2 at 2x native).
MAX_SIDE = {"sd1": 1024, "sd2": 1536, "sdxl": 2048}
MAX_IMAGES = 64  # images in one call: prompts x num_images_per_prompt
MAX_STEPS = 1000  # the schedulers' training timesteps
MAX_GUIDANCE = 100.0
MAX_ID_SCALE = 10.0
MAX_PROMPTS = 64
MAX_PROMPT_CHARS = 2000  # far above CLIP's 77 tokens; the rest would be cut anyway


def check_generate_args(
    base: Any,
    *,
    prompts: list[Any],
    num_inference_steps: Any,
    num_images_per_prompt: Any,
    guidance_scale: Any,
    height: Any,
    width: Any,
    negative_prompt: Any = None,
) -> None:
    """Refuse a generation request the model cannot serve, before spending memory on it.

    Args:
        base: the `BaseModel` (its family and VAE factor bound the image size).
        prompts: the prompts (strings of bounded length, at most `MAX_PROMPTS`).
        num_inference_steps: 1..`MAX_STEPS`.
        num_images_per_prompt: at least 1; prompts x images at most `MAX_IMAGES`.
        guidance_scale: None or a finite number in 0..`MAX_GUIDANCE`.
        height, width: None or multiples of the VAE factor (and 8) up to the family's `MAX_SIDE`.
        negative_prompt: None, a string, or a list of strings of bounded length.

    Raises:
        ValueError: with a one-line message naming the argument and its allowed range.
    """
    if not prompts or len(prompts) > MAX_PROMPTS:
        raise ValueError(f"give 1..{MAX_PROMPTS} prompts, got {len(prompts)}")
    negatives = [negative_prompt] if isinstance(negative_prompt, str) else negative_prompt or []
    for p in [*prompts, *negatives]:
        if not isinstance(p, str):
            raise ValueError(f"prompts must be text, got {type(p).__name__}")
        if len(p) > MAX_PROMPT_CHARS:
            raise ValueError(f"a prompt is {len(p)} characters; at most {MAX_PROMPT_CHARS}")
    _int_in("num_inference_steps", num_inference_steps, 1, MAX_STEPS)
    _int_in("num_images_per_prompt", num_images_per_prompt, 1, MAX_IMAGES)
    if len(prompts) * num_images_per_prompt > MAX_IMAGES:
        raise ValueError(
            f"{len(prompts)} prompts x {num_images_per_prompt} images is more than {MAX_IMAGES} "
            "images in one call; split the request"
        )
    if guidance_scale is not None:
        check_scale("guidance_scale", guidance_scale, MAX_GUIDANCE)
    factor = math.lcm(8, int(getattr(base, "vae_scale_factor", 8)))
    top = MAX_SIDE.get(getattr(base, "family", ""), 1024)
    for name, side in (("height", height), ("width", width)):
        if side is None:
            continue
        _int_in(name, side, factor, top)
        if side % factor:
            raise ValueError(f"{name} must be a multiple of {factor}, got {side}")


def check_scale(name: str, value: Any, top: float) -> float:
    """`value` as a float if it is a finite number in 0..top, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or not 0 <= value <= top:
        raise ValueError(f"{name} must be a finite number in 0..{top:g}, got {value}")
    return float(value)


def _int_in(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high} for this model, got {value}")
