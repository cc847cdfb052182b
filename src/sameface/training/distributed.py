"""Processes under `accelerate launch`: which shard am I, and how to wait for the others."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple


def _noop() -> None:
    return None


class DistributedContext(NamedTuple):
    """Where this process stands in a multi-process run (`accelerate launch`)."""

    process_index: int
    num_processes: int
    wait: Callable[[], None]
    is_main: bool


def distributed_context(timeout_hours: float = 48.0) -> DistributedContext:
    """(process_index, num_processes, wait, is_main) of this process.

    Under `accelerate launch` (WORLD_SIZE > 1 and accelerate importable) these come from
    `accelerate.PartialState`; otherwise `(0, 1, no-op, True)`.

    Args:
        timeout_hours: how long `wait` may block. Shards finish at different times (on a
            resumed run one may have nothing left to do), and torch's default collective
            timeout (10-30 min) would kill the early ones while they wait.
    """
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        try:
            from accelerate import PartialState
        except ImportError:
            return DistributedContext(0, 1, _noop, True)
        from datetime import timedelta

        import torch

        # Without cpu=True, PartialState ignores WORLD_SIZE on a machine with no
        # accelerator and every process believes it is alone (each would do every name).
        accel = getattr(torch, "accelerator", None)
        has_accel = accel.is_available() if accel is not None else torch.cuda.is_available()
        use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
        state = PartialState(cpu=use_cpu or not has_accel, timeout=timedelta(hours=timeout_hours))
        return DistributedContext(
            int(state.process_index),
            int(state.num_processes),
            state.wait_for_everyone,
            bool(state.is_main_process),
        )
    return DistributedContext(0, 1, _noop, True)
