"""The contract every registered method keeps (DESIGN convention 12), on tiny models:
personalise -> artifact -> load -> generate (shape, dtype, determinism), and a few-step run
that checkpoints and resumes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sameface.errors import TrainingError
from sameface.identity import Identity
from sameface.methods import GenerationOutput, artifact_method, available_methods, get_method
from sameface.models import tiny_base_model

# Few-step settings per method, so the matrix stays fast.
FAST = {
    # An untrained (zero projections) M² encoder on a tiny random ViT backbone.
    "dreamidentity": {
        "adapter": "untrained",
        "backbone": "tiny-vit",
        "feature_layers": (1, 2, 3, 4),
    },
    # An untrained (freshly initialised) FeedFace on the tiny random CLIP vision model.
    "feedface": {"adapter": "untrained", "clip_vision": "tiny-random"},
    # An untrained IP-Adapter-FaceID on the identities' SFace embeddings, a small LoRA.
    "ip-adapter-faceid": {"adapter": "untrained", "recognizer": "sface", "lora_rank": 4},
    # Two steps per phase; no style reference (optional: tested in test_magicapture).
    "magicapture": {"ti_steps": 2, "lora_steps": 2, "checkpoint_every": 1, "id_weight": 0.0},
    "textual-inversion": {"steps": 4, "checkpoint_every": 2, "init": "face"},
    # An untrained (freshly initialised) small PuLID: encoder methods only encode here.
    "pulid": {
        "adapter": "untrained",
        "clip_vision": "tiny-random",
        "vit_layers": [1, 2, 4],
        "encoder_dim": 32,
        "heads": 2,
        "dim_head": 16,
        "mlp_dim": 32,
        "depth_per_layer": 1,
        "num_tokens": 4,
        "num_id_tokens": 2,
    },
}
# One invalid setting per method: its config must refuse it with a ValueError.
INVALID = {
    "dreamidentity": {"scales": "both"},
    "feedface": {"loss": "l1"},
    "ip-adapter-faceid": {"lora_targets": "everything"},
    "magicapture": {"lora_targets": "everything"},
    "textual-inversion": {"steps": 0},
    "pulid": {"stage": 0},
}


@pytest.fixture(scope="module")
def ident(obama, obama2) -> Identity:
    return Identity.from_images([obama, obama2], square_size=64, mask_method="landmarks")


def test_every_method_has_fast_settings():
    assert sorted(FAST) == sorted(INVALID) == available_methods()


@pytest.fixture(params=available_methods())
def method(request):
    return get_method(request.param)


def _config(method, **kw):
    return method.config_cls(**(FAST[method.name] | kw))


def test_spec_is_complete(method):
    assert method.kind in ("optimisation", "encoder")
    assert dataclasses.is_dataclass(method.config_cls) and method.paper
    if method.kind == "encoder":
        assert method.train is not None
    with pytest.raises(ValueError):
        method.config_cls(**INVALID[method.name])
    method.config_cls()  # the defaults are valid


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_personalize_save_load_generate(tmp_path, method, ident, family):
    base = tiny_base_model(family)
    out = method.personalize(ident, base, _config(method), tmp_path / "art", progress=False)
    assert artifact_method(out) == method.name
    assert Identity.load(out / "identity").num_photos == ident.num_photos

    def generate(seed):
        with method.pipeline_cls.from_artifact(out, base) as pipe:
            return pipe(
                "a photo of <id> in a garden",
                num_inference_steps=2,
                generator=torch.Generator().manual_seed(seed),
                num_images_per_prompt=2,
                output_type="np",
            )

    a, b, c = generate(0), generate(0), generate(1)
    assert (
        isinstance(a, GenerationOutput)
        and len(a.images) == 2
        and a.prompts == ["a photo of <id> in a garden"] * 2
    )
    img = np.asarray(a.images)
    assert img.shape == (2, 64, 64, 3) and img.dtype == np.float32 and np.isfinite(img).all()
    np.testing.assert_array_equal(img, np.asarray(b.images))  # same seed, same images
    assert np.abs(img - np.asarray(c.images)).max() > 1e-4  # another seed, other images


def test_interrupted_personalisation_resumes(tmp_path, method, ident, monkeypatch):
    if method.kind == "encoder":
        pytest.skip(
            "encoder methods only encode in personalize; their training resume is tested apart"
        )
    import sameface.losses.diffusion as diff

    real = diff.l_simple
    calls = {"n": 0}

    def stop_at_third(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    module = __import__(method.personalize.__module__, fromlist=["l_simple"])
    monkeypatch.setattr(module, "l_simple", stop_at_third)
    with pytest.raises(TrainingError, match="interrupted"):
        method.personalize(ident, tiny_base_model("sd1"), _config(method), tmp_path, progress=False)
    assert list((tmp_path / "checkpoints").iterdir())
    monkeypatch.setattr(module, "l_simple", real)
    method.personalize(ident, tiny_base_model("sd1"), _config(method), tmp_path, progress=False)
    assert artifact_method(tmp_path) == method.name


# Few-step training per encoder method: config settings, and what its `train` takes beside
# (data, base, config, out_dir).
def _pulid_train_kwargs() -> dict:
    from sameface.methods.pulid import tiny_clip_vision

    return {"vision": tiny_clip_vision()}


TRAIN = {
    "dreamidentity": (
        FAST["dreamidentity"] | {"batch_size": 2, "steps": 4, "checkpoint_every": 3},
        dict,
    ),
    "feedface": (
        {"clip_vision": "tiny-random", "batch_size": 2, "steps": 4, "checkpoint_every": 3},
        dict,
    ),
    "ip-adapter-faceid": (
        FAST["ip-adapter-faceid"] | {"batch_size": 2, "steps": 4, "checkpoint_every": 3},
        dict,
    ),
    "pulid": (
        FAST["pulid"] | {"batch_size": 2, "steps": 4, "checkpoint_every": 3},
        _pulid_train_kwargs,
    ),
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, analyzer):
    from pathlib import Path

    from sameface.data.prepare import PrepareSettings, prepare_face_dataset

    out = tmp_path_factory.mktemp("dataset")
    faces = Path(__file__).resolve().parents[1] / "examples" / "faces"
    prepare_face_dataset(faces, out, analyzer, PrepareSettings(resolution=64), progress=False)
    return out


def test_every_encoder_method_has_fast_training():
    encoders = [m for m in available_methods() if get_method(m).train is not None]
    assert sorted(TRAIN) == encoders


def test_interrupted_training_resumes_exactly(tmp_path, method, dataset, monkeypatch):
    """An encoder's `train`, stopped after step 2 of 4 and run again, writes the same weights."""
    if method.train is None:
        pytest.skip("optimisation methods train in personalize (tested above)")
    from safetensors.torch import load_file

    from sameface.training import TrainingRun

    settings, extra = TRAIN[method.name]

    def train(out):
        config = method.config_cls(**settings)
        return method.train(dataset, tiny_base_model("sd1"), config, out, progress=False, **extra())

    straight = train(tmp_path / "straight")
    real = TrainingRun._after_step

    def stop_after_second(run, phase, entry):
        real(run, phase, entry)
        if run.global_step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainingRun, "_after_step", stop_after_second)
    with pytest.raises(TrainingError, match="interrupted at step 2/4"):
        train(tmp_path / "resumed")
    monkeypatch.undo()
    resumed = train(tmp_path / "resumed")
    files = sorted(p.name for p in straight.glob("*.safetensors"))
    assert files and files == sorted(p.name for p in resumed.glob("*.safetensors"))
    for name in files:
        a, b = load_file(str(straight / name)), load_file(str(resumed / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
