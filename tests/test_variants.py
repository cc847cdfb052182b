"""Method variants and training seeds in suites: labels, settings layers, the runner's rows and
folders, the report's grouping and between-seed spread."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sameface.errors import SamefaceError
from sameface.eval.report import load_run, write_report
from sameface.eval.runner import BenchSettings, Evaluator, read_results, run_benchmark
from sameface.eval.suite import load_suite
from sameface.eval.variants import (
    MethodRun,
    check_label,
    method_runs,
    run_settings,
    split_label,
    training_seed_spread,
)
from sameface.models import tiny_base_model
from sameface.models.clip import tiny_clip

REPO = Path(__file__).resolve().parents[1]
FACES = REPO / "examples" / "faces"


def test_labels_split_and_bad_ones_are_named():
    assert split_label("textual-inversion@id-e") == ("textual-inversion", "id-e")
    assert split_label("pulid") == ("pulid", None)
    assert check_label("pulid@naive_id", known=["pulid"]) == "pulid@naive_id"
    with pytest.raises(SamefaceError, match="unknown method 'nope'"):
        check_label("nope@x", known=["pulid"])
    for bad in ("pulid@", "pulid@a.b", "pulid@../x", "pulid@-x", "pulid@" + "a" * 65):
        with pytest.raises(SamefaceError, match="variant name"):
            check_label(bad)


def test_rows_need_declared_variants_and_seeds_only_for_optimisation():
    declared = {"textual-inversion": {"steps": 9}, "textual-inversion@a": {"init": "face"}}
    runs = method_runs(
        ["textual-inversion@a", "pulid"],
        declared,
        training_seeds=[3, 4],
        optimises={"textual-inversion": True, "pulid": False},
    )
    assert runs == [
        MethodRun("textual-inversion@a", "textual-inversion", (3, 4)),
        MethodRun("pulid", "pulid", (None,)),  # an encoder's forward pass draws nothing
    ]
    assert runs[0].variant == "a" and runs[1].variant is None
    with pytest.raises(SamefaceError, match=r"not declared.*declared: textual-inversion@a"):
        method_runs(["textual-inversion@b"], declared)
    with pytest.raises(SamefaceError, match="twice"):
        method_runs(["pulid", "pulid"], declared)
    assert method_runs(["textual-inversion"], declared)[0].training_seeds == (None,)


def test_settings_layers_lowest_first():
    run = MethodRun("ti@v", "ti", (1,))
    values = run_settings(
        run,
        7,
        defaults={"ti": {"a": 0, "b": 0, "c": 0, "d": 0, "seed": 1}},
        suite={"ti": {"b": 1, "c": 1, "d": 1}, "ti@v": {"c": 2, "d": 2}, "ti@w": {"d": 9}},
        overrides={"ti": {"d": 3}, "ti@v": {"e": 4}},
    )
    assert values == {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4, "seed": 7}
    assert "seed" not in run_settings(MethodRun("ti", "ti"), None, suite={"ti@v": {"seed": 5}})


def test_spread_between_training_seeds():
    recs = [
        {"type": "image", "method": "m", "training_seed": s, "x": v}
        for s, vals in ((0, [0.1, 0.3]), (1, [0.5, 0.7]), (2, [0.3, None]))
        for v in vals
    ] + [{"type": "image", "method": "other", "training_seed": 0, "x": 9.0}]
    spread = training_seed_spread(recs, "m", "x")
    assert spread.means == pytest.approx({0: 0.2, 1: 0.6, 2: 0.3})
    assert spread.sd == pytest.approx(
        math.sqrt(((0.2 - 1.1 / 3) ** 2 + (0.6 - 1.1 / 3) ** 2 + (0.3 - 1.1 / 3) ** 2) / 2)
    )
    assert spread.range == pytest.approx(0.4)
    once = training_seed_spread([{"type": "image", "method": "m", "x": 1.0}], "m", "x")
    assert once.means == {} and math.isnan(once.sd) and math.isnan(once.range)


_SUITE = f"""
name: variants
identities:
  - name: obama
    photos: [{FACES / "obama.jpg"}, {FACES / "obama2.jpg"}]
prompts: [a photo of <id>, a photo of <id> wearing a hat]
seeds: [0]
num_inference_steps: 2
training_seeds: [0, 1]
methods:
  textual-inversion: {{steps: 1, checkpoint_every: 0, init: face}}
  textual-inversion@slow: {{learning_rate: 0.001}}
  textual-inversion@fast: {{learning_rate: 0.05}}
run: [textual-inversion@slow, textual-inversion@fast]
"""


def test_suite_declares_variants_training_seeds_and_what_to_run(tmp_path):
    (tmp_path / "s.yaml").write_text(_SUITE)
    suite = load_suite(tmp_path / "s.yaml")
    assert suite.training_seeds == [0, 1]
    assert suite.run == ["textual-inversion@slow", "textual-inversion@fast"]
    assert suite.to_dict()["training_seeds"] == [0, 1]
    import yaml

    base = yaml.safe_load(_SUITE)
    bad = (
        ({"run": ["textual-inversion@nope"]}, "does not declare"),
        ({"training_seeds": [0, 0]}, "distinct"),
        ({"training_seeds": [0.5]}, r"training_seeds\[0\] must be a whole number"),
        ({"training_seeds": 3}, "training_seeds must be a list"),
        ({"methods": {"textual-inversion@a b": {}}, "run": []}, "variant name"),
        ({"methods": {"textual-inversion@x": [1]}, "run": []}, "must be a mapping"),
    )
    for change, message in bad:
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(base | change))
        with pytest.raises(SamefaceError, match=message):
            load_suite(tmp_path / "bad.yaml")


@pytest.fixture(scope="module")
def variant_run(tmp_path_factory, analyzer):
    folder = tmp_path_factory.mktemp("variants")
    (folder / "s.yaml").write_text(_SUITE)
    suite = load_suite(folder / "s.yaml")
    out = folder / "run"
    settings = BenchSettings(methods=suite.run, base_spec="tiny:sd1")
    evaluator = Evaluator(analyzer, tiny_clip())
    run_benchmark(suite, tiny_base_model("sd1"), out, evaluator, settings, progress=False)
    return suite, out, evaluator


def test_every_variant_and_training_seed_is_a_separate_artifact(variant_run):
    suite, out, _ = variant_run
    recs = read_results(out)
    pers = sorted((r["method"], r["training_seed"]) for r in recs if r["type"] == "personalize")
    assert pers == [
        (v, s) for v in ("textual-inversion@fast", "textual-inversion@slow") for s in (0, 1)
    ]
    images = [r for r in recs if r["type"] == "image" and r["method"] != "none"]
    assert len(images) == 2 * 2 * 2 and all("training_seed" in r for r in images)
    assert len({r["image"] for r in images}) == len(images)
    for variant, lr in (("slow", 0.001), ("fast", 0.05)):
        for seed in (0, 1):
            art = (
                out
                / "artifacts"
                / f"textual-inversion@{variant}"
                / "obama"
                / f"training-seed-{seed}"
            )
            config = json.loads((art / "artifact.json").read_text())["config"]
            assert (config["seed"], config["learning_rate"], config["steps"]) == (seed, lr, 1)
    meta = json.loads((out / "run.json").read_text())
    assert meta["rows"]["textual-inversion@fast"] == {
        "method": "textual-inversion",
        "training_seeds": [0, 1],
    }
    assert meta["protocol"]["training_seeds"] == [0, 1]


def test_a_variant_run_resumes_without_redoing_anything(variant_run, monkeypatch):
    import sameface.eval.runner as runner

    suite, out, evaluator = variant_run
    before = (out / "results.jsonl").read_text()
    monkeypatch.setattr(runner, "_generate", lambda *a, **k: pytest.fail("regenerated an image"))
    settings = BenchSettings(methods=suite.run, base_spec="tiny:sd1")
    run_benchmark(suite, tiny_base_model("sd1"), out, evaluator, settings, progress=False)
    assert (out / "results.jsonl").read_text() == before


def test_report_groups_variants_and_shows_the_spread_between_seeds(variant_run, tmp_path):
    _, out, _ = variant_run
    md = write_report(out, tmp_path)[0].read_text()
    assert "### Between training seeds" in md
    spread = md.split("### Between training seeds")[1]
    assert "textual-inversion@slow | 2 | sd " in spread and "over images" in spread
    assert "training seeds | 0, 1" in md


def test_report_keeps_a_methods_variants_together(tmp_path):
    order = ["none", "a@x", "b", "a@y", "a"]
    images = [
        {"type": "image", "method": m, "identity": "p", "prompt_index": 0, "seed": 0, "image": m}
        for m in order
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in images))
    (tmp_path / "run.json").write_text(json.dumps({"methods": order}))
    assert load_run(tmp_path).methods == ["none", "a@x", "a@y", "a", "b"]


def test_bench_takes_variant_labels_and_names_unknown_methods():
    from sameface.cli.bench import parse_methods

    assert parse_methods("textual-inversion@a, pulid") == ["textual-inversion@a", "pulid"]
    with pytest.raises(ValueError, match="unknown method"):
        parse_methods("nope@a")
    with pytest.raises(SamefaceError, match="variant name"):
        parse_methods("pulid@a/b")


def test_training_seeds_are_not_counted_as_more_images():
    """Three training seeds' images of one cell are one sample in the interval (their mean)."""
    from sameface.eval.stats import paired_gain, summarise

    recs = [
        {
            "type": "image",
            "method": "none",
            "identity": "p",
            "prompt_index": 0,
            "seed": s,
            "clip_t": 0.0,
        }
        for s in (0, 1)
    ] + [
        {
            "type": "image",
            "method": "m",
            "identity": "p",
            "prompt_index": 0,
            "seed": s,
            "training_seed": t,
            "clip_t": 0.1 * t + s,
        }
        for s in (0, 1)
        for t in (0, 1, 2)
    ]
    assert summarise(recs, "m")["clip_t"].n == 2  # six images, two cells
    gain = paired_gain(recs, "m", "clip_t")
    assert gain.n == 2 and gain.mean == pytest.approx((0.1 + 1.1) / 2)


def test_a_row_with_training_seeds_is_a_fair_baseline_too():
    """Row against row, both trained with seeds: each side's cell is its seeds' mean."""
    from sameface.eval.stats import paired_gain

    def rec(method, t, value):
        return {"type": "image", "method": method, "identity": "p", "prompt_index": 0,
                "seed": 0, "training_seed": t, "clip_t": value}  # fmt: skip

    recs = [rec("a", 0, 0.0), rec("a", 1, 1.0), rec("b", 0, 0.5), rec("b", 1, 0.7)]
    assert paired_gain(recs, "b", "clip_t", baseline="a").mean == pytest.approx(0.6 - 0.5)
