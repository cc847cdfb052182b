"""Shared fixtures: test portraits, generated bad inputs, single-threaded torch/OpenCV."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "faces"
SHARED = REPO.parent / "shared" / "testdata" / "faces"


def _set_threads() -> None:
    # One thread is the steadier choice on a shared 2-core machine (DESIGN.md).
    import cv2

    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


_set_threads()


def free_port() -> int:
    """A TCP port free right now on the loopback (for `accelerate launch` rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_process_launcher() -> list[str]:
    """The start of a command that runs it as 2 CPU processes under `accelerate launch`."""
    import sys

    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port())]  # fmt: skip


def train_with_two_processes(method: str, data: Path, base: Path, out: Path):
    """`sameface train METHOD --config configs/METHOD/tiny.yaml` as 2 processes; the finished
    `subprocess.CompletedProcess`."""
    import subprocess

    cmd = [*two_process_launcher(), "-m", "sameface.cli", "train", method,
           "--config", str(REPO / "configs" / method / "tiny.yaml"), "--data", str(data),
           "--base", str(base), "--out", str(out), "--device", "cpu"]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def portrait(name: str) -> Path:
    """A test portrait from the repo's examples or ../shared/testdata (skip if absent)."""
    for root in (EXAMPLES, SHARED):
        p = root / name
        if p.is_file():
            return p
    pytest.skip(f"test portrait {name} not available")


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test on any attempt to open a connection; HF_HUB_OFFLINE is unset so code
    that would download has to be stopped by sameface itself, not by the environment."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


@pytest.fixture(scope="session")
def obama() -> Path:
    return portrait("obama.jpg")


@pytest.fixture(scope="session")
def obama2() -> Path:
    return portrait("obama2.jpg")


@pytest.fixture(scope="session")
def biden() -> Path:
    return portrait("biden.jpg")


@pytest.fixture(scope="session")
def analyzer():
    from sameface.faces import FaceAnalyzer

    return FaceAnalyzer("sface")


@pytest.fixture(scope="session")
def obama_rgb(obama) -> np.ndarray:
    from sameface.imageio import load_image

    return load_image(obama)


def sdxl_train_dtype():
    """The real-config SDXL training tests' dtype: bf16 where the CPU computes it natively
    (about 2x faster than fp32, DESIGN.md), fp32 elsewhere (emulated bf16 takes ~15 min a step)."""
    import torch

    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return torch.bfloat16 if native else torch.float32


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A tiny world (`BuildConfig.tiny()`), built once per session; method recipes publish
    their trained parts into it side by side (WORLD/pulid, WORLD/feedface)."""
    import torch

    from sameface.world.build import BuildConfig, build_world
    from sameface.world.world import World

    out = tmp_path_factory.mktemp("tiny-world")
    # The build sets torch to every core; on a shared 2-core machine one thread is ~8x
    # faster (see _set_threads), so keep the tests' single thread.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "set_num_threads", lambda n: None)
        build_world(out, BuildConfig.tiny(), progress=False, log=lambda s: None)
    return World.load(out)


def _give_memory_back() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc `malloc_trim`).

    A real-config model's gigabytes, once freed, stay in the process's heap: glibc keeps
    freed chunks for reuse, and the memory taken by one slow test stacked with the next ones
    and the browser tests' server killed CI for memory (exit 137 at 83 %). Measured on the
    DreamIdentity SDXL test: 9.25 GB resident after the test, 9.25 after gc, 0.45 after trim.
    """
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@pytest.hookimpl(trylast=True)  # after pytest's own teardown has dropped the fixtures
def pytest_runtest_teardown(item, nextitem):
    # After every real-config test and at every module boundary.
    if item.get_closest_marker("slow") or nextitem is None or nextitem.module is not item.module:
        _give_memory_back()
