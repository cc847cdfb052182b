"""PuLID in the proving-ground world (tiny world): rendered training data in `sameface data
prepare`'s format, stages 1, 2 and 3 with the world's recogniser / detector / CLIP, the adapter
in WORLD/pulid, personalise + generate through the normal PuLID API, the world ID loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sameface.errors import SamefaceError
from sameface.methods.pulid import ClipVision, PuLIDConfig
from sameface.methods.pulid.world import (
    DEFAULT_STAGES,
    PRESET,
    train_world_pulid,
    train_world_pulid_ablation,
    world_pulid_adapter,
)
from sameface.world.recipes import anonymous_identities
from sameface.world.recipes import render_face_dataset as prepare_world_pulid_data
from tests.world_helpers import TruthDetector

REPO = Path(__file__).resolve().parents[1]
TINY = {"vit_layers": [1, 2], "batch_size": 2, "checkpoint_every": 1, "log_every": 1}
"""The preset, fitted to the tiny world (its CLIP vision has 2 layers)."""


@pytest.fixture(scope="module")
def world(tiny_world):
    return tiny_world


def _train_tiny(world, work, log):
    """Every default stage, two steps each, on 6 rendered portraits."""
    return train_world_pulid(
        world.folder,
        work,
        DEFAULT_STAGES,
        False,
        n_images=6,
        overrides=TINY,
        stage_overrides={1: {"steps": 2}, 2: {"steps": 2}, 3: {"steps": 2}},
        log=log,
    )


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    """Stages 1, 2 and 3 (the default), two steps each: (work folder, WORLD/pulid)."""
    work = tmp_path_factory.mktemp("pulid")
    adapter = _train_tiny(world, work, lambda s: None)
    return work, adapter


def _renders(world, n, seed=0):
    from sameface.world.render import Context, render

    _, new = world.people
    rng = np.random.default_rng(seed)
    return [
        render(new.params[0], Context.random(rng, style="photo"), size=world.image_size, rng=rng)
        for _ in range(n)
    ]


def test_dataset_is_what_data_prepare_writes(world, tmp_path):
    from sameface.data.prepare import FaceDataset

    summary = prepare_world_pulid_data(world, tmp_path / "d", 4, seed=3, progress=False)
    assert summary["samples"] == 4 and summary["recognizer"]["name"] == "world"
    data = FaceDataset(tmp_path / "d")
    s = data[0]
    size = world.image_size
    assert s["crop"].shape == (size, size, 3) and s["aligned"].shape == (112, 112, 3)
    assert s["mask"].shape == (size, size) and set(np.unique(s["mask"])) <= {0, 255}
    assert s["mask"].any() and s["landmarks"].shape == (5, 2)
    assert s["embedding"].shape == (world.recognizer.dim,)
    assert np.allclose(s["embedding"], world.recognizer.embed(s["aligned"]), atol=1e-5)
    assert all("of a person" in data[i]["caption"] for i in range(4))
    # Resumable: a larger count adds samples, the first ones stay as they were.
    prepare_world_pulid_data(world, tmp_path / "d", 6, seed=3, progress=False)
    again = FaceDataset(tmp_path / "d")
    assert len(again) == 6 and np.array_equal(again[0]["crop"], s["crop"])
    with pytest.raises(SamefaceError, match="rendered from"):
        prepare_world_pulid_data(world, tmp_path / "d", 6, seed=4, progress=False)


def test_training_people_are_nobody_in_the_world(world):
    from sameface.world.people import MIN_IDENTITY_DISTANCE

    known, new = world.people
    people = anonymous_identities(world, 50, np.random.default_rng(0))
    others = np.concatenate([known.params, new.params])
    dist = np.linalg.norm(people[:, None] - others[None], axis=-1)
    assert dist.min() >= MIN_IDENTITY_DISTANCE - 1e-6


def test_config_reads_the_worlds_recogniser(world):
    from sameface.faces.id_loss import id_loss_models
    from sameface.world.faces import WorldDetector

    cfg = PuLIDConfig(recognizer="world", world=str(world.folder))
    assert cfg.recognizer_dim == world.recognizer.dim == 16  # the tiny world's width
    assert PuLIDConfig.from_dict(cfg.to_dict()).world == str(world.folder)
    rec, det = id_loss_models(cfg)
    assert isinstance(det, WorldDetector)
    assert rec(torch.zeros(1, 3, 112, 112)).shape == (1, 16)
    with pytest.raises(SamefaceError, match="differentiable"):
        id_loss_models(PuLIDConfig(recognizer="dlib"))
    # The world's CLIP is stored in fp16; PuLID reads it in float32.
    assert ClipVision.load(world.folder / "clip").dtype == torch.float32


def test_world_yaml_is_the_preset():
    assert yaml.safe_load((REPO / "configs" / "pulid" / "world.yaml").read_text()) == dict(PRESET)


def test_three_stages_train_with_the_world_models(trained, world):
    work, adapter = trained
    assert adapter == world.folder / "pulid" == world_pulid_adapter(world.folder)
    for stage in DEFAULT_STAGES:
        meta = json.loads((work / f"stage{stage}" / "pulid.json").read_text())
        assert meta["trained"] == meta["trained"] | {"stage": stage, "steps": 2}
        assert meta["recognizer"] == {"name": "world", "dim": 16}
    log = [json.loads(x) for x in (work / "stage2" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all("id" in e and np.isfinite(e["loss"]) for e in log)
    log = [json.loads(x) for x in (work / "stage3" / "train_log.jsonl").read_text().splitlines()]
    assert all("align" in e and "id" in e and np.isfinite(e["loss"]) for e in log)
    meta = json.loads((adapter / "pulid.json").read_text())
    assert meta["clip_vision"]["name"] == "../clip" and meta["base"] == "../base"
    assert set(json.loads((work / "timings.json").read_text())) == {"stage1", "stage2", "stage3"}
    # A rerun finds every stage done and trains nothing.
    lines = []
    _train_tiny(world, work, lines.append)
    assert sum("done earlier" in line for line in lines) == 3


def test_personalize_and_generate_with_the_world_adapter(trained, world, tmp_path):
    from sameface.faces import FaceAnalyzer
    from sameface.identity import Identity
    from sameface.methods.pulid import PuLIDPipeline, personalize

    renders = _renders(world, 2)
    analyzer = FaceAnalyzer(world.recognizer, detector=TruthDetector(renders), min_face_size=1)
    identity = Identity.from_images([r.image for r in renders], analyzer=analyzer)
    assert identity.meta["recognizer"]["name"] == "world"
    _, adapter = trained
    out = personalize(identity, world.base, PuLIDConfig(), tmp_path / "a", adapter=adapter)
    meta = json.loads((out / "artifact.json").read_text())
    assert meta["recognizer"]["name"] == "world" and meta["num_tokens"] == PRESET["num_tokens"]
    with PuLIDPipeline.from_artifact(out, world.base) as pipe:
        images = pipe(
            "a photo of <id>",
            num_inference_steps=2,
            output_type="np",
            generator=torch.Generator().manual_seed(0),
        ).images
    assert np.asarray(images[0]).shape == (world.image_size, world.image_size, 3)


def test_train_refuses_data_of_another_recogniser(trained):
    from sameface.methods.pulid.train import train

    work, _ = trained
    with pytest.raises(SamefaceError, match="world embeddings"):
        train(work / "data", None, PuLIDConfig(recognizer="sface"), work / "x", vision=None)


def test_face_id_loss_with_the_world_models(world):
    from sameface.faces.id_loss import id_loss_models
    from sameface.losses import face_id_loss

    rec, det = id_loss_models(PuLIDConfig(recognizer="world", world=str(world.folder)))
    renders = _renders(world, 2, seed=1)
    pixels = torch.tensor(np.stack([r.image for r in renders])).permute(0, 3, 1, 2).float()
    images = (pixels / 127.5 - 1).requires_grad_(True)
    ref = torch.tensor(
        np.stack(
            [
                world.recognizer.embed_face(r.image, f)
                for r, (_, f) in zip(renders, TruthDetector(renders).faces, strict=True)
            ]
        )
    )
    loss, found = face_id_loss(images, ref.roll(1, 0), rec, TruthDetector(renders))
    assert found.all() and torch.isfinite(loss)
    loss.backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    loss, _ = face_id_loss(images.detach(), ref, rec, det)  # the world's own detector
    assert torch.isfinite(loss)


def test_cli_world_pulid(world, trained, capsys):
    from sameface.cli import main

    work, _ = trained
    args = [
        "world",
        "pulid",
        "--world",
        str(world.folder),
        "--work",
        str(work),
        "--images",
        "6",
        "--steps",
        "1=2",
        "--steps",
        "2=2",
        "--steps",
        "3=2",
        "--quiet",
    ]
    for k, v in TINY.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    assert main(args) == 0  # every stage done: only publishes again
    assert "--adapter" in capsys.readouterr().out
    assert main(["world", "pulid", "--world", str(world.folder), "--steps", "one"]) == 1


def test_the_ablation_adds_the_naive_row_and_reuses_the_recipes_stages(world, trained):
    """PuLID's ablation rows: the plain recipe's three stage folders are reused (not trained
    again), the naive-ID row is stage 2 from stage 1 with the one-step ID loss, and the
    world's own adapter is left as it is."""
    import hashlib

    def digests():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in adapter.iterdir()}

    work, adapter = trained
    before = digests()
    messages = []
    rows = train_world_pulid_ablation(
        world.folder,
        work,
        False,
        n_images=6,
        overrides=TINY,
        stage_overrides={1: {"steps": 2}, 2: {"steps": 2}, 3: {"steps": 2}},
        log=messages.append,
    )
    assert list(rows) == [
        "diffusion-only", "naive-id", "accurate-id", "alignment", "accurate-id-longer"
    ]  # fmt: skip
    names = [rows[r].name for r in rows]
    assert names == ["stage1", "stage2-naive", "stage2", "stage3", "stage2-longer"]
    longer = json.loads((rows["accurate-id-longer"] / "pulid.json").read_text())["trained"]
    assert (longer["stage"], longer["steps"]) == (2, 2 + 2)  # stage 2's and stage 3's steps
    assert sum("done earlier" in m for m in messages) == 3
    naive = json.loads((rows["naive-id"] / "pulid.json").read_text())
    assert naive["config"]["id_loss_branch"] == "one-step" and naive["trained"]["stage"] == 2
    log = (rows["naive-id"] / "train_log.jsonl").read_text().splitlines()
    assert all("id" in json.loads(line) for line in log)
    assert digests() == before
