"""Diffusion training targets and the simple denoising loss."""

from __future__ import annotations

from typing import Any


def sample_timesteps(scheduler: Any, batch: int, generator: Any, device: Any = "cpu") -> Any:
    """Uniform integer timesteps in [0, T) (the `t ~ U{1..T}` of Ho et al. 2020, Alg. 1)."""
    import torch

    n = int(scheduler.config.num_train_timesteps)
    return torch.randint(0, n, (batch,), generator=generator, device="cpu").to(device)


def diffusion_target(scheduler: Any, latents: Any, noise: Any, timesteps: Any) -> Any:
    """What the UNet should predict for `latents` noised with `noise` at `timesteps`.

    ε for ε-prediction models (SD1.x, SD2-base, SDXL), v = √ᾱ·ε − √(1−ᾱ)·x₀ for
    v-prediction models (SD2.1-768; Salimans & Ho 2022, eq. 9), x₀ for sample prediction.
    """
    kind = scheduler.config.get("prediction_type", "epsilon")
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    if kind == "sample":
        return latents
    raise ValueError(f"unsupported prediction_type {kind!r}")


def l_simple(pred: Any, target: Any, mask: Any = None) -> Any:
    """L_simple = E‖ε − ε_θ(√ᾱ_t x₀ + √(1−ᾱ_t) ε, c, t)‖² (seed 001 eq. 3; Ho et al. 2020 eq. 14).

    Computed in float32. With `mask` (B×1×h×w in [0, 1], broadcast over channels) the squared
    error is averaged with those weights, so masked-out pixels do not count.
    """
    err = (pred.float() - target.float()) ** 2
    if mask is None:
        return err.mean()
    w = mask.float().expand_as(err)
    return (err * w).sum() / w.sum().clamp_min(1e-8)
