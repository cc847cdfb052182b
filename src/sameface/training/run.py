"""One resumable training loop for every trainer in sameface: the methods and the world build.

A method writes a *step function* (step index -> dict of losses, "loss" being the one to
minimise) and hands it, with its optimiser and the modules whose weights it trains, to a
`TrainingRun`. The run owns everything a checkpoint must hold — weights, optimiser state, the
random streams, the step, the loss log, the fingerprint of the settings — and the policies
every loop needs: atomic checkpoints every N steps and on Ctrl-C / SIGTERM, exact resume, a
non-finite-loss policy, gradient averaging across `accelerate launch` processes, a JSONL log
and a progress bar.

A run may have several phases (MagiCapture: textual inversion, then LoRA), each with its own
trainable parts, optimiser, step count and step function; a checkpoint records the phase, so
a resumed run lands in the right one.

    run = TrainingRun("textual inversion", folder, fingerprint=fp, rngs={"rng": g})
    run.add_phase(Phase("ti", steps=400, step_fn=step, optimizer=adam, modules={"learned.0": lt}))
    run.restore()      # continue from the newest checkpoint, if any
    run.train()        # raises TrainingError on interruption (checkpoint saved) or NaN runs
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SamefaceError, TrainingError
from ..fileio import append_jsonl
from .checkpoint import CheckpointManager
from .distributed import DistributedContext
from .ema import Ema
from .state import (
    deferred_interrupt,
    optimizer_state_dict_to_tensors,
    tensors_to_optimizer_state_dict,
)

FORMAT = 2
"""Checkpoint layout version; checkpoints of another layout are refused with a clear message."""

StepFn = Callable[[int], Mapping[str, Any]]
"""`step_fn(step) -> {"loss": tensor to minimise, other name: tensor or float to log}`."""


# --- random streams ------------------------------------------------------------------------


class TorchGeneratorStream:
    """A `torch.Generator` whose state is checkpointed (restored in place: closures keep it)."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def load(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

    def derive(self, process_index: int) -> None:
        """Processes other than the main one continue from a stream derived from the main's."""
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator)) + process_index
        self.generator.manual_seed(seed)


class TorchGlobalStream:
    """torch's global CPU RNG (what `torch.randn` without a generator draws from)."""

    def state(self) -> torch.Tensor:
        return torch.get_rng_state()

    def load(self, state: torch.Tensor) -> None:
        torch.set_rng_state(state)

    def derive(self, process_index: int) -> None:
        torch.manual_seed(int(torch.randint(0, 2**62, (1,))) + process_index)


class NumpyStream:
    """A `numpy.random.Generator`; its state (a JSON dict) travels as a uint8 tensor."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def state(self) -> torch.Tensor:
        raw = json.dumps(self.rng.bit_generator.state, sort_keys=True).encode()
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone()

    def load(self, state: torch.Tensor) -> None:
        self.rng.bit_generator.state = json.loads(bytes(state.tolist()).decode())

    def derive(self, process_index: int) -> None:
        self.rng.bit_generator.state = np.random.default_rng(
            int(self.rng.integers(0, 2**62)) + process_index
        ).bit_generator.state


def as_stream(rng: Any) -> Any:
    """Wrap a `torch.Generator`, a `numpy.random.Generator` or the string "torch" (global RNG)."""
    if isinstance(rng, torch.Generator):
        return TorchGeneratorStream(rng)
    if isinstance(rng, np.random.Generator):
        return NumpyStream(rng)
    if rng == "torch":
        return TorchGlobalStream()
    if hasattr(rng, "state") and hasattr(rng, "load"):
        return rng
    raise TypeError(f"not a random stream: {rng!r}")


# --- phases --------------------------------------------------------------------------------


@dataclass
class Phase:
    """One phase of a run: what it trains, how, and for how many steps.

    Attributes:
        name: shown in the progress bar and recorded in checkpoints.
        steps: optimisation steps of this phase.
        step_fn: `step_fn(step) -> {"loss": ..., ...}` with `step` counted within the phase.
        optimizer: the optimiser over this phase's trainable parameters (param groups may
            carry a "mult" learning-rate multiplier).
        modules: name -> module whose `state_dict()` is checkpointed in this phase (the run's
            own `modules` are checkpointed in every phase).
        lr: a constant learning rate, or `lr(step)`; None leaves the optimiser's own.
        grad_clip: clip the gradient norm to this value; None = no clipping.
        ema: an `Ema` of one module, updated after every step and checkpointed.
        project: `project(step)` runs right after each update, with that step's index within
            the phase, and moves with the update as one unit (no gradient): a projection of the
            parameters, e.g. pulling learned word vectors back to a norm.
        build: `build(phase)` runs when the phase begins (fresh or on resume into it), before
            its parts are restored: it makes what only this phase has (e.g. injects a LoRA)
            and sets `phase.optimizer` / `phase.modules`.
    """

    name: str
    steps: int
    step_fn: StepFn
    optimizer: Any = None
    modules: dict[str, torch.nn.Module] = field(default_factory=dict)
    lr: float | Callable[[int], float] | None = None
    grad_clip: float | None = None
    ema: Ema | None = None
    project: Callable[[int], None] | None = None
    build: Callable[[Phase], None] | None = None

    @property
    def params(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]


# --- the run -------------------------------------------------------------------------------


class TrainingRun:
    """Parameters, optimiser, random streams, step, loss log and fingerprint of one training run.

    Args:
        desc: what is trained (progress bar, messages).
        folder: checkpoint folder (`CheckpointManager`).
        fingerprint: hash of everything a resumed run must share with the interrupted one;
            checkpoints with another fingerprint are refused.
        rngs: name -> random stream the step functions draw from (`torch.Generator`,
            `numpy.random.Generator` or "torch" for the global RNG); checkpointed by name.
        modules: name -> module checkpointed in every phase.
        checkpoint_every: periodic checkpoint interval in steps (0 = only on interruption).
        save_final: also checkpoint after the last step (a rerun then skips the training);
            otherwise the caller saves its result and calls `clear()`.
        keep: how many checkpoints to keep.
        max_nan_steps: non-finite losses or gradients skip the update; this many in a row
            stop the run (the last finite state is checkpointed first).
        require_grads: an error message for when a trainable parameter gets no gradient
            (e.g. the prompt lost its placeholder); None allows it.
        log_file: JSONL file that gets one line every `log_every` steps (main process).
        log_every: interval of `log_file` lines; 0 = none.
        interrupt_error: on Ctrl-C / SIGTERM raise `TrainingError` ("run again to resume")
            after checkpointing; False re-raises the KeyboardInterrupt.
        context: a `DistributedContext` (process index, count, barrier); default single process.
        progress: show a progress bar (main process only).
    """

    def __init__(
        self,
        desc: str,
        folder: str | Path,
        *,
        fingerprint: str = "",
        rngs: Mapping[str, Any] | None = None,
        modules: Mapping[str, torch.nn.Module] | None = None,
        checkpoint_every: int = 0,
        save_final: bool = False,
        keep: int = 2,
        max_nan_steps: int = 1,
        require_grads: str | None = None,
        log_file: str | Path | None = None,
        log_every: int = 0,
        interrupt_error: bool = True,
        context: DistributedContext | None = None,
        progress: bool = True,
    ):
        if max_nan_steps < 1:
            raise ValueError(f"max_nan_steps must be >= 1, got {max_nan_steps}")
        self.desc = desc
        self.ckpts = CheckpointManager(folder, keep=keep)
        self.fingerprint = fingerprint
        self.rngs = {k: as_stream(v) for k, v in (rngs or {}).items()}
        self.modules = dict(modules or {})
        self.checkpoint_every, self.save_final = checkpoint_every, save_final
        self.max_nan_steps, self.require_grads = max_nan_steps, require_grads
        self.log_file = Path(log_file) if log_file else None
        self.log_every = log_every
        self.interrupt_error = interrupt_error
        self.ctx = context or DistributedContext(0, 1, lambda: None, True)
        self.progress = progress
        self.phases: list[Phase] = []
        self.phase = 0  # index of the current phase
        self.step = 0  # steps applied in the current phase
        self.log: list[dict] = []  # one entry per step of every phase
        self._restored: tuple[dict, dict] | None = None
        self._rng_at_start: dict[str, torch.Tensor] | None = None

    # -- set-up ---------------------------------------------------------------------------

    def add_phase(self, phase: Phase) -> TrainingRun:
        if phase.steps < 0:
            raise ValueError(f"phase {phase.name!r}: steps must be >= 0, got {phase.steps}")
        self.phases.append(phase)
        return self

    @property
    def total_steps(self) -> int:
        return sum(p.steps for p in self.phases)

    @property
    def global_step(self) -> int:
        return sum(p.steps for p in self.phases[: self.phase]) + self.step

    def losses(self, key: str = "loss") -> list[float]:
        """The logged values of `key`, one per step (NaN where it was not finite)."""
        return [float(e.get(key, float("nan"))) for e in self.log]

    # -- checkpoints ----------------------------------------------------------------------

    def _checkpointed_modules(self) -> Iterator[tuple[str, torch.nn.Module]]:
        yield from self.modules.items()
        if self.phase < len(self.phases):
            yield from self.phases[self.phase].modules.items()

    def save(self, rng_state: dict[str, torch.Tensor] | None = None) -> None:
        """Checkpoint the state after the steps applied so far (main process only).

        Args:
            rng_state: the random streams' states to record (those at the start of an
                unfinished step); default their current states.
        """
        if not self.ctx.is_main:
            return
        tensors: dict[str, torch.Tensor] = {}
        for name, module in self._checkpointed_modules():
            tensors |= {f"{name}.{k}": v for k, v in module.state_dict().items()}
        state: dict[str, Any] = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "phase": self.phase,
            "phase_step": self.step,
            "log": self.log,
        }
        if self.phase < len(self.phases):
            ph = self.phases[self.phase]
            if ph.optimizer is not None:
                opt_tensors, state["optimizer"] = optimizer_state_dict_to_tensors(ph.optimizer)
                tensors |= opt_tensors
            if ph.ema is not None:
                tensors |= {f"ema.{k}": v for k, v in ph.ema.shadow.items()}
        rngs = rng_state or self._rng_states()
        tensors |= {f"rng.{k}": v for k, v in rngs.items()}
        self.ckpts.save(self.global_step, tensors, state)

    def _rng_states(self) -> dict[str, torch.Tensor]:
        return {k: s.state() for k, s in self.rngs.items()}

    def restore(self) -> bool:
        """Continue from the newest checkpoint, if there is one; True when one was loaded.

        The weights of the run's modules are loaded now; the phase's own parts when the
        phase begins (`train`). Raises `SamefaceError` for checkpoints of another run.
        """
        latest = self.ckpts.load_latest()
        if latest is None:
            return False
        tensors, state = latest
        if state.get("format") != FORMAT or state.get("fingerprint") != self.fingerprint:
            raise SamefaceError(
                f"{self.ckpts.folder} holds checkpoints of another run (other settings, data, base "
                "model or sameface version); pass --no-resume (resume=False) to start over, or use "
                "another output folder"
            )
        self.phase, self.step = int(state["phase"]), int(state["phase_step"])
        self.log = list(state["log"])
        for name, module in self.modules.items():
            _load_module(module, name, tensors)
        self._load_streams(tensors)
        self._restored = (tensors, state)
        return True

    def _load_streams(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, stream in self.rngs.items():
            stream.load(tensors[f"rng.{name}"])
            if self.ctx.process_index:
                # Only the main process's streams are checkpointed; the others derive theirs.
                stream.derive(self.ctx.process_index)

    def _begin_phase(self) -> Phase:
        """Build the current phase's parts and load them from a restored checkpoint."""
        ph = self.phases[self.phase]
        if ph.build is not None:
            ph.build(ph)
        if ph.optimizer is None:
            raise ValueError(f"phase {ph.name!r} has no optimizer")
        if self._restored is not None:
            tensors, state = self._restored
            self._restored = None
            self._load_streams(tensors)  # again: building the phase may have drawn from them
            for name, module in ph.modules.items():
                _load_module(module, name, tensors)
            if "optimizer" in state:
                ph.optimizer.load_state_dict(
                    tensors_to_optimizer_state_dict(tensors, state["optimizer"])
                )
            if ph.ema is not None:
                ph.ema.shadow = {
                    k[4:]: v.clone() for k, v in tensors.items() if k.startswith("ema.")
                }
        return ph

    def clear(self) -> None:
        """Remove the checkpoints (after the caller saved the result), main process only."""
        if self.ctx.is_main:
            self.ckpts.clear()

    # -- the loop -------------------------------------------------------------------------

    def train(self) -> None:
        """Run every remaining step of every phase.

        Raises:
            TrainingError: `max_nan_steps` non-finite steps in a row, a parameter without
                gradient (`require_grads`), or an interruption (checkpoint saved first; with
                `interrupt_error=False` the KeyboardInterrupt itself).
        """
        from tqdm.auto import tqdm

        from .observe import current_watcher

        watcher = current_watcher() if self.ctx.is_main else None
        bar = tqdm(
            total=self.total_steps,
            initial=self.global_step,
            desc=self.desc,
            unit="step",
            disable=None if self.progress and self.ctx.is_main else True,
        )
        try:
            while self.phase < len(self.phases):
                ph = self._begin_phase()
                nan_run = 0
                while self.step < ph.steps:
                    # The streams' state this step starts from, in case it is interrupted.
                    self._rng_at_start = self._rng_states()
                    entry, finite = self._one_step(ph)
                    if not finite:
                        nan_run += 1
                        if nan_run >= self.max_nan_steps:
                            self.save(self._rng_at_start)
                            raise TrainingError(
                                f"{self.desc}: the loss was not finite for {nan_run} step(s) in a "
                                f"row (step {self.global_step}); the last finite state is "
                                f"checkpointed in {self.ckpts.folder}. Lower the learning rate (or "
                                "use --mixed-precision no) and run again to resume from it, or "
                                "--no-resume to start over"
                            )
                    else:
                        nan_run = 0
                    bar.update(1)
                    bar.set_postfix(loss=f"{_recent_mean(self.log):.4f}")
                    self._after_step(ph, entry)
                    if watcher is not None:
                        if watcher.on_step is not None:
                            watcher.on_step(
                                self.global_step, self.total_steps, _recent_mean(self.log)
                            )
                        if watcher.stop.is_set():  # a front end's "cancel": as Ctrl-C here
                            raise KeyboardInterrupt
                self.phase, self.step = self.phase + 1, 0
        except KeyboardInterrupt:
            self.save(self._rng_at_start)
            if self.interrupt_error:
                raise self.ckpts.interrupted(self.global_step, self.total_steps) from None
            raise
        finally:
            bar.close()

    def _one_step(self, ph: Phase) -> tuple[dict, bool]:
        """Losses, backward, update; the update and bookkeeping move as one (deferred signals)."""
        if ph.lr is not None:
            lr = ph.lr(self.step) if callable(ph.lr) else ph.lr
            for g in ph.optimizer.param_groups:
                g["lr"] = lr * g.get("mult", 1.0)
        ph.optimizer.zero_grad(set_to_none=True)
        losses = ph.step_fn(self.step)
        loss = losses["loss"]
        finite = bool(torch.isfinite(loss))
        if finite:
            loss.backward()
            params = ph.params
            if self.require_grads and any(p.grad is None for p in params):
                raise TrainingError(self.require_grads)
            self._average_gradients(params)
            finite = all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params)
            if finite and ph.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, ph.grad_clip)
        with deferred_interrupt():  # update, log, step and RNG state move together
            if finite:
                ph.optimizer.step()
                if ph.project is not None:
                    with torch.no_grad():
                        ph.project(self.step)
                if ph.ema is not None:
                    ph.ema.update(self.step)
            entry = {
                "step": self.global_step + 1,
                "loss": _scalar(loss) if finite else float("nan"),
            }
            if finite:
                entry |= {k: _scalar(v) for k, v in losses.items() if k != "loss"}
            self.log.append(entry)
            self.step += 1
            self._rng_at_start = None  # inside the block: a deferred signal sees the step done
        return entry, finite

    def _after_step(self, ph: Phase, entry: dict) -> None:
        step, total = self.step, ph.steps
        logged = self.log_every and (step % self.log_every == 0 or step == total)
        if self.ctx.is_main and self.log_file and logged:
            append_jsonl(self.log_file, entry | {"time": time.time()}, sync=False)
        last = self.phase == len(self.phases) - 1 and step == total
        if self.ckpts.due(step, self.checkpoint_every, total) or (last and self.save_final):
            self.save()
        elif step == total and not last:
            self.save()  # the next phase starts from a checkpoint of this one's end

    def _average_gradients(self, params: list[torch.Tensor]) -> None:
        """Data parallelism without DDP's wrapper: average every gradient over the processes."""
        n = self.ctx.num_processes
        if n < 2:
            return
        import torch.distributed as dist

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= n


# --- small helpers -------------------------------------------------------------------------


def _load_module(module: torch.nn.Module, name: str, tensors: dict[str, torch.Tensor]) -> None:
    prefix = f"{name}."
    module.load_state_dict(
        {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    )


def _scalar(v: Any) -> float:
    return float(v.detach()) if torch.is_tensor(v) else float(v)


def _recent_mean(log: list[dict], n: int = 20) -> float:
    recent = [e["loss"] for e in log[-n:] if e["loss"] == e["loss"]]
    return sum(recent) / len(recent) if recent else float("nan")


def loss_summary(log: list[dict], tail: int = 50) -> dict:
    """Mean of each logged value over the last `tail` finite steps, and the non-finite count."""
    finite = [e for e in log if e.get("loss") == e.get("loss")]
    last = finite[-tail:]
    keys = [k for k in (last[-1] if last else {}) if k != "step"]
    out = {k: round(float(np.mean([e[k] for e in last if k in e])), 6) for k in keys}
    return out | {"steps": len(log), "non_finite_steps": len(log) - len(finite)}


def dataset_run(
    desc: str,
    out: str | Path,
    config: Any,
    fingerprint: str,
    context: DistributedContext,
    *,
    resume: bool,
    progress: bool,
) -> tuple[TrainingRun, torch.Generator]:
    """The run of an encoder method's training on a dataset, and its batch stream.

    Each process draws its batches from its own stream (`config.seed` · 1000 + process
    index); checkpoints go to `out/checkpoints` every `config.checkpoint_every` steps and the
    log to `out/train_log.jsonl` every `config.log_every`. Without `resume` the old
    checkpoints are cleared first (the main process; the others wait for it).
    """
    generator = torch.Generator().manual_seed(config.seed * 1000 + context.process_index)
    out = Path(out)
    run = TrainingRun(
        desc,
        out / "checkpoints",
        fingerprint=fingerprint,
        rngs={"rng": generator},
        checkpoint_every=config.checkpoint_every,
        log_file=out / "train_log.jsonl",
        log_every=config.log_every,
        context=context,
        progress=progress,
    )
    if not resume:
        run.clear()
    context.wait()
    return run, generator


def adamw(module: torch.nn.Module, config: Any) -> torch.optim.AdamW:
    """AdamW over `module`'s trainable parameters with `config`'s learning rate, betas and decay."""
    params = [p for p in module.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        params, lr=config.learning_rate, betas=config.adam_betas, weight_decay=config.weight_decay
    )


RESUMABLE_CHANGES = ("steps", "checkpoint_every", "log_every", "learning_rate", "mixed_precision")
"""Settings of a dataset run that may change between an interruption and its resumption."""


def dataset_fingerprint(config: Any, data: Any, base: Any, init_from: Any) -> str:
    """`fingerprint` of a dataset training run: the settings (less `RESUMABLE_CHANGES`), the
    dataset's sample ids, the base model and the folder it starts from."""
    settings = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_CHANGES}
    return fingerprint(
        settings,
        json.dumps([s["id"] for s in data.samples]),
        f"{base.family}:{base.source}:{init_from}",
    )


def fingerprint(settings: Mapping[str, Any], *parts: bytes | str) -> str:
    """A short hash of a run's settings (JSON) and other parts (data, base model) to match on resume."""
    import hashlib

    h = hashlib.sha256(json.dumps(dict(settings), sort_keys=True, default=str).encode())
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
    return h.hexdigest()[:16]


__all__ = [
    "FORMAT",
    "RESUMABLE_CHANGES",
    "NumpyStream",
    "Phase",
    "TorchGeneratorStream",
    "TorchGlobalStream",
    "TrainingRun",
    "adamw",
    "dataset_fingerprint",
    "dataset_run",
    "fingerprint",
    "loss_summary",
]
