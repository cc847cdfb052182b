"""Evaluation harness: metrics behave, suites load, a run completes, resumes and shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sameface.errors import SamefaceError
from sameface.eval.metrics import (
    aggregate_score,
    mean_pairwise,
    neutral_prompt,
    normalise,
    score_face,
)
from sameface.eval.runner import (
    BenchSettings,
    Evaluator,
    merge_results,
    read_results,
    record_key,
    run_benchmark,
)
from sameface.eval.suite import load_suite
from sameface.imageio import load_image
from sameface.models import tiny_base_model
from sameface.models.clip import tiny_clip
from tests.conftest import two_process_launcher

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "benchmarks" / "suites" / "smoke.yaml"


def test_pure_metrics():
    assert aggregate_score(0.3, 0.5) == pytest.approx(1.3 * 1.5)  # seed 001 eq. 4
    assert (
        normalise(0.5, 0.0, 1.0) == 0.5
        and normalise(0.2, 0.2, 0.2) is None
        and normalise(None, 0, 1) is None
    )
    assert normalise(0.1, 0.3, 0.8) == pytest.approx(-0.4)  # below the floor stays visible
    # A range narrower than MIN_NORM_RANGE, or inverted, has no meaningful scale.
    assert normalise(0.5, 0.3, 0.305) is None and normalise(0.5, 0.8, 0.3) is None
    e = np.eye(3, dtype=np.float32)
    assert mean_pairwise(e) == 0.0 and mean_pairwise(e[:1]) is None
    assert mean_pairwise(np.stack([e[0], e[0]])) == pytest.approx(1.0)
    assert neutral_prompt("an oil painting of <id>") == "an oil painting of a person"


def test_face_similarity_same_different_and_miss(analyzer, obama, obama2, biden):
    ref = analyzer.analyze(obama, strict=True).embedding
    same = score_face(analyzer, load_image(obama), ref)
    assert same.detected and same.similarity == pytest.approx(1.0, abs=1e-4)
    assert same.crop.shape == (224, 224, 3)
    assert score_face(analyzer, load_image(obama2), ref).similarity > 0.5
    assert score_face(analyzer, load_image(biden), ref).similarity < 0.35
    miss = score_face(analyzer, np.full((128, 128, 3), 127, np.uint8), ref)
    assert not miss.detected and miss.similarity is None and miss.with_misses == 0.0


def test_clip_identical_images_score_one():
    clip = tiny_clip()
    img = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    a, b = clip.image_embeddings([img, img.copy()])
    assert float(a @ b) == pytest.approx(1.0, abs=1e-5)
    t = clip.text_embeddings(["a photo of a person"])
    assert t.shape == (1, clip.dim) and np.linalg.norm(t) == pytest.approx(1.0, abs=1e-5)


def test_suites_load_and_validate(tmp_path):
    s = load_suite(SMOKE)
    assert [i.name for i in s.identities] == ["obama", "biden"] and len(s.identities[0].photos) == 2
    for name in ("pulid", "seed001"):
        text = (REPO / "benchmarks" / "suites" / f"{name}.yaml").read_text()
        (tmp_path / f"{name}.yaml").write_text(text)
        (tmp_path / "identities" / "someone").mkdir(parents=True, exist_ok=True)
        shutil.copy(
            REPO / "examples" / "faces" / "obama.jpg", tmp_path / "identities" / "someone" / "a.jpg"
        )
        suite = load_suite(tmp_path / f"{name}.yaml")
        assert suite.identities[0].name == "someone"
    assert (
        len(load_suite(tmp_path / "pulid.yaml").prompts) == 16
        and len(load_suite(tmp_path / "pulid.yaml").seeds) == 4
    )
    seed001 = load_suite(tmp_path / "seed001.yaml")
    assert (len(seed001.prompts), len(seed001.seeds), seed001.num_inference_steps) == (25, 16, 50)
    (tmp_path / "bad.yaml").write_text(
        "name: x\nidentities: identities\nprompts: [a photo of a man]\nseeds: [0]\n"
    )
    with pytest.raises(SamefaceError, match="does not contain <id>"):
        load_suite(tmp_path / "bad.yaml")
    (tmp_path / "missing.yaml").write_text(
        "identities: [{name: a, photos: [nope.jpg]}]\nprompts: ['<id>']\n"
    )
    with pytest.raises(SamefaceError, match="not found"):
        load_suite(tmp_path / "missing.yaml")


def test_style_references_per_suite_and_per_identity(tmp_path):
    """A suite's style reference goes to every identity without its own; a prompt naming
    `<style>` needs one for everyone, and the words need the person and no `<style>`."""
    faces = REPO / "examples" / "faces"
    shutil.copy(faces / "obama.jpg", tmp_path / "ref.jpg")
    head = "prompts: ['a <style> of <id>', 'a photo of <id>']\nseeds: [0]\n"
    people = f"identities:\n  - {{name: a, photos: [{faces / 'obama.jpg'}]}}\n"
    people += f"  - name: b\n    photos: [{faces / 'biden.jpg'}]\n"
    own = "    style_reference: {image: ref.jpg, prompt: 'an oil painting of <id>'}\n"
    suite_ref = "style_reference: {image: ref.jpg, prompt: 'a sketch of <id>'}\n"
    (tmp_path / "s.yaml").write_text(head + people + own + suite_ref)
    a, b = load_suite(tmp_path / "s.yaml").identities
    assert (a.style.prompt, b.style.prompt) == ("a sketch of <id>", "an oil painting of <id>")
    assert a.style.image == tmp_path / "ref.jpg"
    from sameface.eval.style import words_prompts

    assert words_prompts(["a <style> of <id>", "a photo of <id>"], b.style) == [
        "an oil painting of <id>",
        "a photo of <id>",
    ]
    bad = {
        "every identity needs a style_reference": head + people + own,
        "describes the style in words": head
        + people
        + "style_reference: {image: ref.jpg, prompt: 'a <style> of <id>'}\n",
        "no prompt names <style>": "prompts: ['a photo of <id>']\n" + people + suite_ref,
        "mapping with image and prompt": head + people + "style_reference: ref.jpg\n",
        "need `identities: world`": head + people + "style_reference: {world: ['a sketch']}\n",
    }
    for message, text in bad.items():
        (tmp_path / "bad.yaml").write_text(text)
        with pytest.raises(SamefaceError, match=message):
            load_suite(tmp_path / "bad.yaml")


@pytest.fixture(scope="module")
def evaluator(analyzer):
    return Evaluator(analyzer, tiny_clip())


def _settings():
    return BenchSettings(
        methods=["textual-inversion"],
        base_spec="tiny:sd1",
        method_settings={"textual-inversion": {"steps": 2, "init": "face"}},
    )


def _run(out, evaluator, **kw):
    return run_benchmark(
        load_suite(SMOKE), tiny_base_model("sd1"), out, evaluator, _settings(), progress=False, **kw
    )


def _stable(records):
    """Records without timings (which differ run to run), keyed."""
    out = {}
    for r in records:
        out[record_key(r)] = {
            k: v for k, v in r.items() if k not in ("gen_time_s", "time_s", "peak_mem_mb")
        }
    return out


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, evaluator):
    out = tmp_path_factory.mktemp("run")
    _run(out, evaluator)
    return out


def test_a_suite_runs_end_to_end(full_run):
    recs = read_results(full_run)
    images = [r for r in recs if r["type"] == "image"]
    # 2 identities × 2 prompts × 1 seed × (baseline + textual inversion)
    assert len(images) == 8 and {r["method"] for r in images} == {"none", "textual-inversion"}
    assert len([r for r in recs if r["type"] == "personalize"]) == 2
    assert len([r for r in recs if r["type"] == "reference"]) == 2
    for r in images:
        assert (full_run / r["image"]).is_file()
        assert r["aggregate"] == pytest.approx(
            (1 + r["clip_t"]) * (1 + r["face_similarity_with_misses"])
        )
        assert (r["clip_i"] is None) == (r["method"] == "none")
        assert r["face_detected"] == (r["face_similarity"] is not None)
    meta = json.loads((full_run / "run.json").read_text())
    assert (
        meta["methods"] == ["none", "textual-inversion"]
        and meta["evaluator"]["recognizer"]["name"] == "sface"
    )
    assert meta["evaluator"]["clip"].startswith("tiny-random-clip")


def test_rerun_recomputes_nothing(full_run, evaluator, monkeypatch):
    import sameface.eval.runner as runner

    before = (full_run / "results.jsonl").read_text()
    monkeypatch.setattr(runner, "_generate", lambda *a, **k: pytest.fail("regenerated an image"))
    _run(full_run, evaluator)
    assert (full_run / "results.jsonl").read_text() == before


def test_killed_run_resumes_to_the_same_results(tmp_path, full_run, evaluator, monkeypatch):
    import sameface.eval.runner as runner

    real = runner.append_jsonl
    calls = {"n": 0}

    def die_after_five(path, record, **kw):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        real(path, record, **kw)

    monkeypatch.setattr(runner, "append_jsonl", die_after_five)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, evaluator)
    monkeypatch.setattr(runner, "append_jsonl", real)
    # Simulate a line cut short by the kill: it is ignored, its record recomputed.
    with open(tmp_path / "results.jsonl", "a") as f:
        f.write('{"type": "image", "method": "no')
    _run(tmp_path, evaluator)
    assert _stable(read_results(tmp_path)) == _stable(read_results(full_run))


def test_two_shards_give_the_one_process_results(tmp_path, full_run, evaluator):
    _run(tmp_path, evaluator, process_index=1, num_processes=2)
    _run(tmp_path, evaluator, process_index=0, num_processes=2)  # the main process merges
    assert not list(tmp_path.glob("results.part*.jsonl"))
    merged = read_results(tmp_path)
    assert len(merged) == len({record_key(r) for r in merged})  # nothing duplicated
    assert _stable(merged) == _stable(read_results(full_run))  # nothing lost
    assert merge_results(tmp_path).is_file()


def test_accelerate_two_processes_match_one(tmp_path, full_run):
    """`accelerate launch` with two CPU processes: identities are sharded, results merged."""
    import os
    import subprocess

    from sameface.models import save_base_model

    base = save_base_model(tiny_base_model("sd1"), tmp_path / "base")
    out = tmp_path / "run"
    cmd = [
        *two_process_launcher(),
        "-m",
        "sameface.cli",
        "bench",
        "--suite",
        str(SMOKE),
        "--methods",
        "textual-inversion",
        "--base",
        str(base),
        "--out",
        str(out),
        "--clip",
        "tiny-random",
        "--recognizer",
        "sface",
        "--device",
        "cpu",
        "--set",
        "textual-inversion.steps=2",
        "--set",
        "textual-inversion.init=face",
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = read_results(out)
    assert not list(out.glob("results.part*.jsonl")) and (out / "report.html").is_file()
    assert len(merged) == len({record_key(r) for r in merged})
    assert _stable(merged) == _stable(read_results(full_run))


def test_clip_loads_local_weights_and_never_downloads(tmp_path, monkeypatch, no_network):
    from sameface.errors import ModelNotFoundError
    from sameface.models.clip import ClipScorer

    tiny = tiny_clip(seed=3)
    tiny.model.save_pretrained(tmp_path / "clip", safe_serialization=True)
    loaded = ClipScorer.load(tmp_path / "clip")
    img = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        loaded.image_embeddings([img]), tiny.image_embeddings([img]), atol=1e-5
    )
    assert loaded.name == str(tmp_path / "clip")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelNotFoundError, match="hf download"):
        ClipScorer.load("openai/clip-vit-large-patch14")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        ClipScorer.load(tmp_path / "nope")
