"""The world build: every training stage runs a few steps, resumes, and yields a loadable world."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch

from sameface.training.state import stop_requests_interrupt
from sameface.world.build import BuildConfig, build_world
from sameface.world.trainer import LoopSettings, train_loop


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    # One torch thread, as `conftest.tiny_world` builds (the build would take every core).
    import torch

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "set_num_threads", lambda n: None)
        build_world(out, BuildConfig.tiny(), progress=False, log=lambda s: None)
    return out


def test_tiny_build_writes_a_loadable_world(tiny_world):
    from sameface.world.world import World

    w = World.load(tiny_world)
    known, new = w.people
    assert len(known.names) == 12 and len(new.names) == 6
    assert not set(known.names) & set(new.names)
    # The base is a StableDiffusionPipeline folder, loaded like any model.
    assert type(w.base.as_pipeline()).__name__ == "StableDiffusionPipeline"
    assert w.base.dtype == torch.float32
    assert w.base.vae.config.scaling_factor != 0.18215  # measured on the pool
    q = json.loads((tiny_world / "quality.json").read_text())
    for key in ("known_by_name", "a_person", "context_accuracy"):
        assert key in q
    k = q["known_by_name"]
    assert 0 <= k["detection_rate"] <= 1
    if k["own_rank_percentile_mean"] is not None:  # None when no generated face was found
        assert 0 <= k["top1_identification"] <= k["top10_identification"] <= 1
        assert 0 <= k["own_rank_percentile_mean"] <= 1
    refs = w.reference_people()
    assert len(refs) == 2 and all(len(v) == 4 for v in refs.values())
    # Shipped weights are fp16 on disk.
    from safetensors.torch import load_file

    state = load_file(str(tiny_world / "faces" / "recognizer.safetensors"))
    assert next(v for v in state.values() if v.is_floating_point()).dtype == torch.float16


def test_world_models_behind_sameface_interfaces(tiny_world):
    from sameface.faces import FaceAnalyzer
    from sameface.world.render import Context, render
    from sameface.world.world import World

    w = World.load(tiny_world)
    known, _ = w.people
    img = render(known.params[0], Context(), size=w.image_size, rng=np.random.default_rng(0)).image
    faces = w.detector.detect(img)  # an untrained detector may or may not fire; the shape is fixed
    for f in faces:
        assert f.landmarks.shape == (5, 2) and 0 <= f.score <= 1
    assert isinstance(w.analyzer(), FaceAnalyzer)
    emb = w.recognizer.embed(np.zeros((112, 112, 3), np.uint8))
    assert emb.shape == (w.recognizer.dim,) and abs(np.linalg.norm(emb) - 1) < 1e-4
    crops = torch.rand(2, 3, 112, 112, requires_grad=True) * 255
    w.recognizer.torch_module()(crops).sum().backward()  # differentiable for ID losses
    preds = w.context.predict([img])
    assert set(preds[0]) >= {"background", "style", "hat"}
    scores = w.clip.image_embeddings([img])
    assert scores.shape == (1, w.clip.dim)


def test_rerun_skips_finished_stages_and_refuses_other_settings(tiny_world):
    from sameface.errors import SamefaceError

    lines = []
    build_world(tiny_world, BuildConfig.tiny(), progress=False, log=lines.append)
    assert all("done earlier" in line for line in lines)
    other = BuildConfig.tiny()
    other.seed = 1
    with pytest.raises(SamefaceError, match="other build settings"):
        build_world(tiny_world, other, progress=False, log=lambda s: None)
    # A world built by an older version, with a setting this one no longer has, still resumes.
    meta_path = tiny_world / "world.json"
    meta = json.loads(meta_path.read_text())
    meta["build"]["text_lr_mult"] = 0.2
    meta_path.write_text(json.dumps(meta))
    build_world(tiny_world, BuildConfig.tiny(), progress=False, log=lambda s: None)
    assert BuildConfig.from_dict(meta["build"]) == BuildConfig.tiny()


def test_train_loop_resumes_exactly(tmp_path):
    def run(work, stop_at=None):
        torch.manual_seed(0)
        net = torch.nn.Linear(3, 1)
        x = torch.randn(32, 3)

        def loss_fn(rng, step):
            if step == stop_at:  # `kill`: the CLI turns SIGTERM into Ctrl-C's KeyboardInterrupt;
                os.kill(os.getpid(), signal.SIGTERM)  # the loop checkpoints, then re-raises
            rows = rng.integers(0, 32, 4)
            return (net(x[rows]) - 1).pow(2).mean(), {}

        settings = LoopSettings(steps=7, lr=1e-2, warmup=1, checkpoint_every=5, ema=0.9)
        return train_loop("t", work, {"net": net}, loss_fn, settings, seed=0, progress=False)

    straight = run(tmp_path / "a")
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), stop_requests_interrupt():
        run(tmp_path / "b", stop_at=3)
    assert signal.getsignal(signal.SIGTERM) is before
    assert (tmp_path / "b" / "checkpoints" / "t" / "checkpoint-3").is_dir()
    resumed = run(tmp_path / "b")  # continues from the step-3 checkpoint
    for k in ("net", "ema:net"):
        for p, q in zip(straight[k].parameters(), resumed[k].parameters(), strict=False):
            assert torch.equal(p, q)


def test_non_finite_losses_stop_the_stage(tmp_path):
    from sameface.errors import TrainingError

    net = torch.nn.Linear(1, 1)

    def loss_fn(rng, step):
        return net(torch.tensor([[float("nan")]])).sum(), {}

    with pytest.raises(TrainingError, match="not finite"):
        train_loop(
            "nan",
            tmp_path,
            {"net": net},
            loss_fn,
            LoopSettings(steps=10, lr=1e-3),
            seed=0,
            progress=False,
        )


def test_cli_world_build_tiny_and_show(tmp_path, capsys, monkeypatch):
    import torch

    from sameface.cli import main

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # one thread, as the others
    out = tmp_path / "w"
    assert main(["world", "build", "--tiny", "--quiet", "--out", str(out)]) == 0
    assert main(["world", "show", "--world", str(out)]) == 0
    assert "known people" in capsys.readouterr().out
    assert main(["world", "show", "--world", str(tmp_path / "nothing")]) == 1
    assert "sameface world build" in capsys.readouterr().err
