"""The web UI's work without gradio: sessions, identities, personalise (progress, cancel,
resume), generate, export, complete deletion, limits. On the shipped world: no weights."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sameface.errors import SamefaceError, TrainingError, UsageError

SESSION = "s" * 32


@pytest.fixture(scope="module")
def backend():
    from sameface.ui.backend import Backend

    return Backend()  # the shipped world


@pytest.fixture(scope="module")
def person_photos(backend):
    return next(iter(backend.world.reference_people().values()))


def _uploads(tmp_path: Path, photos: list[Path]) -> list[Path]:
    """Copies of photos as a server's temporary uploads."""
    out = []
    for i, p in enumerate(photos):
        out.append(Path(shutil.copy(p, tmp_path / f"upload{i}{p.suffix}")))
    return out


@pytest.fixture
def workspace(tmp_path, backend):
    from sameface.ui.workspace import Workspace

    return Workspace(tmp_path / "data", backend)


@pytest.fixture
def ada(workspace, tmp_path, person_photos):
    (tmp_path / "up").mkdir()
    moved = workspace.take_uploads(SESSION, _uploads(tmp_path / "up", person_photos))
    workspace.create_identity(SESSION, "ada", moved)
    return workspace


def test_methods_and_defaults_come_from_the_registry_and_the_world(backend):
    from sameface.methods import available_methods

    status = backend.methods()
    assert sorted(status) == available_methods()
    assert status["textual-inversion"] is None
    assert backend.adapters("pulid") and backend.adapters("textual-inversion") == []
    assert backend.defaults("pulid")["adapter"] == backend.adapters("pulid")[0]
    mc = backend.defaults("magicapture")  # its world settings, and the world for its ID loss
    assert mc["world"] == str(backend.world.folder) and mc["lora_steps"] < 1000


def test_uploads_are_moved_into_the_session_and_checked(workspace, tmp_path, person_photos):
    ups = _uploads(tmp_path, person_photos[:2])
    moved = workspace.take_uploads(SESSION, ups)
    assert all(not p.exists() for p in ups)  # the server's temporary copy is gone
    assert all(workspace.root in p.parents for p in moved)
    reports, outliers = workspace.inspect(moved)
    assert [r.faces for r in reports] == [1, 1] and outliers == []
    assert reports[0].boxed.shape[2] == 3 and reports[0].chosen == 0


def test_bad_uploads_get_one_readable_message_and_are_removed(workspace, tmp_path, person_photos):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(UsageError, match=r"notes.png: not an image"):
        workspace.take_uploads(SESSION, [text])
    assert not text.exists()
    huge = tmp_path / "huge.png"
    Image.new("RGB", (6000, 5000)).save(huge)
    with pytest.raises(UsageError, match="megapixels"):
        workspace.take_uploads(SESSION, [huge])
    many = _uploads(tmp_path, person_photos * 3)
    with pytest.raises(UsageError, match="at most 8 photos"):
        workspace.take_uploads(SESSION, many)
    with pytest.raises(UsageError, match="at least one"):
        workspace.take_uploads(SESSION, [])


def test_a_photo_without_a_face_is_reported_not_raised(workspace, tmp_path):
    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(blank)
    moved = workspace.take_uploads(SESSION, [blank])
    (report,), _ = workspace.inspect(moved)
    assert report.chosen is None and "no face" in report.error


class _PhotoBackend:
    """A backend of real photos (the sface analyser) for the face-choice checks."""

    def __init__(self, analyzer):
        self.analyzer = analyzer

    def identity_options(self):
        return {"square_size": 128}


def test_a_face_can_be_chosen_in_a_group_photo(tmp_path, analyzer, obama, biden):
    from sameface.imageio import load_image
    from sameface.ui.workspace import Workspace

    a, b = load_image(obama), load_image(biden)
    h = min(a.shape[0], b.shape[0])
    group = tmp_path / "group.png"
    Image.fromarray(np.concatenate([a[:h], b[:h]], axis=1)).save(group)
    ws = Workspace(tmp_path / "data", _PhotoBackend(analyzer))
    moved = ws.take_uploads(SESSION, [group])
    (report,), _ = ws.inspect(moved)
    assert report.faces == 2
    other = 1 - report.chosen
    (picked,), _ = ws.inspect(moved, [other])
    assert picked.chosen == other and picked.embedding is not None
    identity = ws.create_identity(SESSION, "second", moved, [other])
    assert identity.meta["photos"][0]["face_index"] == other
    assert not moved[0].exists()  # the upload is gone once the identity is saved


def test_names_and_sessions_are_checked(workspace, tmp_path, person_photos):
    for bad in ("../x", "", "a/b", ".hidden", "x" * 60):
        with pytest.raises(UsageError):
            workspace.person(SESSION, bad)
    for bad in ("../..", "", "a b", "x" * 65):
        with pytest.raises(UsageError, match="session"):
            workspace.session(bad)


def test_personalise_reports_progress_and_a_cancel_keeps_the_checkpoint(ada):
    seen = []

    def cancel_at_once(i, n, loss):  # as the Cancel button does, from another thread
        seen.append((i, n, loss))
        assert ada.cancel(SESSION)

    assert not ada.cancel(SESSION)  # nothing running
    with pytest.raises(TrainingError, match=r"cancelled at step 1/4; the checkpoint is kept"):
        ada.personalize(SESSION, "ada", "textual-inversion", {"steps": 4}, on_step=cancel_at_once)
    assert seen[0][:2] == (1, 4) and np.isfinite(seen[0][2])
    assert not ada.cancel(SESSION)  # the run is over
    seen.clear()
    art = ada.personalize(
        SESSION, "ada", "textual-inversion", {"steps": 4}, on_step=lambda *a: seen.append(a)
    )
    assert [s[0] for s in seen] == [2, 3, 4]  # resumed after the first step
    assert json.loads((art / "artifact.json").read_text())["method"] == "textual-inversion"
    assert ada.people(SESSION) == [
        {"name": "ada", "photos": 4, "methods": ["textual-inversion"], "images": 0}
    ]


def test_bad_settings_name_each_field(ada):
    with pytest.raises(UsageError) as e:
        ada.personalize(SESSION, "ada", "textual-inversion", {"steps": "many", "seed": 0.5})
    assert "steps: expected a whole number, got 'many'" in str(e.value)
    assert "seed: expected a whole number, got 0.5" in str(e.value)
    with pytest.raises(UsageError, match="not personalised"):
        ada.generate(SESSION, "ada", "pulid", ["a photo of <id>"], seeds=[0])


def test_generate_export_and_delete_everything(ada, tmp_path):
    ada.personalize(SESSION, "ada", "textual-inversion", {"steps": 2})
    ada.personalize(SESSION, "ada", "pulid", {})
    made = ada.generate(
        SESSION,
        "ada",
        "pulid",
        ["a photo of <id>"],
        seeds=[3],
        num_inference_steps=4,
        options={"id_scale": 0.5},
        without_person=True,
    )
    assert [g.settings.get("without_person", False) for g in made] == [False, True]
    assert made[0].settings["id_scale"] == 0.5 and made[0].settings["seed"] == 3
    assert all(g.path.is_file() for g in made)
    assert not np.array_equal(
        np.asarray(Image.open(made[0].path)), np.asarray(Image.open(made[1].path))
    )
    with pytest.raises(UsageError, match="no option"):
        ada.generate(
            SESSION, "ada", "textual-inversion", ["x <id>"], seeds=[0], options={"id_scale": 1}
        )
    with pytest.raises(UsageError, match="limit is 16"):
        ada.generate(SESSION, "ada", "pulid", ["a <id>"] * 9, seeds=[0, 1])

    zipped = ada.export(SESSION, "ada", "textual-inversion")
    names = zipfile.ZipFile(zipped).namelist()
    assert any(n.endswith("artifact.json") for n in names)
    assert not any("checkpoints" in n for n in names)
    with pytest.raises(SamefaceError, match="cannot load there"):  # the world's 64-wide words
        ada.export(SESSION, "ada", "textual-inversion", webui=True)
    with pytest.raises(SamefaceError, match="no learned words"):
        ada.export(SESSION, "ada", "pulid", webui=True)

    cache = tmp_path / "cache"  # copies of the images and photos elsewhere (a server's cache)
    (cache / "x").mkdir(parents=True)
    shutil.copy(made[0].path, cache / "x" / "copy.png")
    shutil.copy(zipped, cache / "x" / "served.zip")  # the download's served copy
    (cache / "other.txt").write_text("keep")
    removed = ada.delete_person(SESSION, "ada", also=[cache])
    assert "cache/copy.png" in removed and "cache/served.zip" in removed
    session = ada.session(SESSION)
    assert [p for p in session.rglob("*") if p.is_file()] == []
    assert (cache / "other.txt").exists() and not (cache / "x").exists()
    assert ada.people(SESSION) == []


def test_reports_are_found_newest_first(tmp_path, backend):
    from sameface.ui.workspace import Workspace

    for name in ("old", "new"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "report.html").write_text("<html></html>")
    import os

    os.utime(tmp_path / "runs" / "old" / "report.html", (1, 1))
    ws = Workspace(tmp_path / "data", backend, reports_dirs=[tmp_path / "runs"])
    assert [p.parent.name for p in ws.reports()] == ["new", "old"]
    with pytest.raises(UsageError, match="no such folder"):
        Workspace(tmp_path / "data", backend, reports_dirs=[tmp_path / "missing"])


def test_uploads_come_only_from_the_servers_upload_folder(tmp_path, backend, person_photos):
    """A client names uploads by path: one outside the upload folder is refused, untouched."""
    from sameface.ui.workspace import Workspace

    cache = tmp_path / "cache"
    cache.mkdir()
    ws = Workspace(tmp_path / "data", backend, upload_root=cache)
    precious = Path(shutil.copy(person_photos[0], tmp_path / "precious.png"))
    with pytest.raises(UsageError, match="not an upload of this server"):
        ws.take_uploads(SESSION, [precious])
    link = cache / "link.png"
    link.symlink_to(precious)
    with pytest.raises(UsageError, match="not an upload of this server"):
        ws.take_uploads(SESSION, [link])
    assert precious.is_file()  # neither moved nor removed
    ok = Path(shutil.copy(person_photos[0], cache / "up.png"))
    (moved,) = ws.take_uploads(SESSION, [ok])
    assert moved.is_file() and not ok.exists()


def test_a_real_model_artifact_downloads_as_webui_files(ada):
    """An SD1.x artifact (768-wide words) as the A1111 / ComfyUI zip: words named after the
    person, where they go, nothing of the identity."""
    from .test_interop_export import _artifact

    art = ada.person(SESSION, "ada") / "textual-inversion"
    _artifact(art, "sd1")
    names = sorted(
        zipfile.ZipFile(ada.export(SESSION, "ada", "textual-inversion", webui=True)).namelist()
    )
    assert names == ["ada/README.txt", "ada/embeddings/ada.safetensors"]
    assert not (ada.session(SESSION) / "exports" / "ada-textual-inversion-webui").exists()
