"""One resumable training loop shared by every model the world build trains.

Checkpoints (weights, AdamW state, EMA, both RNGs, step) are written atomically every
`checkpoint_every` steps and on Ctrl-C, so a rerun continues exactly where it stopped.
Non-finite losses skip the update; five in a row stop the stage with a clear error.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import TrainingError
from ..fileio import append_jsonl
from ..training.checkpoint import CheckpointManager
from ..training.state import optimizer_state_dict_to_tensors, tensors_to_optimizer_state_dict

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


class Ema:
    """Exponential moving average of a module's floating-point parameters."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))  # short warm-up, as in diffusers' EMAModel
        for k, v in module.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, module: torch.nn.Module) -> None:
        module.load_state_dict(self.shadow)


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
    from tqdm.auto import tqdm

    work = Path(work)
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
    mgr = CheckpointManager(work / "checkpoints" / name, keep=1)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    start = _restore(mgr, modules, opt, ema, rng)
    log = work / "logs" / f"{name}.jsonl"
    for m in modules.values():
        m.train()
    bad = 0
    bar = tqdm(total=settings.steps, initial=start, desc=name, disable=None if progress else True)
    step = start
    try:
        while step < settings.steps:
            for g in opt.param_groups:
                g["lr"] = settings.lr_at(step) * g["mult"]
            loss, logged = loss_fn(rng, step)
            if not torch.isfinite(loss):
                opt.zero_grad(set_to_none=True)
                bad += 1
                if bad >= MAX_BAD_STEPS:
                    raise TrainingError(
                        f"{name}: the loss was not finite {bad} times in a row at step {step}; "
                        "lower the learning rate or check the data"
                    )
                continue
            bad = 0
            loss.backward()
            params = [p for g in groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(modules[ema_key], step)
            step += 1
            bar.update(1)
            if step % 50 == 0 or step == settings.steps:
                bar.set_postfix({k: f"{v:.4f}" for k, v in logged.items()})
                append_jsonl(log, {"step": step, "loss": loss.item()} | logged, sync=False)
            if step % settings.checkpoint_every == 0 or step == settings.steps:
                _save(mgr, step, modules, opt, ema, rng)
    except KeyboardInterrupt:
        if step > start:
            _save(mgr, step, modules, opt, ema, rng)
        raise
    finally:
        bar.close()
    for m in modules.values():
        m.eval()
    out = dict(modules)
    if ema is not None:
        import copy

        averaged = copy.deepcopy(modules[ema_key])
        ema.copy_to(averaged)
        out[f"ema:{ema_key}"] = averaged.eval()
    return out


def _save(mgr, step, modules, opt, ema, rng) -> None:
    tensors = {f"model.{k}.{n}": v for k, m in modules.items() for n, v in m.state_dict().items()}
    opt_tensors, opt_meta = optimizer_state_dict_to_tensors(opt)
    tensors |= opt_tensors
    if ema is not None:
        tensors |= {f"ema.{n}": v for n, v in ema.shadow.items()}
    tensors["torch_rng"] = torch.get_rng_state()
    mgr.save(step, tensors, {"optimizer": opt_meta, "rng": json.dumps(rng.bit_generator.state)})


def _restore(mgr, modules, opt, ema, rng) -> int:
    latest = mgr.load_latest()
    if latest is None:
        return 0
    tensors, state = latest
    for k, m in modules.items():
        prefix = f"model.{k}."
        m.load_state_dict({n[len(prefix) :]: v for n, v in tensors.items() if n.startswith(prefix)})
    opt.load_state_dict(tensors_to_optimizer_state_dict(tensors, state["optimizer"]))
    if ema is not None:
        ema.shadow = {n[4:]: v.clone() for n, v in tensors.items() if n.startswith("ema.")}
    torch.set_rng_state(tensors["torch_rng"])
    rng.bit_generator.state = json.loads(state["rng"])
    return int(state["step"])
