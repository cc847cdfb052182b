"""Dataset preparation (FeedFace recipe): filter, crop, mask, embed, caption; resumable."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from sameface.data.prepare import FaceDataset, PrepareSettings, prepare_face_dataset, read_index
from sameface.errors import SamefaceError
from sameface.imageio import load_image


@pytest.fixture
def source(tmp_path, obama, obama2, biden):
    src = tmp_path / "src"
    (src / "people").mkdir(parents=True)
    shutil.copy(obama, src / "people" / "a.jpg")
    (src / "people" / "a.txt").write_text("a photo of a man in a suit\n")
    shutil.copy(obama2, src / "b.jpg")
    shutil.copy(biden, src / "c.jpg")
    (src / "captions.jsonl").write_text(
        json.dumps({"file": "b.jpg", "caption": "a man speaking"}) + "\n"
    )
    two = np.concatenate([load_image(obama), load_image(obama)[:, :, :]], axis=1)
    Image.fromarray(two).save(src / "two.jpg")
    Image.new("RGB", (300, 300), "gray").save(src / "blank.png")
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    return src


def test_prepare_keeps_single_faces_with_captions(tmp_path, source, analyzer):
    out = tmp_path / "data"
    summary = prepare_face_dataset(
        source, out, analyzer, PrepareSettings(resolution=128), progress=False
    )
    assert summary["this_run"] == {"kept": 3, "several faces": 1, "no face": 1, "unreadable": 1}
    samples = read_index(out)
    captions = {s["source"]: s["caption"] for s in samples}
    assert captions == {
        "people/a.jpg": "a photo of a man in a suit",
        "b.jpg": "a man speaking",
        "c.jpg": "a photo of a person",
    }
    ds = FaceDataset(out)
    item = ds[0]
    assert item["crop"].shape == (128, 128, 3) and item["aligned"].shape == (112, 112, 3)
    assert item["mask"].shape == (128, 128) and set(np.unique(item["mask"])) <= {0, 255}
    assert item["embedding"].shape == (128,) and abs(np.linalg.norm(item["embedding"]) - 1) < 1e-5
    # The landmarks were mapped into the crop: the mask covers the nose tip.
    x, y = item["landmarks"][2].round().astype(int)
    assert item["mask"][y, x] == 255
    # A rerun does nothing new.
    again = prepare_face_dataset(
        source, out, analyzer, PrepareSettings(resolution=128), progress=False
    )
    assert again["this_run"] == {} and again["samples"] == 3


def test_killed_preparation_resumes(tmp_path, source, analyzer, monkeypatch):
    import sameface.data.prepare as prep

    real = prep.append_jsonl
    calls = {"n": 0}

    def die_on_second_sample(path, record, **kw):
        if path.name == "index.jsonl":
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
        real(path, record, **kw)

    monkeypatch.setattr(prep, "append_jsonl", die_on_second_sample)
    with pytest.raises(KeyboardInterrupt):
        prepare_face_dataset(
            source, tmp_path / "data", analyzer, PrepareSettings(resolution=128), progress=False
        )
    monkeypatch.setattr(prep, "append_jsonl", real)
    prepare_face_dataset(
        source, tmp_path / "data", analyzer, PrepareSettings(resolution=128), progress=False
    )
    assert sorted(s["source"] for s in read_index(tmp_path / "data")) == [
        "b.jpg",
        "c.jpg",
        "people/a.jpg",
    ]
    assert [s["id"] for s in read_index(tmp_path / "data")] == ["0000000", "0000001", "0000002"]


def test_errors(tmp_path, analyzer):
    with pytest.raises(SamefaceError, match="not a folder"):
        prepare_face_dataset(tmp_path / "nope", tmp_path / "out", analyzer)
    with pytest.raises(SamefaceError, match="no prepared samples"):
        FaceDataset(tmp_path)
    with pytest.raises(ValueError):
        PrepareSettings(resolution=100)


def test_cli_prepare(tmp_path, source, capsys):
    from sameface.cli import main

    code = main(
        ["data", "prepare", str(source), "--out", str(tmp_path / "d"), "--resolution", "128"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "kept 3 image(s)" in out and "1 several faces" in out
    assert main(["data", "prepare", str(tmp_path / "missing"), "--out", str(tmp_path / "d")]) == 1
