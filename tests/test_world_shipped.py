"""The shipped world: it loads offline, stays small, and still draws known people by name.

These are regression checks on the committed weights (regenerated only on purpose with
`sameface world build`); the full quality figures are in quality.json / docs/proving-ground.md.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sameface.world.world import World, shipped_world_path


@pytest.fixture(scope="module")
def world():
    return World.load(shipped_world_path())


def test_shipped_weights_are_small_and_safe():
    root = shipped_world_path()
    weights = [
        p for p in root.rglob("*") if p.is_file() and p.suffix in (".bin", ".pt", ".pkl", ".ckpt")
    ]
    assert not weights, f"only safetensors may ship: {weights}"
    size = sum(p.stat().st_size for p in root.rglob("*.safetensors"))
    assert size <= 25 * 2**20, f"world weights are {size / 2**20:.1f} MB (budget 25 MB)"
    assert not (root / ".build").exists()


def test_quality_figures_recorded(world):
    q = json.loads((world.folder / "quality.json").read_text())
    k = q["known_by_name"]
    assert k["top1_identification"] > 20 * k["chance_top1"]
    assert q["context_accuracy"]["all_asked_attributes"] > 0.6


def test_known_person_drawn_by_name_is_recognised(world):
    from sameface.world.quality import embed_generated, gallery, generate

    known, _ = world.people
    rng = np.random.default_rng(0)
    people = [0, 1, 2, 3]
    gal = gallery(world, known.params, rng)
    images = generate(
        world.base,
        [f"a photo of {known.names[i]}" for i in people],
        [0] * 4,
        steps=20,
        progress=False,
    )
    embs = embed_generated(world, images)
    assert sum(e is not None for e in embs) >= 3  # the detector finds generated faces
    sims = [float(gal[i] @ e) for i, e in zip(people, embs, strict=False) if e is not None]
    others = [
        float(np.delete(gal @ e, i).max())
        for i, e in zip(people, embs, strict=False)
        if e is not None
    ]
    # Drawn by name, a known person is closer to themselves than to most of the 2000 others.
    assert np.mean(sims) > world.recognizer.same_person_threshold - 0.1
    assert np.mean(sims) > np.mean(others) - 0.15


def test_contexts_asked_for_are_drawn(world):
    from sameface.world.quality import generate

    prompts = [
        "a photo of a person, red background",
        "a sketch of a person, blue background",
        "a painting of a person wearing a hat, green background",
        "a photo of a person wearing glasses, yellow background",
    ]
    preds = world.context.predict(generate(world.base, prompts, [1] * 4, steps=20, progress=False))
    assert (
        sum(
            p["background"] == b
            for p, b in zip(preds, ["red", "blue", "green", "yellow"], strict=False)
        )
        >= 3
    )
