"""Benchmarking in the miniature world: whole-image identities, the extra baselines, context
accuracy, `identities: world` suites, `sameface bench --world` and `sameface demo`.

Runs on the tiny (barely trained) world. Its detector does not fire yet, so a stand-in that
finds one centred face in every image takes its place: these tests check the plumbing and
the bookkeeping, not the world's quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sameface.cli import main
from sameface.errors import SamefaceError
from sameface.faces.types import Face
from sameface.imageio import load_image

REPO = Path(__file__).resolve().parents[1]
SUITES = REPO / "benchmarks" / "suites"
PROMPTS = ["a photo of <id>, red background", "a sketch of <id> wearing a hat"]


def _centre_face(self, image: np.ndarray) -> list[Face]:
    """One face in the middle of any image (stands in for the untrained tiny detector)."""
    h, w = image.shape[:2]
    rel = [(0.38, 0.42), (0.62, 0.42), (0.5, 0.55), (0.41, 0.68), (0.59, 0.68)]
    lms = np.array([(x * w, y * h) for x, y in rel], np.float32)
    return [Face(bbox=(0.2 * w, 0.15 * h, 0.8 * w, 0.85 * h), landmarks=lms, score=0.99)]


@pytest.fixture(scope="module", autouse=True)
def centre_faces():
    from sameface.world.faces import WorldDetector

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(WorldDetector, "detect", _centre_face)
        yield


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    from sameface.world.build import BuildConfig, build_world

    out = tmp_path_factory.mktemp("world")
    # One torch thread, as `conftest.tiny_world` builds (the build would take every core).
    import torch

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "set_num_threads", lambda n: None)
        build_world(out, BuildConfig.tiny(), progress=False, log=lambda s: None)
    return out


@pytest.fixture(scope="module")
def world(world_dir):
    from sameface.world.world import World

    return World.load(world_dir)


def _suite_yaml(folder: Path, photos: int | None = 1, seeds: tuple[int, ...] = (0, 1)) -> Path:
    lines = ["name: tiny-world", "identities: world", f"prompts: {json.dumps(PROMPTS)}"]
    lines += [f"seeds: {list(seeds)}", "num_inference_steps: 2"]
    if photos:
        lines.append(f"photos_per_identity: {photos}")
    path = folder / "suite.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, world):
    """Baselines only (no method), one reference photo per identity."""
    from sameface.eval.runner import read_results, run_benchmark
    from sameface.eval.suite import load_suite
    from sameface.eval.world_bench import world_evaluator, world_settings

    out = tmp_path_factory.mktemp("run")
    suite = load_suite(_suite_yaml(out), world.reference_people())
    settings = world_settings(world, out, [], known_people=2)
    run_benchmark(suite, world.base, out, world_evaluator(world), settings, progress=False)
    images = [r for r in read_results(out) if r["type"] == "image"]
    return out, suite, images


def test_whole_image_identity_round_trip(world, tmp_path):
    from sameface.identity import Identity

    photo = next(iter(world.reference_people().values()))[0]
    img = load_image(photo)
    ident = Identity.from_images(
        [photo], analyzer=world.analyzer(), square_expand=None, square_size=img.shape[0]
    )
    assert np.array_equal(ident.squares[0], img)  # the whole portrait, untouched
    assert ident.meta["square_expand"] is None
    back = Identity.load(ident.save(tmp_path / "id"))
    assert np.array_equal(back.squares, ident.squares) and back.meta["square_expand"] is None
    with pytest.raises(ValueError, match="square_expand"):
        Identity.from_images([photo], analyzer=world.analyzer(), square_expand=0)


def test_world_suites_resolve_with_a_world_only(world, tmp_path):
    from sameface.eval.suite import load_suite

    people = world.reference_people()
    one = load_suite(SUITES / "world-1ref.yaml", people)
    four = load_suite(SUITES / "world-4ref.yaml", people)
    assert [i.name for i in one.identities] == list(people)
    assert all(len(i.photos) == 1 for i in one.identities)
    assert all(len(i.photos) == 4 for i in four.identities)
    assert len(one.prompts) == 8 and one.seeds == [0, 1] and one.num_inference_steps == 30
    assert one.methods == {"textual-inversion": {"steps": 400, "init": "face"}}
    with pytest.raises(SamefaceError, match="needs a world"):
        load_suite(SUITES / "world-1ref.yaml")


def test_the_papers_tables_suites_declare_every_row_they_run(world):
    """The ablation suites: each row a declared variant, textual inversion's Table 1 grid
    complete (3 inits x 3 parameterisations, 3 training seeds, the paper's Adam betas)."""
    from sameface.eval.suite import load_suite
    from sameface.eval.variants import method_runs

    people = world.reference_people()
    table1 = load_suite(SUITES / "world-ti-table1.yaml", people)
    grid = {(table1.methods[r]["init"], table1.methods[r]["reparam_base"]) for r in table1.run}
    assert grid == {(i, a) for i in ("face", "rand2", "id") for a in (None, "e", 2.0)}
    assert table1.training_seeds == [0, 1, 2] and table1.num_inference_steps == 50
    assert table1.methods["textual-inversion"]["adam_betas"] == [0.9, 0.98]
    quick = load_suite(SUITES / "world-ti-table1-quick.yaml", people)
    assert quick.methods == table1.methods and quick.run == table1.run
    for name in ("world-ti-table1", "world-ti-curves", "world-pulid-ablation"):
        suite = load_suite(SUITES / f"{name}.yaml", people)
        assert len(method_runs(suite.run, suite.methods)) == len(suite.run) > 1


def test_every_baseline_is_recorded_with_context_accuracy(bench_run):
    from sameface.world.captions import parse_caption
    from sameface.world.faces import context_accuracy

    out, suite, images = bench_run
    by_method = {m: [r for r in images if r["method"] == m] for m in {r["method"] for r in images}}
    n = len(suite.identities) * len(PROMPTS) * 2
    assert {m: len(v) for m, v in by_method.items()} == {
        "none": n,
        "known-by-name": n,
        "copy-reference": n,
    }
    meta = json.loads((out / "run.json").read_text())
    assert meta["methods"] == ["none", "known-by-name", "copy-reference"]
    assert meta["identity_square_expand"] is None
    for r in images:
        assert 0.0 <= r["context_accuracy"] <= 1.0
        _, asked = parse_caption(r["prompt"].replace("<id>", "a person"))
        assert r["context_accuracy"] == context_accuracy(r["context_predicted"], asked)


def test_copy_reference_is_the_reference_photo(bench_run, world):
    out, suite, images = bench_run
    for r in (r for r in images if r["method"] == "copy-reference"):
        photo = next(i for i in suite.identities if i.name == r["identity"]).photos[0]
        assert np.array_equal(load_image(out / r["image"]), load_image(photo))
        # One reference photo: its face is the reference itself.
        assert r["face_similarity"] == pytest.approx(1.0, abs=1e-5)
        assert r["gen_time_s"] is None and r["reference_photo"] == photo.name


def test_known_by_name_uses_the_known_persons_name_and_references(bench_run, world):
    from sameface.eval.world_bench import world_evaluator

    out, suite, images = bench_run
    known, _ = world.people
    evaluator = world_evaluator(world)
    for k, ident in enumerate(suite.identities):
        name = known.names[k]
        refs = sorted((out / "known_references" / name.replace(" ", "_")).glob("*.png"))
        assert len(refs) == 4
        embs = np.stack([evaluator.analyzer.analyze(p).embedding for p in refs])
        reference = embs.mean(0) / np.linalg.norm(embs.mean(0))
        for r in (
            r for r in images if r["method"] == "known-by-name" and r["identity"] == ident.name
        ):
            assert r["known_person"] == name
            assert r["generation_prompt"] == r["prompt"].replace("<id>", name)
            emb = evaluator.analyzer.analyze(load_image(out / r["image"])).embedding
            assert r["face_similarity"] == pytest.approx(float(emb @ reference), abs=1e-4)
            assert r["clip_i"] is not None


def test_report_lists_the_baselines_first_with_context_accuracy(bench_run):
    from sameface.eval.report import write_report

    out, _, _ = bench_run
    md, html = write_report(out)
    text = md.read_text()
    summary = text[text.index("## Summary") :]
    rows = [line.split("|")[1].strip() for line in summary.splitlines() if line.startswith("| ")]
    firsts = [r for r in rows if r.split(" (")[0] in ("none", "known-by-name", "copy-reference")]
    assert firsts[:3] == [
        "none (no identity)",
        "known-by-name (a known person, by name)",
        "copy-reference (a reference photo)",
    ]
    assert "context acc." in text and "Context accuracy" in text
    page = html.read_text()
    assert "context acc." in page and 'src="http' not in page


def test_cli_bench_world_end_to_end(world_dir, tmp_path, capsys):
    suite = _suite_yaml(tmp_path, seeds=(0,))
    out = tmp_path / "run"
    argv = ["bench", "--world", world_dir, "--suite", suite, "--out", out]
    argv += ["--methods", "textual-inversion", "--set", "textual-inversion.steps=2"]
    assert main([str(a) for a in argv]) == 0
    assert "report:" in capsys.readouterr().out
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    methods = {r["method"] for r in recs if r["type"] == "image"}
    assert methods == {"none", "known-by-name", "copy-reference", "textual-inversion"}
    meta = json.loads((out / "run.json").read_text())
    assert meta["identity_recognizer"] == "world" and meta["evaluator"]["clip"] == "world-clip"
    # Images are scored by the judge, a recogniser no method conditions or trains on.
    assert meta["evaluator"]["recognizer"]["name"] == "world-judge"
    assert (out / "report.html").is_file() and (out / "known_references").is_dir()


def test_cli_bench_needs_a_base_or_a_world(tmp_path, capsys):
    argv = ["bench", "--suite", SUITES / "smoke.yaml", "--out", tmp_path / "run"]
    assert main([str(a) for a in argv]) == 2
    assert "--base MODEL, or use --world" in capsys.readouterr().err
    argv = ["bench", "--suite", SUITES / "world-1ref.yaml", "--base", "tiny:sd1"]
    assert main([str(a) for a in [*argv, "--out", tmp_path / "run"]]) == 1
    assert "needs a world" in capsys.readouterr().err


@pytest.fixture()
def quick_demo(monkeypatch):
    import sameface.demo as demo

    monkeypatch.setattr(demo, "DEMO_SAMPLING_STEPS", 2)
    monkeypatch.setattr(demo, "DEMO_SEEDS", (0,))


def test_cli_demo_end_to_end_and_rerun_resumes(
    world_dir, tmp_path, capsys, quick_demo, monkeypatch
):
    import sameface.eval.runner as runner

    out = tmp_path / "demo"
    argv = [str(a) for a in ["demo", "--world", world_dir, "--steps", 2, "--out", out, "--quiet"]]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert (out / "report.html").is_file() and "report:" in text
    for m in ("none", "known-by-name", "copy-reference", "textual-inversion"):
        assert m in text
    assert "skipped pulid: no trained PuLID adapter" in text
    assert "skipped feedface: no trained FeedFace adapter" in text
    before = (out / "results.jsonl").read_text()

    monkeypatch.setattr(runner, "_generate", lambda *a, **k: pytest.fail("regenerated an image"))
    assert main(argv) == 0
    assert (out / "results.jsonl").read_text() == before
    capsys.readouterr()
    assert main([*argv[:3], "--steps", "3", *argv[5:]]) == 1  # other settings, same folder
    assert "other settings" in capsys.readouterr().err


def test_demo_without_a_world_says_how_to_build_one(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SAMEFACE_WORLD", raising=False)
    assert main(["demo", "--world", str(tmp_path / "nothing"), "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sameface world build --out" in err
    monkeypatch.setattr(
        "sameface.world.world.shipped_world_path", lambda: tmp_path / "shipped-missing"
    )
    assert main(["demo", "--out", str(tmp_path / "d")]) == 1
    assert "no world found" in capsys.readouterr().err


def test_pulid_runs_only_with_the_worlds_adapter(tmp_path):
    from types import SimpleNamespace

    from sameface.demo import plan_methods
    from sameface.eval.world_bench import world_method_settings

    world = SimpleNamespace(folder=tmp_path)
    run, skipped = plan_methods(world, ["textual-inversion", "pulid"])
    assert run == ["textual-inversion"] and "pulid" in skipped
    assert world_method_settings(world, ["pulid"]) == {}
    (tmp_path / "pulid").mkdir()
    assert plan_methods(world, ["pulid"]) == (["pulid"], {})
    assert world_method_settings(world, ["pulid"]) == {
        "pulid": {"adapter": str(tmp_path / "pulid"), "world": str(tmp_path)}
    }


def test_judge_is_a_second_recogniser(world):
    """The judge shares nothing trained with the recogniser methods condition on."""
    import torch

    judge, rec = world.judge, world.recognizer
    assert judge is not None and judge.name == "world-judge" and rec.name == "world"
    assert judge.dim == rec.dim and -1 <= judge.same_person_threshold <= 1
    a, b = judge.torch_module().state_dict(), rec.torch_module().state_dict()
    assert a.keys() == b.keys() and not all(torch.equal(a[k], b[k]) for k in a)
    assert world.analyzer(judge).recognizer is judge


def test_a_bank_of_the_worlds_known_people_feeds_the_id_init(world_dir, tmp_path):
    """`celebs build --world` makes the world's bank with its base model and recogniser; a
    bench in that world hands it to textual inversion (a variant with `init: id`)."""
    import shutil

    from sameface.world.world import World

    folder = tmp_path / "world"
    shutil.copytree(world_dir, folder)  # the module's world stays without a bank
    argv = ["celebs", "build", "--world", folder, "--out", folder / "celebs", "--max-names", "3"]
    argv += ["--images-per-name", "2", "--steps", "2", "--threshold", "-1"]
    assert main([str(a) for a in argv]) == 0
    world = World.load(folder)
    bank = world.celebrity_bank
    assert len(bank) == 3 and bank.names == list(world.people[0].names[:3])
    assert bank.recognizer_name == world.recognizer.describe()["name"]

    suite = tmp_path / "suite.yaml"
    suite.write_text(
        _suite_yaml(tmp_path, seeds=(0,)).read_text()
        + "methods:\n  textual-inversion@id: {init: id, steps: 2}\n"
        + "run: [textual-inversion@id]\n"
    )
    out = tmp_path / "run"
    assert main([str(a) for a in ["bench", "--world", folder, "--suite", suite, "--out", out]]) == 0
    arts = list((out / "artifacts" / "textual-inversion@id").glob("*/artifact.json"))
    assert arts
    for art in arts:
        init = json.loads(art.read_text())["init"]
        assert init["celebrity"] in bank.names


STYLE_CAPTIONS = ["a sketch of a person wearing a hat, striped red background"]


def _style_suite_yaml(folder: Path) -> Path:
    lines = ["name: tiny-style", "identities: world", "max_identities: 1"]
    lines += ["photos_per_identity: 2", 'prompts: ["a <style> of <id>"]', "seeds: [0]"]
    lines += ["num_inference_steps: 2", f"style_reference: {{world: {json.dumps(STYLE_CAPTIONS)}}}"]
    path = folder / "style.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_world_draws_style_references_of_held_out_people(world, tmp_path):
    path, context = world.render_style_reference(tmp_path, 0, STYLE_CAPTIONS[0])
    assert (context.style, context.hat, context.pattern, context.background) == (
        "sketch", True, "striped", "red",
    )  # fmt: skip
    first = load_image(path)
    path.unlink()
    again, _ = world.render_style_reference(tmp_path, 0, STYLE_CAPTIONS[0])
    assert np.array_equal(load_image(again), first)  # the same pixels
    assert again == path and path.name.startswith("000_")
    # Nobody a suite personalises; the file name carries the context, so an edited caption
    # draws a new portrait instead of reusing this one.
    assert not any(name in again.stem for name in world.reference_people())
    other, _ = world.render_style_reference(tmp_path, 0, "a painting of a person")
    assert other != again
    with pytest.raises(SamefaceError, match="no word 'grey'"):
        world.render_style_reference(tmp_path, 1, "a sketch of a person, grey background")


def test_style_suite_needs_a_world_to_draw_its_references(tmp_path, world):
    from sameface.eval.suite import load_suite

    with pytest.raises(SamefaceError, match="need a world"):
        load_suite(_style_suite_yaml(tmp_path), world.reference_people())


def test_style_reference_goes_to_magicapture_and_in_words_to_the_other_rows(
    world, tmp_path, monkeypatch
):
    """MagiCapture learns the reference and is given `<style>`; textual inversion and the
    baselines get the reference's words; every image is scored for leakage and for the
    reference's context, and the report has the style section."""
    # The tiny world's untrained recogniser sees everyone as one person (threshold 1.0):
    # lift it, or MagiCapture rightly refuses a reference "of the same person".
    monkeypatch.setattr(world.recognizer, "same_person_threshold", 1.5)
    from sameface.eval.report import write_report
    from sameface.eval.runner import read_results, run_benchmark
    from sameface.eval.style import world_style_references
    from sameface.eval.suite import load_suite
    from sameface.eval.world_bench import world_evaluator, world_settings

    out = tmp_path / "run"
    styles = world_style_references(world, out / "style_references")
    suite = load_suite(_style_suite_yaml(tmp_path), world.reference_people(), styles)
    words = suite.identities[0].style.prompt
    assert words == "a sketch of <id> wearing a hat, striped red background"
    methods = ["textual-inversion", "magicapture"]
    fast = {"ti_steps": 2, "lora_steps": 2, "checkpoint_every": 0}
    settings = world_settings(
        world,
        out,
        methods,
        known_people=1,
        method_settings={"textual-inversion": {"steps": 2}, "magicapture": fast},
    )
    run_benchmark(suite, world.base, out, world_evaluator(world), settings, progress=False)
    images = {r["method"]: r for r in read_results(out) if r["type"] == "image"}
    assert set(images) == {"none", "known-by-name", "copy-reference", *methods}
    assert images["magicapture"]["generation_prompt"] == "a <style> of <id>"
    for rec in images.values():
        assert rec["prompt"] == words and "leak_similarity" in rec
        assert rec["context_asked"] == {
            "style": "sketch", "hat": True, "background": "red", "pattern": "striped",
        }  # fmt: skip
    assert "generation_prompt" not in images["textual-inversion"]
    name = suite.identities[0].name
    art = json.loads((out / "artifacts" / "magicapture" / name / "artifact.json").read_text())
    assert art["style_reference"] is not None  # trained with the reference
    md, _ = write_report(out)
    text = md.read_text()
    assert "## Style reference" in text and "`a <style> of <id>`" in text
    # What produced each row, with its licence (the world's models are sameface's own).
    licenses = json.loads((out / "run.json").read_text())["licenses"]
    assert licenses["base"]["license"]["name"] == "Apache-2.0"
    assert licenses["scoring"]["recognizer"]["model"] == "world-judge"
    assert "## Licences" in text
