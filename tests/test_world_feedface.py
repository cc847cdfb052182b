"""FeedFace in the proving-ground world (tiny world): rendered data with face boxes, training
with the world's CLIP, the adapter published into WORLD/feedface (int8 rows, paths relative),
a rerun that trains nothing, personalise + generate through the normal API, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sameface.errors import SamefaceError
from sameface.methods.feedface.world import (
    PRESET,
    train_world_feedface,
    world_feedface_adapter,
)
from tests.world_helpers import new_person_identity, one_image

REPO = Path(__file__).resolve().parents[1]
TINY = {"batch_size": 2, "steps": 2, "checkpoint_every": 1, "log_every": 1}


@pytest.fixture(scope="module")
def trained(tiny_world, tmp_path_factory):
    """Two steps on 6 rendered portraits: (work folder, WORLD/feedface)."""
    work = tmp_path_factory.mktemp("feedface")
    adapter = train_world_feedface(
        tiny_world.folder, work, False, n_images=6, overrides=TINY, log=lambda s: None
    )
    return work, adapter


def test_world_yaml_is_the_preset():
    assert yaml.safe_load((REPO / "configs" / "feedface" / "world.yaml").read_text()) == dict(
        PRESET
    )


def test_rendered_samples_carry_their_face_box(trained, tiny_world):
    from sameface.data.prepare import FaceDataset
    from sameface.methods.feedface.train import face_views

    work, _ = trained
    data = FaceDataset(work / "data")
    sample = data[0]
    # the loss mask is the face with its facial hair, as the renderer drew it (DATA_MASK)
    from sameface.world.recipes import anonymous_identities
    from sameface.world.render import Context, render

    meta = json.loads((work / "data" / "prepare.json").read_text())
    assert meta["world_source"]["mask"] == "face"
    person = anonymous_identities(tiny_world, 6, np.random.default_rng([0, 0]))[0]
    rng = np.random.default_rng([0, 1, 0])
    r = render(person, Context.random(rng), size=sample["mask"].shape[0], rng=rng)
    assert np.array_equal(sample["mask"] >= 128, r.face_mask >= 0.5)
    x0, y0, x1, y1 = sample["box"]
    ys, xs = np.nonzero(sample["mask"])
    # The face mask lies about the box the renderer drew the face in.
    assert x0 - 2 <= xs.mean() <= x1 + 2 and y0 - 2 <= ys.mean() <= y1 + 2
    views = face_views([sample], 1.1)
    side = sample["crop"].shape[0]
    assert views.shape == (1, 3, side, side)
    # The face view is the face, zoomed: not the whole portrait.
    whole = torch.from_numpy(sample["crop"]).permute(2, 0, 1).float() / 255
    assert (views[0] - whole).abs().mean() > 0.02


def test_trained_and_published_into_the_world(trained, tiny_world):
    from safetensors import safe_open

    work, adapter = trained
    assert adapter == tiny_world.folder / "feedface" == world_feedface_adapter(tiny_world.folder)
    meta = json.loads((adapter / "feedface.json").read_text())
    assert meta["base"] == "../base" and meta["clip_vision"]["name"] == "../clip"
    assert meta["trained"]["steps"] == 2 and meta["config"]["loss"] == "regularization"
    with safe_open(str(adapter / "feedface.safetensors"), "pt") as f:
        dtypes = {k: f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118
    assert {d for k, d in dtypes.items() if "weight" in k and not k.endswith("int8_scale")} >= {
        torch.int8
    }  # matrices as int8 rows; `FeedFaceModel.load` reads them back (tests below generate)
    log = [json.loads(x) for x in (work / "train" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(np.isfinite(e["loss"]) for e in log)
    lines: list[str] = []
    train_world_feedface(
        tiny_world.folder, work, False, n_images=6, overrides=TINY, log=lines.append
    )
    assert any("done earlier" in line for line in lines)
    with pytest.raises(SamefaceError, match="2-step run, more than the 1 asked"):
        train_world_feedface(tiny_world.folder, work, False, n_images=6,
                             overrides=TINY | {"steps": 1}, publish=False)  # fmt: skip


def test_personalize_and_generate_with_the_world_adapter(trained, tiny_world, tmp_path):
    from sameface.methods.feedface import FeedFaceConfig, personalize
    from sameface.methods.feedface.pipeline import FeedFacePipeline

    identity = new_person_identity(tiny_world)
    _, adapter = trained
    out = personalize(identity, tiny_world.base, FeedFaceConfig(adapter=str(adapter)), tmp_path)
    with FeedFacePipeline.from_artifact(out, tiny_world.base) as pipe:
        image = one_image(pipe)
    assert image.shape == (tiny_world.image_size, tiny_world.image_size, 3)


def test_world_bench_offers_feedface_once_trained(trained, tiny_world):
    from sameface.eval.world_bench import unavailable_reason, world_method_settings

    assert unavailable_reason(tiny_world, "feedface") is None
    settings = world_method_settings(tiny_world, ["feedface"])
    assert settings == {"feedface": {"adapter": str(tiny_world.folder / "feedface")}}


def test_cli_world_feedface(trained, tiny_world, capsys):
    from sameface.cli import main

    work, _ = trained
    args = ["world", "feedface", "--world", str(tiny_world.folder), "--work", str(work),
            "--images", "6", "--quiet", "--no-publish"]  # fmt: skip
    for k, v in TINY.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    assert main(args) == 0
    assert "adapter written to" in capsys.readouterr().out


def test_an_ablation_loss_does_not_replace_the_worlds_adapter(trained, tiny_world):

    work, adapter = trained
    before = (adapter / "feedface.safetensors").read_bytes()
    with pytest.raises(SamefaceError, match="--no-publish"):
        train_world_feedface(
            tiny_world.folder, work, False, n_images=6, overrides=TINY | {"loss": "mask"}
        )
    assert (adapter / "feedface.safetensors").read_bytes() == before


def test_a_run_saved_before_a_new_setting_is_still_finished(trained, tiny_world):
    """A finished run whose record predates `face_expand` trained with its default: not redone."""
    work, _ = trained
    meta_file = work / "train" / "feedface.json"
    original = meta_file.read_text()
    meta = json.loads(original)
    del meta["config"]["face_expand"]
    meta_file.write_text(json.dumps(meta))
    try:
        said = []
        train_world_feedface(
            tiny_world.folder,
            work,
            False,
            n_images=6,
            overrides=TINY,
            publish=False,
            log=said.append,
        )
        assert any("done earlier" in line for line in said)
    finally:
        meta_file.write_text(original)
