"""Single-file (original LDM/SGM layout) checkpoints load offline through diffusers."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from sameface.errors import ModelNotFoundError
from sameface.models import load_base_model, save_base_model, tiny_base_model
from sameface.models.resolve import BASE_CONFIG_REPOS
from tests.models_ldm import to_ldm_state_dict


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("clip-tok")


def _export(model, folder):
    """Save `model` both as a diffusers folder (its configs) and as one LDM checkpoint."""
    save_base_model(model, folder / "configs")
    path = folder / "model.safetensors"
    save_file(to_ldm_state_dict(model), str(path))
    return path, folder / "configs"


def _assert_same(a, b):
    for name, mod in a.modules().items():
        sa, sb = mod.state_dict(), b.modules()[name].state_dict()
        assert sa.keys() == sb.keys(), name
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name}.{k}"


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_single_file_with_config_folder(tmp_path, tok_dir, family, no_network):
    model = tiny_base_model(family, tokenizer_cache_dir=tok_dir)
    path, configs = _export(model, tmp_path)
    loaded = load_base_model(path, config=configs, tokenizer_cache_dir=tok_dir)
    assert loaded.family == family and loaded.source == str(path)
    _assert_same(model, loaded)
    assert [t.pad_token for t in loaded.tokenizers] == [t.pad_token for t in model.tokenizers]


def test_single_file_configs_from_hub_cache(tmp_path, monkeypatch, tok_dir, no_network):
    """Without config=, the family's base repo configs are taken from the HF cache."""
    import shutil

    model = tiny_base_model("sd1", tokenizer_cache_dir=tok_dir)
    path, configs = _export(model, tmp_path)
    for p in configs.rglob("*.safetensors"):  # configs only: the cache needs no weights
        p.unlink()
    shutil.rmtree(configs / "tokenizer")  # and no tokenizer: it is rebuilt offline
    repo = BASE_CONFIG_REPOS["sd1"]
    snapshot = tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / ("c" * 40)
    shutil.copytree(configs, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("c" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    loaded = load_base_model(path, tokenizer_cache_dir=tok_dir)
    _assert_same(model, loaded)
    assert loaded.tokenizer("a photo of a person").input_ids[:3] == [49406, 320, 1125]


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_single_file_without_configs_says_what_to_do(
    tmp_path, monkeypatch, tok_dir, family, no_network
):
    model = tiny_base_model(family, tokenizer_cache_dir=tok_dir)
    path = tmp_path / "model.safetensors"
    save_file(to_ldm_state_dict(model), str(path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(ModelNotFoundError) as err:
        load_base_model(path, tokenizer_cache_dir=tok_dir)
    msg = str(err.value)
    repo = BASE_CONFIG_REPOS[family]
    assert f"hf download {repo} --include" in msg
    assert "config=DIR" in msg and 'config="builtin"' in msg


def test_missing_config_folder_and_remote_original_config(tmp_path, tok_dir, no_network):
    model = tiny_base_model("sd1", tokenizer_cache_dir=tok_dir)
    path, _ = _export(model, tmp_path)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_base_model(path, config=tmp_path / "nope")
    with pytest.raises(ModelNotFoundError, match="not a local file"):
        load_base_model(path, config=tmp_path / "configs", original_config="https://x/v1.yaml")
