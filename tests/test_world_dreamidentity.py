"""DreamIdentity in the proving-ground world (tiny world): reconstruction portraits, the
self-augmented set drawn from the world's known people, training on the world's recogniser,
the encoder published into WORLD/dreamidentity (paths relative), a rerun that trains nothing,
personalise + generate through the normal API, the bench, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sameface.errors import SamefaceError
from sameface.methods.dreamidentity.world import (
    PRESET,
    train_world_dreamidentity,
    world_edit_templates,
)
from tests.world_helpers import CentreDetector, new_person_identity, one_image

REPO = Path(__file__).resolve().parents[1]
TINY = {"batch_size": 2, "steps": 2, "checkpoint_every": 1, "log_every": 1}


@pytest.fixture(scope="module")
def trained(tiny_world, tmp_path_factory):
    """Two steps on 6 portraits and 3 known people's triplets: (work folder, WORLD/dreamidentity)."""
    from sameface.faces import FaceAnalyzer

    work = tmp_path_factory.mktemp("dreamidentity")
    analyzer = FaceAnalyzer(tiny_world.recognizer, detector=CentreDetector(), min_face_size=1)
    encoder = train_world_dreamidentity(
        tiny_world.folder, work, False, n_images=6, n_names=3, overrides=TINY,
        log=lambda s: None, analyzer=analyzer,
    )  # fmt: skip
    return work, encoder


def test_world_yaml_is_the_preset():
    path = REPO / "configs" / "dreamidentity" / "world.yaml"
    assert yaml.safe_load(path.read_text()) == dict(PRESET)


def test_edit_templates_speak_the_worlds_grammar():
    from sameface.world.captions import parse_caption

    templates = world_edit_templates(16)
    assert len(set(templates)) == 16 and all("{name}" in t for t in templates)
    subjects = {parse_caption(t.format(name="Ann Bee"), ["Ann Bee"])[0] for t in templates}
    assert subjects == {"Ann Bee"}


def test_trained_and_published_into_the_world(trained, tiny_world):
    work, encoder = trained
    assert encoder == tiny_world.folder / "dreamidentity"
    meta = json.loads((encoder / "dreamidentity.json").read_text())
    assert meta["base"] == "../base" and meta["config"]["backbone"] == "world:../"
    assert meta["trained"]["steps"] == 2 and meta["trained"]["triplets"] >= 1
    assert meta["trained"]["augmented"] == "augmented"  # no local work path in the world
    summary = json.loads((work / "augmented" / "augment.json").read_text())
    assert (
        summary["settings"]["recognizer"] == "world"
    )  # scored by the world's recogniser, not the judge
    lines: list[str] = []
    train_world_dreamidentity(
        tiny_world.folder, work, False, n_images=6, n_names=3, overrides=TINY, log=lines.append
    )
    assert any("done earlier" in line for line in lines)


def test_personalize_and_generate_with_the_world_encoder(trained, tiny_world, tmp_path):
    from sameface.methods.dreamidentity import DreamIdentityConfig, personalize
    from sameface.methods.dreamidentity.pipeline import DreamIdentityPipeline

    identity = new_person_identity(tiny_world)
    _, encoder = trained
    out = personalize(
        identity, tiny_world.base, DreamIdentityConfig(adapter=str(encoder)), tmp_path
    )
    with DreamIdentityPipeline.from_artifact(out, tiny_world.base) as pipe:
        image = one_image(pipe)
    assert image.shape == (tiny_world.image_size, tiny_world.image_size, 3)


def test_world_bench_offers_dreamidentity_once_trained(trained, tiny_world):
    from sameface.eval.world_bench import unavailable_reason, world_method_settings

    assert unavailable_reason(tiny_world, "dreamidentity") is None
    settings = world_method_settings(tiny_world, ["dreamidentity"])
    assert settings == {"dreamidentity": {"adapter": str(tiny_world.folder / "dreamidentity")}}


def test_ablations_do_not_replace_the_worlds_encoder(trained, tiny_world, capsys):
    from sameface.cli import main

    work, encoder = trained
    before = (encoder / "dreamidentity.safetensors").read_bytes()
    with pytest.raises(SamefaceError, match="--no-publish"):
        train_world_dreamidentity(
            tiny_world.folder, work, False, n_images=6, n_names=3, augmented=False, overrides=TINY
        )
    args = ["world", "dreamidentity", "--world", str(tiny_world.folder), "--work", str(work),
            "--images", "6", "--names", "3", "--quiet", "--no-publish", "--set", "scales=last"]  # fmt: skip
    for k, v in TINY.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    assert main(args) == 0
    assert "encoder written to" in capsys.readouterr().out and (work / "train-last").is_dir()
    assert (encoder / "dreamidentity.safetensors").read_bytes() == before
