"""Celebrity bank: names list, photo and model builds, resume, sharding, persistence."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from sameface.data.celebs import (
    PARTS_DIR,
    CelebrityBank,
    build_bank_from_model,
    build_bank_from_photos,
    consolidate_bank,
    distributed_context,
    load_celebrity_names,
    name_seed,
)
from sameface.data.celebs import from_model as celebs
from sameface.errors import ArtifactError, SamefaceError
from tests.conftest import free_port

OBAMA_IDS = [22481, 4276]  # "Barack Obama" in CLIP's BPE (SD1.x / SD2.x / SDXL)


@pytest.fixture(scope="module")
def tiny():
    from sameface.models import tiny_base_model

    return tiny_base_model("sd1")


@pytest.fixture(scope="module")
def photos(obama, obama2, biden):
    from sameface.imageio import load_image

    return {"obama": load_image(obama), "obama2": load_image(obama2), "biden": load_image(biden)}


@pytest.fixture
def fake_generation(monkeypatch, photos):
    """Replace generation with real portraits chosen by name, and record every call."""
    o, o2, b = photos["obama"], photos["obama2"], photos["biden"]
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    table = {
        "Barack Obama": [o, o2],
        "Joe Biden": [b, np.ascontiguousarray(b[:, ::-1])],
        "Mixed Person": [o, b],
        "Nobody": [noise, noise],
    }
    calls: list[str] = []

    def fake(pipe, name, **kwargs):
        calls.append(name)
        return [np.array(im) for im in table[name]]

    monkeypatch.setattr(celebs, "_generate_name_images", fake)
    monkeypatch.setattr(celebs, "_make_pipeline", lambda base_model: None)
    return calls


def _photo_tree(root: Path, obama: Path, obama2: Path, biden: Path) -> Path:
    (root / "Barack_Obama").mkdir(parents=True)
    (root / "Joe_Biden").mkdir()
    (root / "Empty_Person").mkdir()
    shutil.copy(obama, root / "Barack_Obama" / "obama.jpg")
    shutil.copy(obama2, root / "Barack_Obama" / "obama2.jpg")
    (root / "Barack_Obama" / "broken.jpg").write_bytes(b"not an image")
    shutil.copy(biden, root / "Joe_Biden" / "biden.jpg")
    (root / "notes.txt").write_text("loose file, ignored")
    return root


def _assert_banks_equal(a: CelebrityBank, b: CelebrityBank) -> None:
    assert a.names == b.names
    assert a.token_ids == b.token_ids
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    np.testing.assert_array_equal(a.consistency, b.consistency)
    np.testing.assert_array_equal(a.num_faces, b.num_faces)
    assert a.embeddings.dtype == b.embeddings.dtype == np.float32


# ---- names ----------------------------------------------------------------------------------


def test_shipped_names_list():
    names = load_celebrity_names()
    assert len(names) >= 250
    assert len({n.casefold() for n in names}) == len(names)
    assert all(n == n.strip() and n and not n.startswith("#") for n in names)
    assert "Barack Obama" in names and "Marie Curie" in names


def test_names_file_parsing(tmp_path):
    f = tmp_path / "names.txt"
    f.write_text("# comment\n\n  Tom   Hanks \nTom Hanks\ntom hanks\nPele  # footballer\nBeyoncé\n")
    assert load_celebrity_names(f) == ["Tom Hanks", "Pele", "Beyoncé"]
    with pytest.raises(SamefaceError, match="not found"):
        load_celebrity_names(tmp_path / "missing.txt")


def test_name_seed_is_stable():
    # Must not change between processes or releases: resumed and sharded runs rely on it.
    assert name_seed("Barack Obama", 0) == name_seed("Barack Obama", 0)
    assert name_seed("Barack Obama", 1) == name_seed("Barack Obama", 0) + 1
    assert name_seed("Barack Obama") != name_seed("Joe Biden")
    assert name_seed("Barack Obama") == 6410689695413252867


# ---- photos ---------------------------------------------------------------------------------


def test_bank_from_photos(tmp_path, analyzer, obama, obama2, biden, photos):
    root = _photo_tree(tmp_path / "photos", obama, obama2, biden)
    bank = build_bank_from_photos(root, analyzer, out=tmp_path / "bank", progress=False)
    assert bank.names == ["Barack Obama", "Joe Biden"]
    assert bank.num_faces.tolist() == [2, 1]
    assert bank.consistency[0] > 0.5 and np.isnan(bank.consistency[1])
    np.testing.assert_allclose(np.linalg.norm(bank.embeddings, axis=1), 1.0, atol=1e-5)
    assert bank.name_token_ids("Barack Obama") == OBAMA_IDS
    query = analyzer.analyze(photos["obama"]).embedding
    (name, sim), *_ = bank.nearest(query)
    assert name == "Barack Obama" and sim > 0.5
    ranked = bank.nearest(analyzer.analyze(photos["biden"]).embedding, k=5)
    assert [n for n, _ in ranked] == ["Joe Biden", "Barack Obama"]
    assert ranked[0][1] >= ranked[1][1]
    meta = bank.meta
    assert meta["source"] == f"photos:{root}"
    assert meta["recognizer"]["name"] == "sface" and meta["recognizer"]["dim"] == bank.dim
    assert "broken.jpg" in meta["photo_errors"]["Barack Obama"][0]
    assert meta["rejected"] == {"Empty Person": "no image files"}
    assert meta["ignored_files"] == ["notes.txt"]
    with pytest.raises(SamefaceError, match="no person folders"):
        build_bank_from_photos(tmp_path / "bank", analyzer, progress=False)
    with pytest.raises(ValueError, match="values"):
        bank.nearest(np.ones(7, np.float32))


def test_nearest_checks_identity_recognizer():
    from types import SimpleNamespace

    bank = CelebrityBank(
        names=["A", "B"],
        embeddings=np.eye(2, 4, dtype=np.float32),
        consistency=np.array([0.8, np.nan], np.float32),
        num_faces=np.array([2, 1]),
        token_ids=[[1], [2]],
        meta={"recognizer": {"name": "sface", "dim": 4}},
    )
    ident = SimpleNamespace(
        embedding=np.array([0, 1, 0, 0], np.float32), meta={"recognizer": {"name": "sface"}}
    )
    assert bank.nearest(ident) == [("B", 1.0)]
    ident.meta = {"recognizer": {"name": "dlib", "dim": 128}}
    with pytest.raises(ArtifactError, match="recogniser"):
        bank.nearest(ident)


# ---- persistence -----------------------------------------------------------------------------


def _small_bank() -> CelebrityBank:
    rng = np.random.default_rng(1)
    e = rng.normal(size=(3, 8)).astype(np.float32)
    return CelebrityBank(
        names=["Ann", "Bo", "Beyoncé"],
        embeddings=e / np.linalg.norm(e, axis=1, keepdims=True),
        consistency=np.array([0.7, np.nan, 0.61], np.float32),
        num_faces=np.array([4, 1, 3]),
        token_ids=[[1, 2], [3], [19219]],
        meta={"recognizer": {"name": "x", "dim": 8}, "rejected": {"Cy": "0 usable face(s)"}},
    )


def test_save_load_round_trip(tmp_path):
    bank = _small_bank()
    bank.save(tmp_path / "b")
    loaded = CelebrityBank.load(tmp_path / "b")
    _assert_banks_equal(bank, loaded)
    assert loaded.meta == bank.meta
    assert json.loads((tmp_path / "b" / "bank.json").read_text())["names"][2] == "Beyoncé"
    assert not [p for p in (tmp_path / "b").iterdir() if p.name.startswith(".")]  # no temp left
    with pytest.raises(ArtifactError, match="already saved"):
        bank.save(tmp_path / "b")
    bank.save(tmp_path / "b", overwrite=True)


def test_empty_bank_round_trip(tmp_path):
    empty = CelebrityBank([], np.zeros((0, 8), np.float32), [], [], [], {})
    empty.save(tmp_path / "e")
    loaded = CelebrityBank.load(tmp_path / "e")
    assert len(loaded) == 0 and loaded.dim == 8 and loaded.nearest(np.ones(8)) == []


def test_load_errors(tmp_path):
    with pytest.raises(ArtifactError, match="not a celebrity bank"):
        CelebrityBank.load(tmp_path / "nothing")
    a, b = tmp_path / "a", tmp_path / "b"
    _small_bank().save(a)
    _small_bank().save(b)
    shutil.copy(b / "bank.json", a / "bank.json")  # tensors from one save, names from another
    with pytest.raises(ArtifactError, match="different saves"):
        CelebrityBank.load(a)
    (b / "bank.safetensors").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="corrupt tensor"):
        CelebrityBank.load(b)
    (b / "bank.json").write_text("{")
    with pytest.raises(ArtifactError, match="corrupt metadata"):
        CelebrityBank.load(b)
    (b / "bank.safetensors").unlink()
    with pytest.raises(ArtifactError, match="incomplete"):
        CelebrityBank.load(b)


# ---- tokens ----------------------------------------------------------------------------------


def test_token_ids_and_vectors(tiny):
    import torch

    bank = _small_bank()
    tok = tiny.tokenizer
    assert bank.name_token_ids("Barack Obama", tokenizer=tok) == OBAMA_IDS
    assert bank.name_token_ids("beyoncé") == [19219]
    weight = tiny.text_encoder.get_input_embeddings().weight
    vec = bank.token_vectors(weight, "Ann")
    assert vec.shape == (2, weight.shape[1]) and not vec.requires_grad
    assert torch.equal(vec, weight[[1, 2]].detach())
    np.testing.assert_array_equal(
        bank.token_vectors(weight.detach().numpy(), "Bo"), weight[[3]].detach().numpy()
    )
    ids = bank.sample_token_ids(2, seed=3)
    assert len(set(ids)) == 2 and set(ids) <= {1, 2, 3, 19219}
    assert ids == bank.sample_token_ids(2, seed=3)
    with pytest.raises(KeyError):
        bank.name_token_ids("Nobody")


# ---- the base model ------------------------------------------------------------------------


def test_generation_is_deterministic_per_name(tiny):
    pipe = celebs._make_pipeline(tiny)
    kw = dict(
        images_per_name=2,
        num_inference_steps=2,
        guidance_scale=7.5,
        height=64,
        width=64,
        prompt_template=celebs.DEFAULT_PROMPT,
        negative_prompt=celebs.DEFAULT_NEGATIVE_PROMPT,
        seed=0,
    )
    a1 = celebs._generate_name_images(pipe, "Ann", **kw)
    b = celebs._generate_name_images(pipe, "Bo", **kw)
    a2 = celebs._generate_name_images(pipe, "Ann", **kw)
    assert a1.shape == (2, 64, 64, 3) and a1.dtype == np.uint8
    np.testing.assert_array_equal(a1, a2)
    assert not np.array_equal(a1, b)
    assert not np.array_equal(a1[0], a1[1])


def test_model_build_rejects_faceless_names(tmp_path, tiny, analyzer):
    # The tiny model draws noise: every record is written with 0 faces and the name rejected.
    names = ["Barack Obama", "Joe Biden", "Marie Curie"]
    bank = build_bank_from_model(
        tiny, analyzer, names, tmp_path, images_per_name=2, num_inference_steps=2, progress=False
    )
    assert bank is not None and len(bank) == 0 and bank.dim == analyzer.recognizer.dim
    assert set(bank.meta["rejected"]) == set(names)
    assert bank.meta["source"] == "base-model:tiny:sd1"
    assert bank.meta["threshold"] == analyzer.recognizer.same_person_threshold
    recs = sorted((tmp_path / PARTS_DIR).glob("*.json"))
    assert len(recs) == 3
    rec = json.loads(recs[0].read_text())
    assert rec["num_faces"] == 0 and rec["num_images"] == 2 and len(rec["errors"]) == 2
    obama = next(json.loads(p.read_text()) for p in recs if "Barack" in p.name)
    assert obama["token_ids"] == OBAMA_IDS
    assert len(CelebrityBank.load(tmp_path)) == 0


def test_model_build_accepts_consistent_faces(tmp_path, tiny, analyzer, fake_generation):
    names = ["Barack Obama", "Joe Biden", "Mixed Person", "Nobody"]
    bank = build_bank_from_model(
        tiny, analyzer, names, tmp_path, images_per_name=2, progress=False, save_images=True
    )
    assert bank.names == ["Barack Obama", "Joe Biden"]
    assert bank.num_faces.tolist() == [2, 2]
    assert (bank.consistency > analyzer.recognizer.same_person_threshold).all()
    assert bank.token_ids[0] == OBAMA_IDS
    assert "consistency" in bank.meta["rejected"]["Mixed Person"]
    assert bank.meta["rejected"]["Nobody"].startswith("0 usable face")
    assert len(list((tmp_path / "images").rglob("*.jpg"))) == 8
    _assert_banks_equal(bank, CelebrityBank.load(tmp_path))
    # Re-filtering needs no generation: a stricter rule, then a real-photo reference.
    n_calls = len(fake_generation)
    strict = consolidate_bank(tmp_path, names, threshold=0.99, save=False)
    assert strict.names == []
    ref = CelebrityBank(
        names=["Barack Obama"],
        embeddings=bank.embeddings[:1],
        consistency=[np.nan],
        num_faces=[1],
        token_ids=[OBAMA_IDS],
        meta={"recognizer": bank.meta["recognizer"], "source": "photos:x"},
    )
    checked = consolidate_bank(tmp_path, names, reference=ref, save=False)
    assert checked.names == ["Barack Obama"]
    assert checked.meta["rejected"]["Joe Biden"] == "not in the reference bank"
    assert len(fake_generation) == n_calls


def test_killed_run_resumes(tmp_path, tiny, analyzer, monkeypatch):
    names = ["Ann", "Bo", "Cy", "Di", "Ed"]
    real = celebs._generate_name_images
    calls: list[str] = []

    def flaky(pipe, name, **kw):
        if len(calls) == 2:
            raise RuntimeError("killed")
        calls.append(name)
        return real(pipe, name, **kw)

    monkeypatch.setattr(celebs, "_generate_name_images", flaky)
    kw = dict(images_per_name=1, num_inference_steps=1, min_faces=1, progress=False)
    with pytest.raises(RuntimeError, match="killed"):
        build_bank_from_model(tiny, analyzer, names, tmp_path, **kw)
    assert len(list((tmp_path / PARTS_DIR).glob("*.json"))) == 2
    assert not (tmp_path / "bank.json").exists()

    calls.clear()
    monkeypatch.setattr(celebs, "_generate_name_images", real)
    counted: list[str] = []
    monkeypatch.setattr(
        celebs, "_generate_name_images", lambda p, n, **k: counted.append(n) or real(p, n, **k)
    )
    bank = build_bank_from_model(tiny, analyzer, names, tmp_path, **kw)
    assert counted == ["Cy", "Di", "Ed"]  # finished names are not generated again
    assert sorted(bank.meta["rejected"]) == sorted(names) and bank.meta["num_requested"] == 5

    counted.clear()  # a finished build reruns without generating anything
    build_bank_from_model(tiny, analyzer, names, tmp_path, **kw)
    assert counted == []
    with pytest.raises(ArtifactError, match="other settings"):
        build_bank_from_model(tiny, analyzer, names, tmp_path, **(kw | {"num_inference_steps": 3}))


def test_two_shards_equal_one_process(tmp_path, tiny, analyzer, fake_generation):
    names = ["Barack Obama", "Joe Biden", "Mixed Person", "Nobody"]
    kw = dict(images_per_name=2, progress=False)
    one = build_bank_from_model(tiny, analyzer, names, tmp_path / "one", **kw)
    fake_generation.clear()

    sharded = tmp_path / "two"
    r0 = build_bank_from_model(
        tiny, analyzer, names, sharded, process_index=0, num_processes=2, **kw
    )
    assert r0 is None  # shard 1 has not run yet: nothing to consolidate
    assert fake_generation == ["Barack Obama", "Mixed Person"]
    r1 = build_bank_from_model(
        tiny, analyzer, names, sharded, process_index=1, num_processes=2, **kw
    )
    assert r1 is None and fake_generation[2:] == ["Joe Biden", "Nobody"]
    merged = consolidate_bank(sharded, names)
    _assert_banks_equal(one, merged)
    assert merged.meta["rejected"] == one.meta["rejected"]
    _assert_banks_equal(merged, CelebrityBank.load(sharded))

    # Main shard last (and every name done): it consolidates by itself.
    rev = tmp_path / "rev"
    build_bank_from_model(tiny, analyzer, names, rev, process_index=1, num_processes=2, **kw)
    bank = build_bank_from_model(tiny, analyzer, names, rev, process_index=0, num_processes=2, **kw)
    _assert_banks_equal(one, bank)
    with pytest.raises(ArtifactError, match="no finished record"):
        consolidate_bank(tmp_path / "one", [*names, "Someone Else"])


def test_distributed_context_single_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    idx, n, wait, is_main = distributed_context()
    assert (idx, n, is_main) == (0, 1, True) and wait() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed_context()[:2] == (0, 1)


_LAUNCH_SCRIPT = """
import os
import sys
from pathlib import Path
from sameface.data import build_bank_from_model
from sameface.faces import FaceAnalyzer
from sameface.models import tiny_base_model

bank = build_bank_from_model(
    tiny_base_model("sd1"), FaceAnalyzer("sface"), ["Ann", "Bo", "Cy", "Di", "Ed"], sys.argv[1],
    images_per_name=1, num_inference_steps=1, min_faces=1, progress=False,
)
# One file per process: two processes printing to one pipe can interleave their lines.
result = None if bank is None else len(bank.meta["rejected"])
Path(sys.argv[2], f"result-{os.environ['RANK']}.txt").write_text(f"RESULT {result}")
"""


def test_accelerate_launch_two_processes(tmp_path):
    script = tmp_path / "build.py"
    script.write_text(textwrap.dedent(_LAUNCH_SCRIPT))
    launcher = Path(sys.executable).with_name("accelerate")
    if not launcher.is_file():
        pytest.skip("accelerate launcher not installed")
    t0 = time.monotonic()
    proc = subprocess.run(
        # `--cpu` would run one process (multi-CPU needs mpirun); `--multi_gpu` starts the
        # processes through torchrun even without GPUs, and they sync over gloo.
        [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
         str(script), str(tmp_path / "out"), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.read_text() for p in tmp_path.glob("result-*.txt")) == [
        "RESULT 5",
        "RESULT None",
    ]
    recs = [json.loads(p.read_text()) for p in (tmp_path / "out" / PARTS_DIR).glob("*.json")]
    assert sorted(r["name"] for r in recs) == ["Ann", "Bo", "Cy", "Di", "Ed"]
    assert {r["process_index"] for r in recs} == {0, 1}
    assert len(CelebrityBank.load(tmp_path / "out").meta["rejected"]) == 5
    print(f"accelerate launch took {time.monotonic() - t0:.1f}s")
