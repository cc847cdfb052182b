"""Identity: photos -> crops, masks, embeddings; exact save/load; clean delete; atomic save."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sameface.errors import ArtifactError, FaceNotFoundError, ImageLoadError
from sameface.identity import Identity, find_outliers


@pytest.fixture(scope="module")
def ident(obama, obama2, biden, analyzer) -> Identity:
    return Identity.from_images([obama, obama2, biden], analyzer=analyzer, square_size=128)


def test_contents_and_outlier_report(ident):
    assert ident.num_photos == 3
    assert ident.aligned.shape == (3, 112, 112, 3) and ident.aligned.dtype == np.uint8
    assert ident.squares.shape == (3, 128, 128, 3) and ident.masks.shape == (3, 128, 128)
    assert ident.embeddings.shape == (3, 128) and ident.embedding.shape == (128,)
    assert np.linalg.norm(ident.embedding) == pytest.approx(1.0, abs=1e-5)
    assert ident.outliers == [2]  # biden among two obamas
    photos = ident.meta["photos"]
    assert [len(p["sha256"]) for p in photos] == [64] * 3
    assert ident.meta["recognizer"]["name"] == "sface"
    # The mask covers the middle of the square crop (the face) and not its corners.
    m = ident.masks[0]
    assert m[64, 64] == 255 and m[0, 0] == 0 and m[-1, -1] == 0


def test_drop_outliers_changes_the_mean(obama, obama2, biden, analyzer, ident):
    dropped = Identity.from_images(
        [obama, obama2, biden], analyzer=analyzer, square_size=128, drop_outliers=True
    )
    two = Identity.from_images([obama, obama2], analyzer=analyzer, square_size=128)
    np.testing.assert_allclose(dropped.embedding, two.embedding, atol=1e-6)
    assert float(dropped.embedding @ ident.embedding) < 0.999


def test_find_outliers_single_photo():
    assert find_outliers(np.ones((1, 4), np.float32) / 2, 0.3) == ([], [None])


def test_save_load_round_trip_is_exact(tmp_path, ident):
    folder = ident.save(tmp_path / "me")
    back = Identity.load(folder)
    for k, v in ident._tensors().items():
        got = back._tensors()[k]
        assert got.dtype == v.dtype and got.shape == v.shape
        np.testing.assert_array_equal(got, v)
    assert back.meta == ident.meta
    meta = json.loads((folder / "identity.json").read_text())
    assert "identity.safetensors" in meta["files"]


def test_save_refuses_to_clobber(tmp_path, ident):
    ident.save(tmp_path / "me")
    with pytest.raises(ArtifactError, match="already saved"):
        ident.save(tmp_path / "me")
    ident.save(tmp_path / "me", overwrite=True)
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="not empty"):
        ident.save(other, overwrite=True)
    assert (other / "holiday.jpg").read_bytes() == b"x"


def test_interrupted_save_leaves_nothing(tmp_path, ident, monkeypatch):
    import safetensors.numpy

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.numpy, "save", boom)  # what save_safetensors calls
    with pytest.raises(KeyboardInterrupt):
        ident.save(tmp_path / "me")
    assert list(tmp_path.iterdir()) == []


def test_delete_removes_every_file_it_wrote(tmp_path, ident):
    folder = ident.save(tmp_path / "me")
    Identity.delete(folder)
    assert not folder.exists()
    # Files the user put there survive, and so does the folder holding them.
    folder = ident.save(tmp_path / "me2")
    (folder / "notes.txt").write_text("mine")
    Identity.delete(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_load_errors(tmp_path, ident):
    with pytest.raises(ArtifactError, match="not an identity"):
        Identity.load(tmp_path)
    folder = ident.save(tmp_path / "me")
    (folder / "identity.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ArtifactError, match="corrupt"):
        Identity.load(folder)
    (folder / "identity.safetensors").unlink()
    with pytest.raises(ArtifactError, match="incomplete"):
        Identity.load(folder)


def test_bad_photos_raise_typed_errors(tmp_path, analyzer, obama):
    (tmp_path / "x.jpg").write_bytes(b"")
    with pytest.raises(ImageLoadError):
        Identity.from_images([obama, tmp_path / "x.jpg"], analyzer=analyzer)
    with pytest.raises(FaceNotFoundError):
        Identity.from_images([np.full((100, 100, 3), 90, np.uint8)], analyzer=analyzer)
    with pytest.raises(ValueError):
        Identity.from_images([], analyzer=analyzer)


def test_overwrite_never_loses_the_users_files(tmp_path, ident):
    folder = ident.save(tmp_path / "me")
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match=r"notes\.txt"):
        ident.save(folder, overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine"


def test_unusable_destinations(tmp_path, ident, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="is a file"):
        ident.save(tmp_path / "file" / "me")
    with pytest.raises(ArtifactError, match="not a folder"):
        ident.save(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    with pytest.raises(ArtifactError, match="current folder"):
        ident.save(".")
    long_ok = tmp_path / ("x" * 240)  # a legal name; the temporary folder's name must be too
    assert Identity.load(ident.save(long_ok)).num_photos == 3


def test_saved_files_follow_the_umask(tmp_path, ident):
    import os
    import stat

    old = os.umask(0o022)
    try:
        folder = ident.save(tmp_path / "me")
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE((folder / "identity.safetensors").stat().st_mode) == 0o644


@pytest.mark.parametrize("meta", ["[1, 2]", '{"format_version": "2"}', "{not json"])
def test_malformed_metadata_is_a_typed_error(tmp_path, ident, meta):
    folder = ident.save(tmp_path / "me")
    (folder / "identity.json").write_text(meta)
    with pytest.raises(ArtifactError):
        Identity.load(folder)
    Identity.delete(folder)  # falls back to the layout save writes
    assert not folder.exists()


def test_delete_never_leaves_the_folder(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("x")
    ident_dir = tmp_path / "id"
    ident_dir.mkdir()
    (ident_dir / "identity.json").write_text('{"files": ["../victim/keep.txt", "identity.json"]}')
    Identity.delete(ident_dir)
    assert (victim / "keep.txt").exists()


def test_summary_tolerates_odd_metadata(ident):
    odd = Identity(
        **{
            k: getattr(ident, k)
            for k in (
                "aligned",
                "squares",
                "masks",
                "embeddings",
                "embedding",
                "bboxes",
                "landmarks",
            )
        },
        meta={"photos": [{}], "recognizer": "x"},
    )
    assert "3 photo(s)" in odd.summary()
