"""Watching a training run from outside its loop.

A front end that runs training in a worker thread (the web UI) cannot send it Ctrl-C. It
installs a `StepWatcher` around the call instead: every `TrainingRun` started inside sees
each step (for a progress bar with the loss) and stops at the next step boundary once asked,
checkpoint first, so running the same personalisation again resumes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class StepWatcher:
    """What a front end learns of, and asks of, the training runs inside `watching`.

    Attributes:
        on_step: called after every step with (step, total steps, recent mean loss).
        stop: set it to stop the run at the next step boundary (checkpoint kept).
    """

    on_step: Callable[[int, int, float], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)


_WATCHER: ContextVar[StepWatcher | None] = ContextVar("sameface_step_watcher", default=None)


@contextlib.contextmanager
def watching(watcher: StepWatcher) -> Iterator[StepWatcher]:
    """Training runs started in this block (this thread / context) report to `watcher`."""
    token = _WATCHER.set(watcher)
    try:
        yield watcher
    finally:
        _WATCHER.reset(token)


def current_watcher() -> StepWatcher | None:
    """The watcher of the enclosing `watching` block, or None."""
    return _WATCHER.get()
