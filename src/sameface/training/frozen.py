"""The frozen base model during training, and its training noise schedule."""

from __future__ import annotations

import contextlib
from typing import Any


@contextlib.contextmanager
def frozen_base(base: Any, *, gradient_checkpointing: bool = False):
    """Freeze a `BaseModel` for training; give it back exactly as it was (flags, modes, checkpointing).

    Every change is registered for undoing as it is made, so a failure half-way leaves nothing behind.
    """
    with contextlib.ExitStack() as undo:
        for m in base.modules().values():
            flags = [p.requires_grad for p in m.parameters()]
            undo.callback(_restore_module, m, m.training, flags)
            m.requires_grad_(False)
            m.eval()
        unet = base.unet
        if gradient_checkpointing and not unet.is_gradient_checkpointing:
            undo.callback(unet.disable_gradient_checkpointing)
            unet.enable_gradient_checkpointing()
        yield


def _restore_module(module: Any, training: bool, flags: list[bool]) -> None:
    module.train(training)
    for p, f in zip(module.parameters(), flags, strict=True):
        p.requires_grad_(f)


def training_scheduler(base: Any) -> Any:
    """DDPM noise schedule of the base model (its own scheduler may be Euler / DDIM for sampling)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(base.scheduler.config)
