"""PuLID training on tiny models: every stage runs and checkpoints, an interrupted run
resumes exactly, the CLI goes from photos to images, and two processes train together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sameface.data.prepare import PrepareSettings, prepare_face_dataset
from sameface.errors import TrainingError
from sameface.methods.pulid import PuLIDConfig, tiny_clip_vision
from sameface.methods.pulid.train import train
from sameface.models import save_base_model, tiny_base_model
from tests.conftest import two_process_launcher

REPO = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((REPO / "configs" / "pulid" / "tiny.yaml").read_text())


@pytest.fixture(scope="module")
def data(tmp_path_factory, analyzer):
    out = tmp_path_factory.mktemp("data")
    prepare_face_dataset(
        REPO / "examples" / "faces", out, analyzer, PrepareSettings(resolution=64), progress=False
    )
    return out


def cfg(**kw) -> PuLIDConfig:
    return PuLIDConfig(**(TINY | kw))


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter.safetensors")) | load_file(
        str(folder / "encoder.safetensors")
    )


def test_three_stages_in_turn(tmp_path, data):
    base, vision = tiny_base_model("sd1"), tiny_clip_vision()
    procs_before = dict(base.unet.attn_processors)
    prev = None
    for stage in (1, 2, 3):
        out = train(
            data,
            base,
            cfg(stage=stage, steps=2),
            tmp_path / f"s{stage}",
            vision=vision,
            init_from=prev,
            progress=False,
        )
        meta = json.loads((out / "pulid.json").read_text())
        assert meta["trained"]["stage"] == stage and meta["trained"]["steps"] == 2
        log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
        assert len(log) == 2 and all(torch.isfinite(torch.tensor(e["loss"])) for e in log)
        assert ("id" in log[0]) == (stage >= 2) and ("align" in log[0]) == (stage == 3)
        assert not (out / "checkpoints").exists()
        prev = out
    assert dict(base.unet.attn_processors) == procs_before  # the base UNet is given back
    assert any(
        not torch.equal(a, b)
        for a, b in zip(
            _weights(tmp_path / "s1").values(), _weights(tmp_path / "s3").values(), strict=True
        )
    )


def test_the_ablations_naive_id_loss_sees_the_steps_own_one_step_image(tmp_path, data, monkeypatch):
    """`id_loss_branch="one-step"` (PuLID's ablation, "naive ID loss"): the ID loss is computed
    on Tweedie's x̂0 of the diffusion branch's prediction, never on a few-step generation."""
    import sameface.methods.pulid.train as train_mod
    from sameface.training import few_step

    seen = []
    real = few_step.one_step_image

    def spy(base, scheduler, x_t, pred, t):
        seen.append((tuple(x_t.shape), pred.requires_grad))
        return real(base, scheduler, x_t, pred, t)

    monkeypatch.setattr(train_mod, "one_step_image", spy)
    monkeypatch.setattr(train_mod, "generate_x0", lambda *a, **k: pytest.fail("few-step branch"))
    out = train(
        data,
        tiny_base_model("sd1"),
        cfg(stage=2, steps=2, id_drop_prob=0.0, id_loss_branch="one-step"),
        tmp_path / "naive",
        vision=tiny_clip_vision(),
        progress=False,
    )
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(seen) == 2 and all(grad for _, grad in seen) and all("id" in e for e in log)
    assert json.loads((out / "pulid.json").read_text())["config"]["id_loss_branch"] == "one-step"
    with pytest.raises(ValueError, match="id_loss_branch must be one of lightning, one-step"):
        cfg(id_loss_branch="naive")


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_interrupted_training_resumes_exactly(tmp_path, data, monkeypatch, stage):
    import sameface.methods.pulid.train as train_mod

    settings = cfg(stage=stage, steps=5, checkpoint_every=2)
    train(
        data,
        tiny_base_model("sd1"),
        settings,
        tmp_path / "straight",
        vision=tiny_clip_vision(),
        progress=False,
    )
    real, calls = train_mod.l_simple, {"n": 0}

    def stop_at_fourth(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "l_simple", stop_at_fourth)
    with pytest.raises(TrainingError, match="interrupted at step 3/5"):
        train(
            data,
            tiny_base_model("sd1"),
            settings,
            tmp_path / "resumed",
            vision=tiny_clip_vision(),
            progress=False,
        )
    steps = sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir())
    assert steps == ["checkpoint-2", "checkpoint-3"]  # periodic, then the interrupted state
    monkeypatch.setattr(train_mod, "l_simple", real)
    train(
        data,
        tiny_base_model("sd1"),
        settings,
        tmp_path / "resumed",
        vision=tiny_clip_vision(),
        progress=False,
    )
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _cli(*args, env=None, launcher=None):
    cmd = [*(launcher or [sys.executable]), "-m", "sameface.cli", *map(str, args)]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=600,
        env=(env or os.environ) | {"OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_cli_from_photos_to_images(tmp_path, data, obama):
    base = save_base_model(tiny_base_model("sd1"), tmp_path / "base")
    cfg_file = REPO / "configs" / "pulid" / "tiny.yaml"
    _cli(
        "train",
        "pulid",
        "--config",
        cfg_file,
        "--data",
        data,
        "--base",
        base,
        "--out",
        tmp_path / "s1",
        "--device",
        "cpu",
    )
    _cli(
        "train",
        "pulid",
        "--config",
        cfg_file,
        "--data",
        data,
        "--base",
        base,
        "--out",
        tmp_path / "s2",
        "--stage",
        "2",
        "--init-from",
        tmp_path / "s1",
        "--device",
        "cpu",
    )
    _cli(
        "generate",
        "a photo of <id> as a chef",
        "--method",
        "pulid",
        "--adapter",
        tmp_path / "s2",
        "--face",
        obama,
        "-n",
        "1",
        "--steps",
        "2",
        "--id-scale",
        "0.8",
        "--out",
        tmp_path / "imgs",
        "--device",
        "cpu",
    )
    assert (tmp_path / "imgs" / "a-photo-of-id-as-a-chef_0.png").is_file()
    assert (tmp_path / "imgs" / "identity-artifact" / "id_tokens.safetensors").is_file()


def test_two_processes_train_together(tmp_path, data):
    base = save_base_model(tiny_base_model("sd1"), tmp_path / "base")
    launcher = two_process_launcher()
    _cli(
        "train",
        "pulid",
        "--config",
        REPO / "configs" / "pulid" / "tiny.yaml",
        "--data",
        data,
        "--base",
        base,
        "--out",
        tmp_path / "out",
        "--device",
        "cpu",
        launcher=launcher,
    )
    meta = json.loads((tmp_path / "out" / "pulid.json").read_text())
    assert meta["trained"]["steps"] == TINY["steps"]
