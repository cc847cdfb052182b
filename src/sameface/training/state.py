"""Turning optimiser and RNG state into flat tensors + JSON, so checkpoints stay safetensors."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any


def optimizer_state_dict_to_tensors(optimizer: Any) -> tuple[dict[str, Any], dict]:
    """Split `optimizer.state_dict()` into named tensors and a JSON-ready remainder.

    Tensors become `optim.<param index>.<key>`; everything else (step counts as floats,
    hyper-parameters) goes to the JSON part.
    """
    import torch

    sd = optimizer.state_dict()
    tensors: dict[str, Any] = {}
    scalars: dict[str, dict] = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val) and val.dim() > 0:
                tensors[f"optim.{idx}.{key}"] = val.detach().clone().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = float(
                    val.item() if torch.is_tensor(val) else val
                )
    groups = [
        {k: v for k, v in g.items() if k != "params"} | {"params": list(g["params"])}
        for g in sd["param_groups"]
    ]
    return tensors, {"scalars": scalars, "param_groups": _jsonable(groups)}


def tensors_to_optimizer_state_dict(tensors: dict[str, Any], meta: dict) -> dict:
    """Inverse of `optimizer_state_dict_to_tensors`, ready for `optimizer.load_state_dict`."""
    import torch

    state: dict[int, dict] = {}
    for name, val in tensors.items():
        if not name.startswith("optim."):
            continue
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = val
    for idx, scal in meta.get("scalars", {}).items():
        for key, val in scal.items():
            # Adam keeps `step` as a float32 tensor (capturable-safe); restore it that way.
            state.setdefault(int(idx), {})[key] = torch.tensor(val, dtype=torch.float32)
    groups = [dict(g) for g in meta["param_groups"]]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def generator_from_state(state: Any, device: str = "cpu") -> Any:
    """A `torch.Generator` restored from `generator.get_state()` (a uint8 tensor)."""
    import torch

    g = torch.Generator(device=device)
    g.set_state(state)
    return g


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (bool, int, float, str)) or x is None:
        return x
    return str(x)


_STOP_SIGNALS = ("SIGINT", "SIGTERM")


@contextlib.contextmanager
def deferred_interrupt():
    """Hold back Ctrl-C (SIGINT) and SIGTERM until the block ends, so a few bookkeeping lines
    run as one; either then raises KeyboardInterrupt.

    Only in the main thread (signal handlers live there); elsewhere it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {
        sig: signal.signal(sig, lambda *a: caught.append(a))
        for sig in (getattr(signal, n) for n in _STOP_SIGNALS if hasattr(signal, n))
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            raise KeyboardInterrupt


@contextlib.contextmanager
def stop_requests_interrupt():
    """Inside the block SIGTERM (`kill`, a job scheduler stopping the job) raises
    KeyboardInterrupt like Ctrl-C, so training checkpoints before it exits. Also the only
    way to stop a background job gracefully: shells start those with SIGINT ignored.

    Only in the main thread; elsewhere it does nothing.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return

    def interrupt(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
