"""benchmarks/world_dev_people.py: the development suites load, and hold no world person."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from sameface.world.world import World, shipped_world_path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "world_dev_people.py"


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("world_dev_people", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path_factory.mktemp("dev")
    argv = sys.argv
    sys.argv = [str(SCRIPT), "--out", str(out), "--people", "3", "--prompts", "2"]
    try:
        mod.main()
    finally:
        sys.argv = argv
    return out


def test_the_suites_load_with_fresh_people_and_other_seeds(dev):
    from sameface.eval.suite import load_suite

    one, four = (load_suite(dev / f"world-dev-{k}ref.yaml") for k in (1, 4))
    assert [i.name for i in one.identities] == [i.name for i in four.identities]
    assert len(one.identities) == 3 and len(one.prompts) == 2
    assert len(four.identities[0].photos) == 4
    assert not {100, 101} - set(one.seeds)
    world = World.load(shipped_world_path())
    taken = set(world.reference_people())
    assert not taken & {i.name for i in one.identities}


def test_the_style_suite_gives_each_person_a_reference_of_someone_else(dev):
    """Each dev person's style reference shows another person (the world recogniser tells
    them apart), drawn in the context its words describe."""
    from sameface.eval.style import uses_style
    from sameface.eval.suite import load_suite
    from sameface.world.captions import parse_caption

    suite = load_suite(dev / "world-dev-style.yaml")
    assert uses_style(suite.prompts)
    world = World.load(shipped_world_path())
    analyzer = world.analyzer()
    threshold = world.recognizer.same_person_threshold
    for ident in suite.identities:
        assert ident.style is not None and ident.style.image.is_file()
        _, attrs = parse_caption(ident.style.prompt.replace("<id>", "a person"))
        assert attrs, ident.style.prompt
        person = analyzer.analyze(ident.photos[0], strict=True)
        ref = analyzer.analyze(ident.style.image, strict=True)
        sim = float(np.dot(person.embedding, ref.embedding))
        assert sim < threshold, (ident.name, sim)
