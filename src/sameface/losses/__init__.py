"""Loss functions: pure functions of tensors (no modules, no state)."""

from .diffusion import diffusion_target, l_simple, sample_timesteps

__all__ = ["diffusion_target", "l_simple", "sample_timesteps"]
