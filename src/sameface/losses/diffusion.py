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


# ---- prediction conversions and guidance (pure; x_t = √ᾱ·x₀ + √(1−ᾱ)·ε) --------------------
# `alpha_bar` is ᾱ_t per sample, shape (B,) (or a float); it broadcasts over the other dims.
# v = √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans & Ho 2022, eq. 9), as `diffusion_target` trains it.


def _abar(alpha_bar: Any, like: Any) -> tuple[Any, Any]:
    import torch

    a = torch.as_tensor(alpha_bar, dtype=like.dtype, device=like.device)
    a = a.reshape(-1, *([1] * (like.ndim - 1))) if a.ndim else a
    return a.sqrt(), (1 - a).sqrt()


def x0_from_eps(x_t: Any, eps: Any, alpha_bar: Any) -> Any:
    """x₀ = (x_t − √(1−ᾱ)·ε) / √ᾱ."""
    sa, s1 = _abar(alpha_bar, x_t)
    return (x_t - s1 * eps) / sa


def eps_from_x0(x_t: Any, x0: Any, alpha_bar: Any) -> Any:
    """ε = (x_t − √ᾱ·x₀) / √(1−ᾱ)."""
    sa, s1 = _abar(alpha_bar, x_t)
    return (x_t - sa * x0) / s1


def v_from_eps(x_t: Any, eps: Any, alpha_bar: Any) -> Any:
    """v = √ᾱ·ε − √(1−ᾱ)·x₀ with x₀ from (x_t, ε); equals (ε − √(1−ᾱ)·x_t) / √ᾱ."""
    sa, s1 = _abar(alpha_bar, x_t)
    return sa * eps - s1 * x0_from_eps(x_t, eps, alpha_bar)


def x0_from_v(x_t: Any, v: Any, alpha_bar: Any) -> Any:
    """x₀ = √ᾱ·x_t − √(1−ᾱ)·v."""
    sa, s1 = _abar(alpha_bar, x_t)
    return sa * x_t - s1 * v


def eps_from_v(x_t: Any, v: Any, alpha_bar: Any) -> Any:
    """ε = √(1−ᾱ)·x_t + √ᾱ·v."""
    sa, s1 = _abar(alpha_bar, x_t)
    return s1 * x_t + sa * v


def cfg_combine(uncond: Any, cond: Any, scale: float) -> Any:
    """Classifier-free guidance: uncond + s·(cond − uncond) (Ho & Salimans 2022)."""
    return uncond + scale * (cond - uncond)


def cfg_combine_two(uncond: Any, text: Any, full: Any, text_scale: float, full_scale: float) -> Any:
    """Two-scale guidance: uncond + s_t·(text − uncond) + s_f·(full − text).

    `text` is the prediction with the prompt only, `full` with prompt and identity
    (FeedFace's split guidance); s_f = s_t gives `cfg_combine(uncond, full, s_t)`.
    """
    return uncond + text_scale * (text - uncond) + full_scale * (full - text)
