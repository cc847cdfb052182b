"""Exponential moving average of a module's weights (what the world build ships)."""

from __future__ import annotations

import torch


class Ema:
    """Exponential moving average of `module`'s floating-point state.

    Args:
        module: the module being trained.
        decay: the EMA decay (e.g. 0.999); the first steps use less (a short warm-up, as in
            diffusers' `EMAModel`).
    """

    def __init__(self, module: torch.nn.Module, decay: float):
        self.module, self.decay = module, decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in self.module.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, module: torch.nn.Module) -> None:
        """Load the averaged weights into `module` (a copy of the trained one)."""
        module.load_state_dict(self.shadow)
