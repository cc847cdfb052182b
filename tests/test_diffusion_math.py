"""Pure diffusion conversions (x₀ / ε / v) and guidance combines on hand-made tensors."""

from __future__ import annotations

import torch

from sameface.losses.diffusion import (
    cfg_combine,
    cfg_combine_two,
    diffusion_target,
    eps_from_v,
    eps_from_x0,
    v_from_eps,
    x0_from_eps,
    x0_from_v,
)


def _ddpm():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, prediction_type="v_prediction")


def test_round_trips_on_a_ddpm_schedule():
    sched = _ddpm()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, 8, 8, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 4, 8, 8, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 500, 999])
    abar = sched.alphas_cumprod[t].double()
    x_t = abar.sqrt().view(-1, 1, 1, 1) * x0 + (1 - abar).sqrt().view(-1, 1, 1, 1) * eps
    torch.testing.assert_close(x0_from_eps(x_t, eps, abar), x0)
    torch.testing.assert_close(eps_from_x0(x_t, x0, abar), eps)
    v = v_from_eps(x_t, eps, abar)
    # v agrees with what the v-prediction models are trained on.
    torch.testing.assert_close(v, diffusion_target(sched, x0, eps, t).double())
    torch.testing.assert_close(x0_from_v(x_t, v, abar), x0)
    torch.testing.assert_close(eps_from_v(x_t, v, abar), eps)


def test_scalar_alpha_bar_by_hand():
    x_t, eps = torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0])
    # ᾱ = 0.64: √ᾱ = 0.8, √(1−ᾱ) = 0.6; x₀ = (x_t − 0.6ε) / 0.8.
    torch.testing.assert_close(x0_from_eps(x_t, eps, 0.64), torch.tensor([0.875, 3.25]))
    torch.testing.assert_close(
        v_from_eps(x_t, eps, 0.64), 0.8 * eps - 0.6 * torch.tensor([0.875, 3.25])
    )


def test_guidance_combines():
    u, c, f = torch.tensor([1.0]), torch.tensor([3.0]), torch.tensor([4.0])
    assert cfg_combine(u, c, 7.5).item() == 1.0 + 7.5 * 2.0
    assert cfg_combine(u, c, 1.0).item() == 3.0 and cfg_combine(u, c, 0.0).item() == 1.0
    assert cfg_combine_two(u, c, f, 2.0, 3.0).item() == 1.0 + 2.0 * 2.0 + 3.0 * 1.0
    torch.testing.assert_close(cfg_combine_two(u, c, f, 5.0, 5.0), cfg_combine(u, f, 5.0))
