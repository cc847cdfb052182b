"""FeedFace (seed 002) on tiny models: an untrained face-controlnet generates the base model's
images bit for bit, several references concatenate their tokens, the ablation's losses all
train, and the CLI goes from photos to a trained adapter to images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sameface.data.prepare import PrepareSettings, prepare_face_dataset
from sameface.errors import ArtifactError
from sameface.identity import Identity
from sameface.methods import get_method
from sameface.methods.feedface.config import FeedFaceConfig
from sameface.methods.feedface.pipeline import FeedFacePipeline
from sameface.models import save_base_model, tiny_base_model

REPO = Path(__file__).resolve().parents[1]
METHOD = get_method("feedface")


@pytest.fixture(scope="module")
def ident(obama, obama2) -> Identity:
    return Identity.from_images([obama, obama2], square_size=64, mask_method="landmarks")


@pytest.fixture(scope="module")
def data(tmp_path_factory, analyzer):
    out = tmp_path_factory.mktemp("data")
    prepare_face_dataset(
        REPO / "examples" / "faces", out, analyzer, PrepareSettings(resolution=64), progress=False
    )
    return out


def _images(pipe, prompt, **kw):
    out = pipe(
        prompt,
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        **kw,
    )
    return np.asarray(out.images)


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_untrained_controlnet_is_the_base_model(tmp_path, ident, family):
    base = tiny_base_model(family)
    config = FeedFaceConfig(adapter="untrained", clip_vision="tiny-random")
    art = METHOD.personalize(ident, base, config, tmp_path / "art")
    plain = base.as_pipeline()
    want = np.asarray(
        plain(
            "a photo of a person in a garden",
            num_inference_steps=3,
            guidance_scale=6.0,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
            height=64,
            width=64,
        ).images
    )
    procs = dict(base.unet.attn_processors)
    with FeedFacePipeline.from_artifact(art, base) as pipe:
        got = _images(pipe, "a photo of <id> in a garden")
        assert pipe.cond.shape[1] == 2 * (len(pipe.cond[0]) // 2)  # two references concatenated
    np.testing.assert_array_equal(got, want)  # zero-initialised output layers add exactly 0
    assert dict(base.unet.attn_processors) == procs
    assert all(not m._forward_hooks for m in base.unet.modules())


def test_references_concatenate_and_face_scale_zero_is_the_base(tmp_path, ident, obama):
    base = tiny_base_model("sd1")
    config = FeedFaceConfig(adapter="untrained", clip_vision="tiny-random")
    two = METHOD.personalize(ident, base, config, tmp_path / "two")
    one = METHOD.personalize(
        Identity.from_images([obama], square_size=64, mask_method="landmarks"),
        base,
        FeedFaceConfig(adapter=str(two / "untrained-feedface"), clip_vision="tiny-random"),
        tmp_path / "one",
    )
    with FeedFacePipeline.from_artifact(two, base) as p2:
        n2 = p2.cond.shape[1]
        for block in p2.model.controls.blocks.values():  # a "trained" controlnet
            torch.nn.init.normal_(block.out.weight, std=0.2)
        on = _images(p2, "a photo of <id>")
        off = _images(p2, "a photo of <id>", face_scale=0.0)
    with FeedFacePipeline.from_artifact(one, base) as p1:
        assert n2 == 2 * p1.cond.shape[1]
        base_images = _images(p1, "a photo of <id>")  # still untrained here: the base model
    np.testing.assert_array_equal(off, base_images)
    assert np.abs(on - off).max() > 1e-4


@pytest.mark.parametrize("loss", ["regularization", "mask", "standard"])
def test_the_ablations_losses_train(tmp_path, data, loss):
    base = tiny_base_model("sd1")
    config = FeedFaceConfig(
        clip_vision="tiny-random", batch_size=2, steps=2, loss=loss, learning_rate=1e-3, log_every=1
    )
    out = METHOD.train(data, base, config, tmp_path / loss, progress=False)
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(np.isfinite(e["loss"]) for e in log)
    assert not any(m._forward_hooks for m in base.unet.modules())  # given back as it was


def test_adapter_for_another_family_is_refused(tmp_path, ident):
    art = METHOD.personalize(
        ident,
        tiny_base_model("sd1"),
        FeedFaceConfig(adapter="untrained", clip_vision="tiny-random"),
        tmp_path / "art",
    )
    with pytest.raises(ArtifactError, match="sd1 base model"):
        FeedFacePipeline.from_artifact(art, tiny_base_model("sdxl"))


def test_cli_from_photos_to_images(tmp_path, data, obama):
    base = save_base_model(tiny_base_model("sd1"), tmp_path / "base")

    def cli(*args):
        proc = subprocess.run(
            [sys.executable, "-m", "sameface.cli", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=600,
            env=os.environ | {"OMP_NUM_THREADS": "1"},
        )
        assert proc.returncode == 0, proc.stderr[-3000:]

    cli("train", "feedface", "--config", REPO / "configs/feedface/tiny.yaml", "--data", data,
        "--base", base, "--out", tmp_path / "ff", "--device", "cpu")  # fmt: skip
    cli("generate", "a photo of <id> as a chef", "--method", "feedface", "--adapter",
        tmp_path / "ff", "--face", obama, "-n", "1", "--steps", "2", "--face-scale", "0.8",
        "--out", tmp_path / "imgs", "--device", "cpu")  # fmt: skip
    assert (tmp_path / "imgs" / "a-photo-of-id-as-a-chef_0.png").is_file()
