"""Model spec resolution: local folders, single files, the Hugging Face cache, and the errors."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from sameface.errors import ModelNotFoundError, SamefaceError
from sameface.models import load_base_model, resolve_model_source, save_base_model, tiny_base_model
from sameface.models import resolve as resolve_mod
from sameface.models.resolve import hub_cache_dir


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("clip-tok")


@pytest.fixture(scope="module")
def tiny_sd1_folder(tmp_path_factory, tok_dir):
    folder = tmp_path_factory.mktemp("tiny-sd1")
    save_base_model(tiny_base_model("sd1", tokenizer_cache_dir=tok_dir), folder)
    return folder


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache that every lookup uses, with offline mode off."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return cache


def put_in_hub_cache(cache: Path, repo_id: str, folder: Path, commit: str = "a" * 40) -> Path:
    """Lay `folder` out as the hub cache does: blobs by hash, snapshot symlinks, refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    for src in sorted(p for p in folder.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(src.read_bytes()).hexdigest()
        shutil.copyfile(src, blob)
        link = snapshot / src.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_nonexistent_path():
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model_source("/no/such/model/folder")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model_source("./missing.safetensors")


@pytest.mark.parametrize("suffix", [".ckpt", ".bin", ".pt", ".pth"])
def test_pickle_checkpoints_refused(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"\x80\x02}q\x00.")  # a pickle; must never be opened
    with pytest.raises(SamefaceError, match=r"pickle.*convert.*safetensors|safetensors.*Convert"):
        resolve_model_source(path)


def test_other_file_types_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hi")
    with pytest.raises(SamefaceError, match=r"not a \.safetensors checkpoint"):
        resolve_model_source(path)


def test_folder_without_model_index(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"")
    with pytest.raises(SamefaceError, match=r"no model_index\.json.*x\.safetensors") as err:
        resolve_model_source(tmp_path)
    assert not isinstance(err.value, ModelNotFoundError)


def test_local_folder_resolves(tiny_sd1_folder):
    resolved = resolve_model_source(tiny_sd1_folder)
    assert resolved.kind == "diffusers" and resolved.path == tiny_sd1_folder
    assert resolved.repo_id is None and resolved.missing_tokenizers == ()


def test_incomplete_local_folder_lists_missing(tmp_path, tiny_sd1_folder):
    folder = tmp_path / "m"
    shutil.copytree(tiny_sd1_folder, folder)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (folder / "vae" / "diffusion_pytorch_model.safetensors").rename(
        folder / "vae" / "diffusion_pytorch_model.bin"
    )
    (folder / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model_source(folder)
    msg = str(err.value)
    assert "unet/diffusion_pytorch_model.safetensors" in msg
    assert "vae/diffusion_pytorch_model.safetensors (only pickle weights" in msg
    assert "scheduler/scheduler_config.json" in msg
    assert "text_encoder" not in msg  # present parts are not listed


def test_missing_tokenizer_is_optional(tmp_path, tiny_sd1_folder, tok_dir):
    folder = tmp_path / "m"
    shutil.copytree(tiny_sd1_folder, folder)
    shutil.rmtree(folder / "tokenizer")
    assert resolve_model_source(folder).missing_tokenizers == ("tokenizer",)
    model = load_base_model(folder, tokenizer_cache_dir=tok_dir)  # rebuilt offline
    assert model.tokenizer("a photo of a person").input_ids[:3] == [49406, 320, 1125]


def test_hub_id_absent_from_empty_cache(hf_cache, monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model_source("org/name")
    msg = str(err.value)
    assert "HF_HUB_OFFLINE" in msg and str(hf_cache) in msg
    assert "model_index.json" in msg and "unet/diffusion_pytorch_model.safetensors" in msg
    assert "hf download org/name --include" in msg and "huggingface-cli download" in msg


def test_hub_id_absent_without_offline_env_never_downloads(hf_cache, no_network):
    with pytest.raises(ModelNotFoundError, match="local_files_only=False"):
        resolve_model_source("org/name")


def test_partial_hub_cache_lists_exact_files(hf_cache, tiny_sd1_folder, no_network):
    snapshot = put_in_hub_cache(hf_cache, "org/partial", tiny_sd1_folder)
    # A snapshot link whose blob is gone (interrupted download) counts as missing.
    os.unlink(os.path.realpath(snapshot / "unet" / "diffusion_pytorch_model.safetensors"))
    (snapshot / "text_encoder" / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model_source("org/partial")
    msg = str(err.value)
    assert "  - unet/diffusion_pytorch_model.safetensors\n" in msg
    assert "  - text_encoder/model.safetensors\n" in msg
    assert '"unet/diffusion_pytorch_model.safetensors" "text_encoder/model.safetensors"' in msg
    assert "vae/" not in msg.split("Missing:")[1].split("On a machine")[0]


def test_hub_cache_loads_offline(hf_cache, tiny_sd1_folder, tok_dir, no_network):
    import torch

    snapshot = put_in_hub_cache(hf_cache, "org/tiny-sd1", tiny_sd1_folder)
    resolved = resolve_model_source("org/tiny-sd1")
    assert resolved.path == snapshot and resolved.repo_id == "org/tiny-sd1"
    model = load_base_model("org/tiny-sd1", tokenizer_cache_dir=tok_dir)
    ref = tiny_base_model("sd1", tokenizer_cache_dir=tok_dir)
    assert model.family == "sd1" and model.source == "org/tiny-sd1"
    for k, v in ref.unet.state_dict().items():
        assert torch.equal(v, model.unet.state_dict()[k]), k


def test_revision_by_commit_hash(hf_cache, tiny_sd1_folder, no_network):
    put_in_hub_cache(hf_cache, "org/rev", tiny_sd1_folder, commit="b" * 40)
    assert resolve_model_source("org/rev", revision="b" * 40).path.name == "b" * 40
    with pytest.raises(ModelNotFoundError, match="revision v2"):
        resolve_model_source("org/rev", revision="v2")


def test_cache_dir_argument_and_hf_home(tmp_path, monkeypatch, tiny_sd1_folder, no_network):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    assert hub_cache_dir() == tmp_path / "hfhome" / "hub"
    put_in_hub_cache(tmp_path / "hfhome" / "hub", "org/a", tiny_sd1_folder)
    assert resolve_model_source("org/a").repo_id == "org/a"
    other = tmp_path / "other"
    put_in_hub_cache(other, "org/b", tiny_sd1_folder)
    assert resolve_model_source("org/b", cache_dir=other).path.is_relative_to(other)


def test_offline_env_overrides_local_files_only_false(hf_cache, monkeypatch):
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append(kwargs["local_files_only"])
        from huggingface_hub.errors import LocalEntryNotFoundError

        raise LocalEntryNotFoundError("not cached")

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError):
        resolve_model_source("org/name", local_files_only=False)
    assert calls == []  # offline: the cache is read from disk, the hub client is never called


def test_download_when_allowed_fetches_configs_then_missing_weights(
    hf_cache, monkeypatch, tiny_sd1_folder
):
    """With local_files_only=False the resolver asks the hub for configs, then exact files."""
    calls = []

    def fake_snapshot_download(repo_id, *, cache_dir, allow_patterns, local_files_only, **kw):
        calls.append((local_files_only, list(allow_patterns or [])))
        snap = Path(cache_dir) / "snap"
        for src in tiny_sd1_folder.rglob("*"):
            rel = src.relative_to(tiny_sd1_folder).as_posix()
            wanted = any(
                rel == p or (p.startswith("*") and rel.endswith(p[1:])) for p in allow_patterns
            )
            if src.is_file() and wanted:
                (snap / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, snap / rel)
        return str(snap)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    resolved = resolve_model_source("org/dl", local_files_only=False)
    assert resolved.kind == "diffusers"
    assert calls[0] == (False, ["*.json", "*.txt"])
    assert calls[1][0] is False
    assert set(calls[1][1]) == {
        "*.json",
        "*.txt",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
    }


def test_download_failure_is_model_not_found(hf_cache, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr("huggingface_hub.snapshot_download", broken)
    with pytest.raises(ModelNotFoundError, match=r"(?s)no route to host.*hf download"):
        resolve_model_source("org/name", local_files_only=False)


def test_variant_weights(tmp_path, tiny_sd1_folder):
    folder = tmp_path / "v"
    shutil.copytree(tiny_sd1_folder, folder)
    with pytest.raises(
        ModelNotFoundError, match=r"unet/diffusion_pytorch_model\.fp16\.safetensors"
    ):
        resolve_model_source(folder, variant="fp16")
    for name, stem in [
        ("unet", "diffusion_pytorch_model"),
        ("vae", "diffusion_pytorch_model"),
        ("text_encoder", "model"),
    ]:
        (folder / name / f"{stem}.safetensors").rename(folder / name / f"{stem}.fp16.safetensors")
    assert resolve_model_source(folder, variant="fp16").variant == "fp16"
    assert load_base_model(folder, variant="fp16").family == "sd1"


def test_empty_spec():
    with pytest.raises(SamefaceError, match="Empty model spec"):
        resolve_model_source("  ")


def test_module_constants_are_not_frozen_at_import(monkeypatch, tmp_path):
    # HF_HUB_CACHE set after import is honoured (huggingface_hub's own constant is not).
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "late"))
    assert resolve_mod.hub_cache_dir() == tmp_path / "late"
