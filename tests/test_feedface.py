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


def test_personalize_cuts_the_view_the_adapter_was_trained_with(tmp_path, ident):
    base = tiny_base_model("sd1")

    def cond(config, name):
        with FeedFacePipeline.from_artifact(
            METHOD.personalize(ident, base, config, tmp_path / name), base
        ) as p:
            return p.cond.clone()

    wide = cond(
        FeedFaceConfig(adapter="untrained", clip_vision="tiny-random", face_expand=1.5), "w"
    )
    folder = str(tmp_path / "w" / "untrained-feedface")
    # The adapter's recorded 1.5 wins over the caller's default 1.1.
    torch.testing.assert_close(
        cond(FeedFaceConfig(adapter=folder, clip_vision="tiny-random"), "a"), wide
    )
    narrow = cond(FeedFaceConfig(adapter="untrained", clip_vision="tiny-random"), "n")
    assert (narrow - wide).abs().max() > 1e-4


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


def _trained_like(model) -> None:
    """Give a FeedFace model's zero-initialised output layers weights, as training would."""
    g = torch.Generator().manual_seed(1)
    for block in model.controls.blocks.values():
        block.out.weight.data = torch.randn(block.out.weight.shape, generator=g) * 0.2


def test_split_guidance_is_the_two_scale_formula(ident):
    from sameface.adapters.control_blocks import SCALE_KEY, TOKENS_KEY
    from sameface.adapters.split_guidance import SplitGuidance
    from sameface.losses.diffusion import cfg_combine_two
    from sameface.methods.feedface.model import FeedFaceModel
    from sameface.models.clip_vision import ClipVision

    base = tiny_base_model("sd1")
    with FeedFaceModel(
        base, FeedFaceConfig(clip_vision="tiny-random"), vision=ClipVision.load("tiny-random")
    ) as model:
        _trained_like(model)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 4, 8, 8, generator=g).repeat(2, 1, 1, 1)
        text = torch.randn(2, 7, model.cross_dim, generator=g)
        face = torch.randn(1, 5, model.cross_dim, generator=g)
        t = torch.tensor(500)

        def unet(xs, hs, tokens):
            kw = {TOKENS_KEY: tokens, SCALE_KEY: 1.0}
            return base.unet(xs, t, hs, cross_attention_kwargs=kw).sample

        eps_u = unet(x[:1], text[:1], torch.zeros_like(face))
        eps_t = unet(x[1:], text[1:], torch.zeros_like(face))
        eps_f = unet(x[1:], text[1:], face)
        w, w_f = 6.0, 2.5
        off = lambda kw: kw | {TOKENS_KEY: torch.zeros_like(kw[TOKENS_KEY])}  # noqa: E731
        with SplitGuidance(base.unet, w_f / w, off):
            both = unet(x, text, torch.cat([torch.zeros_like(face), face]))
        assert not base.unet._forward_hooks  # taken off on exit
        got = both[:1] + w * (both[1:] - both[:1])  # what the diffusers pipeline computes
        want = cfg_combine_two(eps_u, eps_t, eps_f, w, w_f)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_face_guidance_zero_is_text_only_cfg(tmp_path, ident, family):
    base = tiny_base_model(family)
    config = FeedFaceConfig(adapter="untrained", clip_vision="tiny-random")
    art = METHOD.personalize(ident, base, config, tmp_path / "art")
    with FeedFacePipeline.from_artifact(art, base) as pipe:
        _trained_like(pipe.model)
        joint = _images(pipe, "a photo of <id>", guidance_scale=6.0)
        same = _images(pipe, "a photo of <id>", guidance_scale=6.0, face_guidance_scale=6.0)
        split = _images(pipe, "a photo of <id>", guidance_scale=6.0, face_guidance_scale=9.0)
        text_only = _images(pipe, "a photo of <id>", guidance_scale=6.0, face_guidance_scale=0.0)
        pipe.cond = torch.zeros_like(pipe.cond)  # the zero face on both halves: text-only CFG
        want = _images(pipe, "a photo of <id>", guidance_scale=6.0)
        with pytest.raises(ValueError, match="face_guidance_scale needs"):
            _images(pipe, "a photo of <id>", guidance_scale=1.0, face_guidance_scale=2.0)
        with pytest.raises(ValueError, match="face_guidance_scale"):
            _images(pipe, "a photo of <id>", face_guidance_scale=float("nan"))
    np.testing.assert_array_equal(same, joint)  # w_f = w: the paper's joint CFG, no extra pass
    np.testing.assert_allclose(text_only, want, atol=2e-3)
    assert np.abs(split - joint).max() > 1e-3 and np.abs(joint - want).max() > 1e-3


def test_face_squares_of_whole_image_identities(obama_rgb):
    portrait = obama_rgb[:600, 190:790]  # a square portrait with the whole face inside
    kw = {"square_size": 64, "mask_method": "landmarks"}
    whole = Identity.from_images([portrait], square_expand=None, **kw)
    cut = Identity.from_images([portrait], square_expand=1.1, **kw)
    assert whole.face_squares(1.1).shape == cut.squares.shape
    assert cut.face_squares(1.1) is cut.squares
    diff = np.abs(whole.face_squares(1.1).astype(int) - cut.squares.astype(int)).mean()
    # The same face square, cut from a 64 px square instead of the photo (so blurred: the face
    # spans ~25 px of the whole-image square; a 64 -> 24 -> 64 px resize alone differs by ~11).
    assert diff < 16
    assert np.abs(whole.squares.astype(int) - cut.squares.astype(int)).mean() > 3 * diff


def test_prepared_samples_carry_the_face_box(data):
    from sameface.data.prepare import FaceDataset
    from sameface.methods.feedface.train import face_views

    ds = FaceDataset(data)
    sample = ds[0]
    x0, y0, x1, y1 = sample["box"]
    side = sample["crop"].shape[0]
    # The crop is the 1.1x square about the box: the box spans about 1/1.1 of it.
    assert abs(max(x1 - x0, y1 - y0) - side / 1.1) < 3
    with_box = face_views([sample], 1.1)
    without = face_views([sample | {"box": None}], 1.1)
    assert (with_box - without).abs().mean() < 0.05


def test_a_wider_face_view_shows_more_of_the_head(data):
    """`face_expand` (1.1 in the paper) sets the square the CLIP encoder reads in training."""
    from sameface.data.prepare import FaceDataset
    from sameface.faces.align import square_crop
    from sameface.methods.feedface.train import face_views

    sample = FaceDataset(data)[0]
    side = sample["crop"].shape[0]
    wide = face_views([sample], 1.1, 1.5)
    want = square_crop(sample["crop"], tuple(sample["box"]), expand=1.5, size=side)[0]
    torch.testing.assert_close(wide[0], torch.from_numpy(want).permute(2, 0, 1).float() / 255)
    assert (wide - face_views([sample], 1.1)).abs().mean() > 0.01
    # Without a recorded box the crop (cut at 1.1x) is the widest view there is.
    whole = face_views([sample | {"box": None}], 1.1, 1.5)
    torch.testing.assert_close(
        whole[0], torch.from_numpy(sample["crop"]).permute(2, 0, 1).float() / 255
    )
    # A batch mixing samples without and with a box: each gets its own view.
    mixed = face_views([sample | {"box": None}, sample, sample | {"box": None}], 1.1, 1.5)
    torch.testing.assert_close(mixed[0], whole[0])
    torch.testing.assert_close(mixed[1], wide[0])
    torch.testing.assert_close(mixed[2], whole[0])
    with pytest.raises(ValueError, match="face_expand"):
        FeedFaceConfig(face_expand=0.5)


def test_all_zero_face_masks_are_refused(tmp_path, data):
    import shutil

    from sameface.errors import SamefaceError

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    first = sorted((copy / "masks").iterdir())[0]
    from PIL import Image

    Image.fromarray(np.zeros((64, 64), np.uint8)).save(first)
    config = FeedFaceConfig(clip_vision="tiny-random", batch_size=1, steps=1)
    with pytest.raises(SamefaceError, match="all-zero face mask"):
        METHOD.train(copy, tiny_base_model("sd1"), config, tmp_path / "out", progress=False)
    # The standard loss reads no mask: it trains.
    config = FeedFaceConfig(clip_vision="tiny-random", batch_size=1, steps=1, loss="standard")
    METHOD.train(copy, tiny_base_model("sd1"), config, tmp_path / "std", progress=False)


def test_cli_reference_without_a_face_is_a_clear_error(tmp_path, data):
    from PIL import Image

    base = save_base_model(tiny_base_model("sd1"), tmp_path / "base")
    ff = METHOD.train(
        data, tiny_base_model("sd1"), FeedFaceConfig(clip_vision="tiny-random", batch_size=1, steps=1),
        tmp_path / "ff", progress=False,
    )  # fmt: skip
    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((128, 128, 3), 200, np.uint8)).save(blank)
    proc = subprocess.run(
        [sys.executable, "-m", "sameface.cli", "generate", "a photo of <id>", "--method",
         "feedface", "--adapter", str(ff), "--base", str(base), "--face", str(blank),
         "--out", str(tmp_path / "imgs"), "--device", "cpu"],
        capture_output=True, text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode != 0
    assert "no face" in proc.stderr.lower() and "Traceback" not in proc.stderr
    assert not (tmp_path / "imgs").exists() or not list((tmp_path / "imgs").glob("*.png"))


def test_two_processes_train_together(tmp_path, data):
    from tests.conftest import train_with_two_processes

    base = save_base_model(tiny_base_model("sd1"), tmp_path / "base")
    proc = train_with_two_processes("feedface", data, base, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((tmp_path / "out" / "feedface.json").read_text())
    assert meta["trained"]["steps"] == 4
    log = [json.loads(x) for x in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3, 4]  # one log, written by the main process
