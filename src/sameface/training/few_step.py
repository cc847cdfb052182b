"""A differentiable few-step text-to-image branch (PuLID's "Lightning T2I" branch, seed 004).

PuLID computes its ID loss on an image generated from pure noise in a few steps by a
distilled base (SDXL-Lightning), instead of on a one-step x̂₀ estimate, which is too noisy
for a face recogniser. Here the sampler is a diffusers scheduler chosen to match the base:
"lcm" (LCM / LCM-LoRA bases), "euler" with trailing timesteps (Lightning / Turbo bases), or
"ddim" (any base; blurrier in 4 steps, fine for tests). Every UNet call and the VAE decode
are gradient-checkpointed, so memory stays that of one step.

`one_step_image` is the other branch: Tweedie's x̂₀ from the training step's own prediction,
decoded (MagiCapture's ID loss; PuLID's "naive" ID loss of its ablation).
"""

from __future__ import annotations

import contextlib
from typing import Any

SAMPLERS = ("lcm", "euler", "ddim")


def few_step_scheduler(base: Any, sampler: str, steps: int) -> Any:
    """A scheduler for `steps` steps from the base model's noise schedule."""
    import diffusers

    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    cls = {
        "lcm": diffusers.LCMScheduler,
        "euler": diffusers.EulerDiscreteScheduler,
        "ddim": diffusers.DDIMScheduler,
    }[sampler]
    sched = cls.from_config(base.scheduler.config, timestep_spacing="trailing")
    sched.set_timesteps(steps, device=base.device)
    return sched


def generate_x0(
    base: Any,
    hidden: Any,
    *,
    added_cond_kwargs: dict | None = None,
    cross_attention_kwargs: dict | None = None,
    sampler: str = "ddim",
    steps: int = 4,
    size: int | None = None,
    generator: Any = None,
    checkpoint: bool = True,
) -> Any:
    """Images (B, 3, H, W) in [-1, 1] generated from pure noise, differentiable w.r.t. the conditioning.

    Args:
        base: the `BaseModel`.
        hidden: text conditioning (B, 77, D) from `encode_prompts`.
        added_cond_kwargs: SDXL's pooled text and time ids.
        cross_attention_kwargs: e.g. the ID tokens of an adapter (gradients reach them).
        sampler: "lcm", "euler" (trailing) or "ddim".
        steps: sampling steps (PuLID: 4).
        size: image side in pixels; default the base model's.
        generator: CPU `torch.Generator` for the starting noise.
        checkpoint: gradient-checkpoint each UNet call and the decode.
    """
    import torch
    from torch.utils.checkpoint import checkpoint as ckpt

    sched = few_step_scheduler(base, sampler, steps)
    size = size or base.resolution
    f = base.vae_scale_factor
    shape = (hidden.shape[0], base.unet.config.in_channels, size // f, size // f)
    dtype = next(base.unet.parameters()).dtype
    latents = (
        torch.randn(shape, generator=generator).to(base.device, dtype) * sched.init_noise_sigma
    )

    def unet_call(x, t):
        return base.unet(
            x,
            t,
            hidden,
            added_cond_kwargs=added_cond_kwargs,
            cross_attention_kwargs=cross_attention_kwargs,
        ).sample

    for t in sched.timesteps:
        x_in = sched.scale_model_input(latents, t)
        pred = ckpt(unet_call, x_in, t, use_reentrant=False) if checkpoint else unet_call(x_in, t)
        latents = sched.step(pred, t, latents, generator=generator).prev_sample
    vae = base.vae
    z = latents / vae.config.scaling_factor

    def decode(z):
        return vae.decode(z.to(next(vae.parameters()).dtype)).sample

    image = ckpt(decode, z, use_reentrant=False) if checkpoint else decode(z)
    return image.float().clamp(-1, 1)


def one_step_image(base: Any, scheduler: Any, x_t: Any, pred: Any, t: Any) -> Any:
    """Images (B, 3, H, W) in [-1, 1] from Tweedie's one-step estimate x̂₀ = E[x₀ | x_t]
    (x̂₀ = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t, or √ᾱ_t·x_t − √(1−ᾱ_t)·v̂ for v-prediction), decoded
    by the VAE; differentiable w.r.t. `pred`.

    Args:
        base: the `BaseModel` (its VAE and prediction type).
        scheduler: the training scheduler (its `alphas_cumprod`).
        x_t: the noisy latents the UNet saw.
        pred: the UNet's output for them.
        t: their timesteps (B,).
    """
    import torch

    from ..losses.diffusion import x0_from_eps, x0_from_v

    pred = pred.float()
    abar = scheduler.alphas_cumprod[t.cpu()].to(pred.device)
    x_t = x_t.to(pred.device, pred.dtype)
    x0 = (
        x0_from_v(x_t, pred, abar)
        if base.prediction_type == "v_prediction"
        else x0_from_eps(x_t, pred, abar)
    )
    vae = base.vae
    dtype = next(vae.parameters()).dtype
    if dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
        dtype = torch.float32  # SDXL's VAE overflows in float16 (diffusers upcasts too)
    with vae_in(vae, dtype):
        images = vae.decode((x0 / vae.config.scaling_factor).to(dtype)).sample
    return images.float().clamp(-1, 1)


@contextlib.contextmanager
def vae_in(vae: Any, dtype: Any):
    """The VAE in `dtype` for a decode (given back in its own dtype)."""
    own = next(vae.parameters()).dtype
    if own != dtype:
        vae.to(dtype)
    try:
        yield
    finally:
        if own != dtype:
            vae.to(own)
