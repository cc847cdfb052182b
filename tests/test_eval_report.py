"""Evaluation report: t quantiles and intervals, and the report of a synthetic run folder."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from sameface.errors import ArtifactError
from sameface.eval.report import load_run, write_report
from sameface.eval.stats import (
    METRICS,
    Summary,
    mean_ci95,
    paired_gain,
    proportion_ci95,
    summarise,
    t_cdf,
    t_ppf,
)

pytest.importorskip("matplotlib")

# ---- stats ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("df", "expected"),
    [(1, 12.706), (2, 4.303), (3, 3.182), (5, 2.571), (10, 2.228), (30, 2.042), (100, 1.984)],
)
def test_t_quantile_matches_tables(df, expected):
    assert t_ppf(0.975, df) == pytest.approx(expected, abs=6e-4)


def test_t_quantile_large_df_is_normal_and_inverts_cdf():
    assert t_ppf(0.975, 10**6) == pytest.approx(1.95996, abs=1e-4)
    assert t_ppf(0.975, 5000) == pytest.approx(1.9604, abs=1e-3)
    assert t_ppf(0.995, 10) == pytest.approx(3.169, abs=6e-4)
    assert t_ppf(0.025, 10) == pytest.approx(-t_ppf(0.975, 10))
    assert t_ppf(0.5, 7) == 0.0
    for df in (3, 4, 7, 31, 250):
        for p in (0.6, 0.9, 0.975, 0.999):
            assert t_cdf(t_ppf(p, df), df) == pytest.approx(p, abs=1e-10)
    with pytest.raises(ValueError):
        t_ppf(1.0, 3)
    with pytest.raises(ValueError):
        t_ppf(0.9, 0)


def test_mean_ci95():
    s = mean_ci95([0.5, 0.5, 0.5, 0.5])
    assert isinstance(s, Summary) and tuple(s) == (0.5, 0.5, 0.5, 4)
    assert s.half_width == 0.0

    mean, lo, hi, n = mean_ci95([1.0, None, 3.0, float("nan"), float("inf")])
    assert (mean, n) == (2.0, 2)
    half = 12.7062 * math.sqrt(2.0 / 2)  # s = sqrt(2), sqrt(s^2 / n) = 1
    assert lo == pytest.approx(2.0 - half, abs=1e-3) and hi == pytest.approx(2.0 + half, abs=1e-3)

    mean, lo, hi, n = mean_ci95([])
    assert n == 0 and math.isnan(mean) and math.isnan(lo) and math.isnan(hi)
    assert mean_ci95([None, float("nan")]).n == 0
    one = mean_ci95([0.3])
    assert one.mean == 0.3 and one.n == 1 and math.isnan(one.low)

    rng = np.random.default_rng(0)
    xs = rng.normal(size=50)
    m, lo, hi, n = mean_ci95(xs.tolist())
    half = t_ppf(0.975, 49) * xs.std(ddof=1) / math.sqrt(50)
    assert m == pytest.approx(xs.mean()) and hi - m == pytest.approx(half)


def test_proportion_ci95_wilson():
    s = proportion_ci95(12, 12)
    assert s.mean == 1.0 and s.high == 1.0 and 0.7 < s.low < 0.8  # not a zero-width interval
    s = proportion_ci95(5, 10)
    assert s.low == pytest.approx(0.2366, abs=1e-4) and s.high == pytest.approx(0.7634, abs=1e-4)
    assert proportion_ci95(0, 0).n == 0


def test_summarise_filters_by_method_and_handles_missing():
    records = [
        {"type": "image", "method": "a", "identity": "x", "prompt_index": 0,
         "face_detected": True, "face_similarity": 0.6, "face_similarity_with_misses": 0.6,
         "clip_t": 0.3, "clip_i": None, "gen_time_s": 1.0},
        {"type": "image", "method": "a", "identity": "x", "prompt_index": 1,
         "face_detected": False, "face_similarity": None, "face_similarity_with_misses": 0.0,
         "clip_t": 0.2, "clip_i": None, "gen_time_s": 3.0},
        {"type": "image", "method": "b", "identity": "x", "prompt_index": 0,
         "face_detected": True, "face_similarity": 0.9, "clip_t": 0.1},
        {"type": "personalize", "method": "a", "identity": "x", "time_s": 10.0, "peak_mem_mb": None},
    ]  # fmt: skip
    s = summarise(records, "a")
    assert set(s) == set(METRICS)
    assert s["detection_rate"].mean == 0.5 and s["detection_rate"].n == 2
    assert s["face_similarity"] == (0.6, pytest.approx(math.nan, nan_ok=True),
                                    pytest.approx(math.nan, nan_ok=True), 1)  # fmt: skip
    assert s["face_similarity_with_misses"].mean == pytest.approx(0.3)
    assert s["clip_i"].n == 0 and s["id_norm"].n == 0
    assert s["gen_time_s"].mean == 2.0
    assert s["personalize_time_s"].mean == 10.0 and s["personalize_peak_mem_mb"].n == 0
    assert summarise(records, "b")["personalize_time_s"].n == 0
    assert summarise(records, "a", prompt_index=1)["clip_t"].mean == pytest.approx(0.2)
    assert summarise(records, "missing")["clip_t"].n == 0


def test_paired_gain_pairs_by_identity_prompt_and_seed():
    def image(method, ident, pi, seed, sim):
        return {"type": "image", "method": method, "identity": ident, "prompt_index": pi,
                "seed": seed, "face_similarity_with_misses": sim}  # fmt: skip

    floor = [image("none", i, p, s, 0.1 * p + (0.5 if i == "x" else 0.0))
             for i in "xy" for p in range(3) for s in range(2)]  # fmt: skip
    # The method adds exactly 0.2 to its floor image, except one image with no value and
    # one with no floor partner; file order differs from the floor's.
    mine = [
        image("m", i, p, s, f["face_similarity_with_misses"] + 0.2)
        for f in reversed(floor)
        for i, p, s in [(f["identity"], f["prompt_index"], f["seed"])]
    ]
    mine[0]["face_similarity_with_misses"] = None
    mine.append(image("m", "z", 0, 0, 0.9))  # no floor image for identity z
    records = floor + mine + [{"type": "personalize", "method": "m", "identity": "x"}]
    g = paired_gain(records, "m", "face_similarity_with_misses")
    assert g.n == 11 and g.mean == pytest.approx(0.2)
    assert g.low == pytest.approx(0.2) and g.high == pytest.approx(0.2)  # no spread
    # Unpaired, the identities' different levels would swamp the difference.
    assert mean_ci95(r["face_similarity_with_misses"] for r in floor).high - mean_ci95(
        r["face_similarity_with_misses"] for r in floor).low > 0.2  # fmt: skip
    assert paired_gain(records, "m", "face_similarity_with_misses", identity="x").n == 6
    assert paired_gain(records, "m", "face_similarity_with_misses", identity="y").n == 5
    assert paired_gain(records, "m", "clip_t").n == 0
    assert paired_gain(records, "missing", "face_similarity_with_misses").n == 0


# ---- report ---------------------------------------------------------------------------

METHODS = ["textual-inversion", "pulid"]
IDENTITIES = ["obama", "ada lovelace"]
PROMPTS = ["a photo of <id>", "an oil painting of <id> | museum", "<id> as a chef"]
SEEDS = [0, 1]


def _png(path: Path, rng: np.random.Generator, size: int = 48) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def _make_run(
    root: Path,
    *,
    truncated: bool = True,
    methods: list[str] = METHODS,
    prompts: list[str] = PROMPTS,
    context: bool = False,
) -> Path:
    """A run folder as the runner writes it, with random images and scores (`context`: the
    world's context accuracy too)."""
    rng = np.random.default_rng(0)
    run = root / "run"
    lines: list[dict] = []
    for ident in IDENTITIES[:1]:  # the second identity has no reference record
        refs = [f"references/{ident}/ref{i}.png" for i in range(2)]
        for r in refs:
            _png(run / r, rng, 64)
        lines.append({"type": "reference", "identity": ident, "images": refs,
                      "self_similarity": 0.78})  # fmt: skip
    for method in ["none", *methods]:
        for ident in IDENTITIES:
            if method != "none":
                lines.append({"type": "personalize", "method": method, "identity": ident,
                              "time_s": float(rng.uniform(5, 50)),
                              "peak_mem_mb": 1234.0 if method == "pulid" else None})  # fmt: skip
            for pi, prompt in enumerate(prompts):
                for seed in reversed(SEEDS):  # seed order is not file order
                    image = f"images/{method}/{ident}/p{pi:02d}_s{seed}.png"
                    _png(run / image, rng)
                    detected = bool(rng.random() > 0.25)
                    sim = float(rng.uniform(0.0, 0.6)) if detected else None
                    clip_t = float(rng.uniform(0.15, 0.35))
                    miss = sim if sim is not None else 0.0
                    lines.append({
                        "type": "image", "method": method, "identity": ident, "prompt": prompt,
                        "prompt_index": pi, "seed": seed, "image": image,
                        "face_detected": detected, "face_similarity": sim,
                        "face_similarity_with_misses": miss, "clip_t": clip_t,
                        "clip_i": None if method == "none" else float(rng.uniform(0.4, 0.9)),
                        "face_clip_i": float(rng.uniform(0.4, 0.9)) if detected else None,
                        "id_norm": None, "text_norm": None,
                        "aggregate": (1 + clip_t) * (1 + miss),
                        "gen_time_s": float(rng.uniform(1, 3)),
                    } | ({"context_accuracy": float(rng.uniform(0.5, 1))} if context else {}))  # fmt: skip
    text = "\n".join(json.dumps(x) for x in lines) + "\n"
    if truncated:
        text += json.dumps(lines[-1])[:37]  # a partially written last line
    run.mkdir(parents=True, exist_ok=True)
    (run / "results.jsonl").write_text(text)
    meta = {  # as the runner writes it
        "suite": "mini",
        "suite_file": "suites/mini.yaml",
        "description": "A tiny suite for tests.",
        "base": "runwayml/stable-diffusion-v1-5",
        "methods": ["none", *methods],
        "evaluator": {"recognizer": {"name": "sface", "version": "2021dec-int8", "dim": 128},
                      "clip": "openai/clip-vit-large-patch14"},
        "conditioning_recognizers": {"textual-inversion": None, "pulid": "sface"},
        "identity_recognizer": "sface",
        "protocol": {
            "name": "mini", "identities": [{"name": i, "photos": []} for i in IDENTITIES],
            "prompts": prompts, "seeds": SEEDS, "resolution": 512, "num_inference_steps": 50,
            "guidance_scale": None, "negative_prompt": None, "placeholder": "<id>",
            "methods": {"textual-inversion": {"steps": 400}}, "description": "",
            "method_settings": {"pulid": {"id_scale": 0.8}},
        },
        "created": "2025-01-01T00:00:00Z",
        "sameface_version": "0.1.0",
    }  # fmt: skip
    (run / "run.json").write_text(json.dumps(meta))
    return run


def _assert_png(path: Path) -> tuple[int, int]:
    from PIL import Image

    assert path.is_file(), path
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_write_report(tmp_path):
    run = _make_run(tmp_path)
    data = load_run(run)
    assert data.methods == ["none", *METHODS]
    assert data.skipped_lines == 1
    assert [i for i, _ in data.prompts] == [0, 1, 2]

    md_path, html_path = write_report(run)
    assert (md_path, html_path) == (run / "report.md", run / "report.html")
    md = md_path.read_text()
    assert "sface" in md and "2021dec-int8" in md  # evaluator recogniser, named
    assert "openai/clip-vit-large-patch14" in md and "runwayml/stable-diffusion-v1-5" in md
    assert "likely inflated" in md  # pulid is conditioned on the evaluator's recogniser
    assert "| sampling steps | 50 |" in md and "| seeds | 0, 1 |" in md
    assert "| settings: textual-inversion | steps 400 |" in md and "id\\_scale 0.8" in md
    assert "the pipeline's default" in md  # guidance_scale None
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[:3] == ["## Images", "## At a glance", "## Gain over the no-identity baseline"]
    assert headings[-1] == "## Protocol"  # the pictures and the answer first, how it was made last
    glance = md.split("## At a glance")[1].split("\n## ")[0]
    glance_rows = [r.split("|")[1].strip() for r in glance.splitlines() if r.startswith("| ")]
    assert glance_rows[2:] == METHODS  # one line per method (after header and alignment rows)
    assert "of 2 |" in glance
    summary = md.split("## Summary")[1].split("\n## ")[0]
    assert summary.count("### ") == 3  # like the person, like the prompt, cost
    rows = [line for line in summary.splitlines() if line.startswith("| ")]
    summary_rows = [r for r in rows if "(n=" in r and r.split("|")[1].strip() in
                    {"none (no identity)", *METHODS}]  # fmt: skip
    assert [r.split("|")[1].strip() for r in summary_rows[:3]] == ["none (no identity)", *METHODS]
    assert " ± " in md and "—" in md  # intervals, and dashes where nothing was measured
    assert "| not meaningful |" in summary  # images, but no usable normalisation range
    assert "could not be read" in md  # the truncated line is reported
    assert "`an oil painting of <id> \\| museum`" in md  # prompt as code, pipe escaped
    gain = md.split("## Gain over the no-identity baseline")[1].split("\n## ")[0]
    gain_rows = [r.split("|")[1].strip() for r in gain.splitlines() if "(n=12)" in r]
    assert gain_rows == METHODS  # paired with the floor: 2 identities x 3 prompts x 2 seeds
    assert "of 2 |" in gain
    assert "](scatter.png)" in md and "](grid_obama.png)" in md and "](grid_ada_lovelace.png)" in md

    w, h = _assert_png(run / "scatter.png")
    assert w > 400 and h > 300
    for ident in ("obama", "ada_lovelace"):
        w, h = _assert_png(run / f"grid_{ident}.png")
        assert w > 128 * (1 + len(PROMPTS)) and h > 128 * 3  # 3 method rows, 4 columns

    page = html_path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("data:image/png;base64,") == 1 + len(IDENTITIES)
    assert "sface" in page and "textual-inversion" in page
    assert "&lt;id&gt;" in page
    outside_data = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert "http" not in outside_data  # nothing external: no links, scripts, fonts
    assert "<script" not in outside_data and "<link" not in outside_data
    assert not list(run.glob(".sf-tmp-*"))  # atomic writes left no temporaries


def test_write_report_out_dir_and_missing_run_json(tmp_path):
    run = _make_run(tmp_path, truncated=False)
    (run / "run.json").unlink()
    (run / "images" / "pulid" / "obama" / "p00_s0.png").unlink()  # a missing image
    out = tmp_path / "report"
    md_path, html_path = write_report(run, out)
    assert md_path.parent == out and html_path.is_file() and (out / "scatter.png").is_file()
    md = md_path.read_text()
    assert "run.json is missing" in md and "could not be read" not in md


def test_report_reads_unmerged_shards_and_drops_duplicates(tmp_path):
    run = _make_run(tmp_path, truncated=False)
    lines = (run / "results.jsonl").read_text().splitlines()
    (run / "results.jsonl").unlink()
    half = len(lines) // 2
    (run / "results.part0.jsonl").write_text("\n".join(lines[:half]) + "\n")
    (run / "results.part1.jsonl").write_text("\n".join(lines[half - 3 :]) + "\n")
    data = load_run(run)
    assert len(data.images) == 3 * len(IDENTITIES) * len(PROMPTS) * len(SEEDS)
    md = write_report(run)[0].read_text()
    assert "unmerged shard" in md and "3 duplicate record(s)" in md


def test_report_without_baseline_says_so(tmp_path):
    run = _make_run(tmp_path, truncated=False)
    lines = (run / "results.jsonl").read_text().splitlines()
    kept = [x for x in lines if json.loads(x).get("method") != "none"]
    (run / "results.jsonl").write_text("\n".join(kept) + "\n")
    md_path, _ = write_report(run)
    assert "baseline (method 'none') is missing" in md_path.read_text()


def test_empty_or_missing_results_raise(tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        write_report(tmp_path / "nope")
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ArtifactError, match=r"results\.jsonl"):
        write_report(run)
    (run / "results.jsonl").write_text("")
    with pytest.raises(ArtifactError, match="empty"):
        write_report(run)
    (run / "results.jsonl").write_text('{"type": "reference", "identity": "x", "images": []}\n{"ty')
    with pytest.raises(ArtifactError, match="no image records"):
        write_report(run)
    (run / "results.jsonl").write_text(
        json.dumps({"type": "image", "method": "none", "identity": "x", "prompt_index": 0})
    )
    (run / "run.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"run\.json"):
        write_report(run)


def test_clip_t_is_left_out_where_it_cannot_tell_a_copy_from_the_prompt(tmp_path):
    """CLIP-T's columns show only when the no-identity images beat a copied reference photo
    by CLIP_T_MIN_SEPARATION; otherwise the report says why they are missing."""
    from sameface.eval.metrics import CLIP_T_MIN_SEPARATION

    run = _make_run(tmp_path, truncated=False, methods=["copy-reference", "textual-inversion"])
    md = write_report(run)[0].read_text()  # both rows draw CLIP-T from the same range
    assert "CLIP-T, text\\_norm and the aggregate are left out" in md
    summary = md.split("## Summary")[1].split("\n## ")[0]
    gain = md.split("## Gain over the no-identity baseline")[1].split("\n## ")[0]
    headers = [line for line in summary.splitlines() if line.startswith("| method |")]
    assert len(headers) == 3 and not any(
        k in h for h in headers for k in ("CLIP-T", "text\\_norm", "aggregate")
    )
    assert "Δ CLIP-T" not in gain

    lines = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    for r in lines:
        if r.get("method") == "copy-reference" and r["type"] == "image":
            r["clip_t"] -= 2 * CLIP_T_MIN_SEPARATION + 0.2  # now far below the prompt's images
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    md = write_report(run)[0].read_text()
    assert "are left out" not in md and "Δ CLIP-T" in md


def test_the_demos_table_follows_the_clip_t_rule(tmp_path):
    from sameface.demo import DemoResult

    def rows(copy_clip_t):
        return [
            {"method": "none", "id_similarity": 0.0, "context_accuracy": 0.9, "clip_t": 0.30},
            {"method": "copy-reference", "id_similarity": 1.0, "context_accuracy": 0.3,
             "clip_t": copy_clip_t},
            {"method": "textual-inversion", "id_similarity": 0.4, "context_accuracy": 0.8,
             "clip_t": 0.29},
        ]  # fmt: skip

    hidden = DemoResult(tmp_path, tmp_path / "r.html", "p", [], rows=rows(0.28)).table()
    assert "CLIP-T left out" in hidden and "CLIP-T " not in hidden.splitlines()[0]
    shown = DemoResult(tmp_path, tmp_path / "r.html", "p", [], rows=rows(0.10)).table()
    assert shown.splitlines()[0].rstrip().endswith("CLIP-T") and "left out" not in shown
