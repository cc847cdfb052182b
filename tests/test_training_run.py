"""The shared resumable training loop (`sameface.training.TrainingRun`) on toy problems:
exact resume in every phase and from every kind of random stream, the non-finite policy,
fingerprints, the log, and processes deriving their streams."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch

from sameface.errors import SamefaceError, TrainingError
from sameface.training import Ema, Phase, TrainingRun, loss_summary
from sameface.training.distributed import DistributedContext
from sameface.training.state import stop_requests_interrupt

X = torch.linspace(-1, 1, 24).reshape(8, 3)


def _two_phase_run(folder, *, interrupt_at=None, sigterm=False, nan_at=(), fingerprint="fp", **kw):
    """Phase "a" trains `first`; phase "b" adds `second` (built when it begins) and trains both.

    Every draw comes from the run's streams: a torch generator, numpy, torch's global RNG.
    `interrupt_at`: global step index at whose start Ctrl-C (or with `sigterm`, `kill`) arrives.
    """
    torch.manual_seed(0)
    first = torch.nn.Linear(3, 1)
    g = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(2)
    calls = {"n": 0}

    def loss(model_out):
        calls["n"] += 1
        if calls["n"] - 1 == interrupt_at:
            if sigterm:  # the way `kill` stops a CLI run
                os.kill(os.getpid(), signal.SIGTERM)
            raise KeyboardInterrupt
        bad = float("nan") if calls["n"] - 1 in nan_at else 0.0
        return model_out.pow(2).mean() + bad

    def step_a(step):
        rows = torch.from_numpy(rng.integers(0, 8, 4))
        noise = torch.randn(4, 1, generator=g) + 0.1 * torch.randn(4, 1)
        return {"loss": loss(first(X[rows]) - noise - 1), "extra": 0.5}

    run = TrainingRun(
        "toy",
        folder,
        fingerprint=fingerprint,
        rngs={"g": g, "numpy": rng, "torch": "torch"},
        modules={"first": first},
        checkpoint_every=2,
        progress=False,
        **kw,
    )
    run.add_phase(
        Phase("a", 5, step_a, optimizer=torch.optim.Adam(first.parameters(), lr=0.05), lr=0.05)
    )
    holder = {}

    def build_b(phase):  # draws from torch's global RNG, as a LoRA injection does
        holder["second"] = second = torch.nn.Linear(1, 1)
        phase.modules = {"second": second}
        phase.optimizer = torch.optim.SGD([*first.parameters(), *second.parameters()], lr=0.02)
        phase.ema = Ema(second, 0.9)

    def step_b(step):
        rows = torch.from_numpy(rng.integers(0, 8, 4))
        out = holder["second"](first(X[rows])) - torch.rand(4, 1, generator=g) - torch.rand(1)
        return {"loss": loss(out)}

    run.add_phase(Phase("b", 4, step_b, build=build_b, grad_clip=1.0))
    return run, first, holder


def _state(first, holder):
    out = {f"first.{k}": v.clone() for k, v in first.state_dict().items()}
    return out | {f"second.{k}": v.clone() for k, v in holder["second"].state_dict().items()}


def _finish(folder, **kw):
    run, first, holder = _two_phase_run(folder, **kw)
    run.restore()
    run.train()
    return run, _state(first, holder)


def test_two_phases_resume_exactly_from_either_phase(tmp_path):
    straight, want = _finish(tmp_path / "straight")
    assert len(straight.log) == 9 and [e["step"] for e in straight.log] == list(range(1, 10))
    for at in (3, 7):  # in phase a (Ctrl-C), in phase b (SIGTERM)
        folder = tmp_path / f"at{at}"
        run, _, _ = _two_phase_run(folder, interrupt_at=at, sigterm=at > 5)
        run.restore()
        with (
            pytest.raises(TrainingError, match=f"interrupted at step {at}/9"),
            stop_requests_interrupt(),
        ):
            run.train()
        state = json.loads((folder / f"checkpoint-{at}" / "state.json").read_text())
        assert (state["phase"], state["phase_step"]) == ((0, 3) if at == 3 else (1, 2))
        resumed, got = _finish(folder)
        assert resumed.log == straight.log
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_resume_restores_every_random_stream(tmp_path):
    _, want = _finish(tmp_path / "straight")
    after_straight = torch.get_rng_state()
    for at in (2, 5, 6):  # in phase a, at the phase switch, in phase b
        run, _, _ = _two_phase_run(tmp_path / f"r{at}", interrupt_at=at)
        with pytest.raises(TrainingError):
            run.train()
        run, first, holder = _two_phase_run(tmp_path / f"r{at}")
        torch.manual_seed(123)  # a resumed process starts with other global state
        assert run.restore()
        run.train()
        assert torch.equal(torch.get_rng_state(), after_straight)
        got = _state(first, holder)
        assert all(torch.equal(got[k], want[k]) for k in want)


def test_non_finite_steps_skip_then_stop_with_a_checkpoint(tmp_path):
    run, first, _ = _two_phase_run(tmp_path / "one", nan_at=(1,), max_nan_steps=2)
    before = [p.clone() for p in first.parameters()]
    run.train()
    assert run.log[1]["loss"] != run.log[1]["loss"] and len(run.log) == 9  # skipped, counted
    assert loss_summary(run.log)["non_finite_steps"] == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, first.parameters(), strict=True))

    run, _, _ = _two_phase_run(tmp_path / "many", nan_at=(3, 4), max_nan_steps=2)
    with pytest.raises(TrainingError, match="not finite for 2 step"):
        run.train()
    state = json.loads((tmp_path / "many" / "checkpoint-4" / "state.json").read_text())
    assert state["phase_step"] == 4  # the first NaN step counted, the second not applied


def test_checkpoints_of_another_run_are_refused(tmp_path):
    run, _, _ = _two_phase_run(tmp_path, interrupt_at=3)
    with pytest.raises(TrainingError):
        run.train()
    other, _, _ = _two_phase_run(tmp_path, fingerprint="other")
    with pytest.raises(SamefaceError, match="another run"):
        other.restore()
    other.clear()
    assert not other.restore() and not tmp_path.exists()


def test_parameters_without_gradient_are_an_error_when_asked(tmp_path):
    unused = torch.nn.Linear(1, 1)
    used = torch.nn.Linear(1, 1)
    run = TrainingRun("toy", tmp_path, require_grads="the placeholder is missing", progress=False)
    opt = torch.optim.Adam([*used.parameters(), *unused.parameters()])
    run.add_phase(Phase("a", 2, lambda s: {"loss": used(torch.ones(1, 1)).sum()}, optimizer=opt))
    with pytest.raises(TrainingError, match="placeholder is missing"):
        run.train()


def test_log_file_and_interrupt_passthrough(tmp_path):
    log = tmp_path / "log.jsonl"
    run, _, _ = _two_phase_run(tmp_path / "c", log_file=log, log_every=4, interrupt_error=False)
    run.train()
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    # every 4th step of a phase and each phase's last
    assert [e["step"] for e in lines] == [4, 5, 9] and lines[0]["extra"] == 0.5
    run, _, _ = _two_phase_run(tmp_path / "d", interrupt_at=1, interrupt_error=False)
    with pytest.raises(KeyboardInterrupt):
        run.train()
    assert (tmp_path / "d" / "checkpoint-1").is_dir()


def test_other_processes_derive_their_streams_from_the_main_one(tmp_path):
    run, _, _ = _two_phase_run(tmp_path, interrupt_at=3)
    with pytest.raises(TrainingError):
        run.train()

    def draws(index):
        ctx = DistributedContext(index, 2, lambda: None, index == 0)
        g = torch.Generator().manual_seed(99)
        run = TrainingRun("x", tmp_path, fingerprint="fp", rngs={"g": g}, context=ctx)
        run.restore()
        return torch.rand(3, generator=g)

    main, other, again = draws(0), draws(1), draws(1)
    assert not torch.equal(main, other) and torch.equal(other, again)


def test_a_watcher_sees_every_step_and_its_stop_resumes_exactly(tmp_path):
    import threading

    from sameface.training.observe import StepWatcher, watching

    straight, want = _finish(tmp_path / "straight")
    for stop_after in (3, 5):  # inside phase a, at its last step
        folder = tmp_path / f"stop{stop_after}"
        seen = []
        stop = threading.Event()

        def on_step(i, total, loss, stop=stop, at=stop_after, seen=seen):
            seen.append((i, total))
            assert loss == loss  # a finite recent mean
            if i == at:
                stop.set()  # a front end's cancel button, from its own thread in real use

        run, _, _ = _two_phase_run(folder)
        with watching(StepWatcher(on_step, stop)), pytest.raises(TrainingError, match="resume"):
            run.train()
        assert seen == [(i, 9) for i in range(1, stop_after + 1)]
        resumed, got = _finish(folder)  # no watcher outside the block
        assert resumed.log == straight.log
        assert all(torch.equal(got[k], want[k]) for k in want)


def test_a_phase_projection_follows_every_applied_update(tmp_path):
    """`Phase.project(step)` runs after each update that was applied (not after a skipped
    non-finite step), with the step's index in the phase, and sees the updated parameters."""
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    seen = []

    def project(step):
        seen.append((step, float(w.norm())))
        w.mul_(1.0 / w.norm())  # onto the unit circle

    def step_fn(step):
        bad = float("nan") if step == 1 else 0.0
        return {"loss": (w * torch.tensor([1.0, -1.0])).sum() + bad}

    run = TrainingRun("toy", tmp_path, fingerprint="p", progress=False, max_nan_steps=3)
    run.add_phase(Phase("a", 4, step_fn, optimizer=torch.optim.SGD([w], lr=0.1), project=project))
    run.train()
    assert [s for s, _ in seen] == [0, 2, 3]
    assert seen[0][1] == pytest.approx(float(torch.tensor([2.9, 4.1]).norm()))  # after the update
    assert float(w.norm()) == pytest.approx(1.0)
