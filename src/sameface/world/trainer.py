"""The world build's training schedule over the shared `sameface.training.TrainingRun`.

Each build stage trains with AdamW, linear warm-up and cosine decay, gradient clipping and
optionally an EMA; the run checkpoints (weights, AdamW state, EMA, numpy and torch RNGs,
step) atomically every `checkpoint_every` steps, at the end and on Ctrl-C, so a rerun
continues exactly where it stopped. Non-finite losses skip the update; five in a row stop
the stage with a clear error.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

MAX_BAD_STEPS = 5


@dataclass
class LoopSettings:
    """Optimisation schedule of one stage: AdamW, linear warm-up, cosine decay to 10%."""

    steps: int
    lr: float
    warmup: int = 100
    weight_decay: float = 0.0
    ema: float | None = None  # EMA decay of the weights that are shipped; None = no EMA
    checkpoint_every: int = 250
    grad_clip: float = 1.0

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        frac = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def rng_for(config: Any, stage: str) -> np.random.Generator:
    """A per-stage RNG of a world build (stages are independent of which others ran in this process)."""
    return np.random.default_rng([config.seed, sum(map(ord, stage))])


def train_loop(
    name: str,
    work: str | os.PathLike,
    modules: dict[str, torch.nn.Module],
    loss_fn: Callable[[np.random.Generator, int], tuple[torch.Tensor, dict[str, float]]],
    settings: LoopSettings,
    *,
    seed: int,
    trainable: dict[str, float] | None = None,
    progress: bool = True,
) -> dict[str, torch.nn.Module]:
    """Train `modules` with `loss_fn(rng, step) -> (loss, logged values)`; resume if checkpointed.

    Args:
        name: the stage (checkpoint folder, progress bar, log file).
        work: the build's work folder.
        modules: every module whose weights are trained (and checkpointed).
        loss_fn: draws a batch from `rng` and returns the loss to minimise.
        settings: schedule.
        seed: seeds the batch RNG and torch's RNG on a fresh start.
        trainable: per-module learning-rate multiplier (default 1 for each).
        progress: show a progress bar.

    Returns:
        `modules`, trained; with EMA, a module named 'ema:<key>' holds the averaged weights
        of the first module.

    Raises:
        TrainingError: five non-finite losses in a row.
    """
    from ..training import Ema, Phase, TrainingRun

    mults = trainable or dict.fromkeys(modules, 1.0)
    groups = [
        {"params": [p for p in modules[k].parameters() if p.requires_grad], "mult": m}
        for k, m in mults.items()
    ]
    opt = torch.optim.AdamW(
        groups, lr=settings.lr, betas=(0.9, 0.99), weight_decay=settings.weight_decay
    )
    ema_key = next(iter(modules))
    ema = Ema(modules[ema_key], settings.ema) if settings.ema else None
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    work = Path(work)
    run = TrainingRun(
        name,
        work / "checkpoints" / name,
        rngs={"numpy": rng, "torch": "torch"},
        checkpoint_every=settings.checkpoint_every,
        save_final=True,  # a rerun of a finished stage skips straight to its result
        keep=1,
        max_nan_steps=MAX_BAD_STEPS,
        log_file=work / "logs" / f"{name}.jsonl",
        log_every=50,
        interrupt_error=False,  # the build's stages stop like the build itself: KeyboardInterrupt
        progress=progress,
    )

    def step_fn(step: int) -> dict:
        loss, logged = loss_fn(rng, step)
        return {"loss": loss} | logged

    run.add_phase(
        Phase(
            name,
            settings.steps,
            step_fn,
            optimizer=opt,
            modules={f"model.{k}": m for k, m in modules.items()},
            lr=settings.lr_at,
            grad_clip=settings.grad_clip,
            ema=ema,
        )
    )
    run.restore()
    for m in modules.values():
        m.train()
    run.train()
    for m in modules.values():
        m.eval()
    out = dict(modules)
    if ema is not None:
        import copy

        averaged = copy.deepcopy(modules[ema_key])
        ema.copy_to(averaged)
        out[f"ema:{ema_key}"] = averaged.eval()
    return out
