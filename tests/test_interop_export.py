"""`sameface export`: artifacts as the files AUTOMATIC1111 and ComfyUI load, checked against
the layouts their loaders accept (our own checks, from their documented formats)."""

from __future__ import annotations

import json

import pytest
import torch

from sameface.errors import ArtifactError, OutputError
from sameface.interop import export_artifact
from sameface.interop.webui import (
    WIDTHS,
    check_name,
    embedding_tensors,
    kohya_lora,
    lora_problems,
    webui_problems,
)
from sameface.tensorfile import read_safetensors


def _artifact(folder, family: str, k: int = 2, *, words=("<id>",), lora=None):
    """A words artifact as the methods save it, with identity data beside it."""
    from sameface.methods.words import save_embeddings, write_embedding_file

    g = torch.Generator().manual_seed(0)
    vectors = {w: [torch.randn(k, d, generator=g) for d in WIDTHS[family]] for w in words}
    meta = {"method": "textual-inversion", "family": family, "placeholder": words[0],
            "format_version": 1, "base": "x"}  # fmt: skip
    if lora is not None:
        meta["lora"] = {"rank": 4, "alpha": 4}
    save_embeddings(folder, family, words[0], vectors[words[0]], meta, save_id="s1")
    for w in words[1:]:
        write_embedding_file(folder / f"{w.strip('<>')}_embeds.safetensors", family, w,
                             vectors[w], save_id="s1")  # fmt: skip
    if lora is not None:
        from sameface.tensorfile import save_safetensors

        save_safetensors(lora, folder / "pytorch_lora_weights.safetensors", {"save_id": "s1"})
    (folder / "identity").mkdir()
    (folder / "identity" / "identity.safetensors").write_bytes(b"biometric")
    return vectors


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_each_family_exports_the_layout_both_tools_read(tmp_path, family):
    art = tmp_path / "Ada Lovelace"
    vectors = _artifact(art, family)
    done = export_artifact(art, tmp_path / "out")
    assert done.name == "Ada_Lovelace" and done.loras == []
    files = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*"))
    assert [str(p) for p in files] == ["embeddings", "embeddings/Ada_Lovelace.safetensors"]
    tensors, tags = read_safetensors(done.embeddings[0])
    assert webui_problems(tensors, family) == []
    keys = ["clip_l", "clip_g"] if family == "sdxl" else ["emb_params"]
    assert sorted(tensors) == sorted(keys)
    for key, want in zip(keys, vectors["<id>"], strict=True):
        assert torch.equal(tensors[key], want)
    assert set(tags) == {"sameface_method", "family", "name"}  # nothing of the identity
    assert "embedding:Ada_Lovelace" in done.usage() and '"a photo of Ada_Lovelace"' in done.usage()


def test_names_are_the_users_and_never_collide_silently(tmp_path):
    _artifact(tmp_path / "a", "sd1")
    _artifact(tmp_path / "b", "sd1")
    out = tmp_path / "out"
    export_artifact(tmp_path / "a", out, name="ada")
    export_artifact(tmp_path / "b", out, name="bob")
    assert sorted(p.name for p in (out / "embeddings").iterdir()) == [
        "ada.safetensors",
        "bob.safetensors",
    ]
    with pytest.raises(OutputError, match=r"ada\.safetensors exists"):
        export_artifact(tmp_path / "b", out, name="ada")
    export_artifact(tmp_path / "b", out, name="ada", overwrite=True)
    for bad in ("two words", "", "../x", "a" * 65, "-x"):
        with pytest.raises(ValueError, match="embedding name"):
            check_name(bad)


def test_further_words_and_the_lora_are_exported(tmp_path):
    from sameface.adapters.lora import UNetLora
    from sameface.models import tiny_base_model

    base = tiny_base_model("sd1")
    lora = UNetLora(base.unet, rank=4)
    with torch.no_grad():
        for p in lora.parameters():
            p.add_(0.01)
    peft = lora.state_dict_diffusers()
    art = tmp_path / "mc"
    _artifact(art, "sd1", words=("<id>", "<style>"), lora=peft)
    done = export_artifact(art, tmp_path / "out", name="cy")
    assert [p.name for p in done.embeddings] == ["cy.safetensors", "cy-style.safetensors"]
    assert done.words == {"<id>": "cy", "<style>": "cy-style"}
    (lora_file,) = done.loras
    assert lora_file == tmp_path / "out" / "loras" / "cy.safetensors"
    tensors, _ = read_safetensors(lora_file)
    modules = {n for n, _ in base.unet.named_modules()}
    assert lora_problems(tensors, modules) == []
    assert len(tensors) == 3 * len(lora.layers)  # down, up, alpha per layer
    assert all(float(v) == 4.0 for k, v in tensors.items() if k.endswith(".alpha"))
    name = "lora_unet_" + next(iter(lora.layers)).replace(".", "_")
    assert torch.equal(tensors[f"{name}.lora_up.weight"],
                       peft[f"unet.{next(iter(lora.layers))}.lora_B.weight"])  # fmt: skip
    assert "<lora:cy:1>" in done.usage() and "models/loras" in done.usage()


def test_encoder_artifacts_and_foreign_widths_are_refused(tmp_path):
    enc = tmp_path / "pulid"
    enc.mkdir()
    (enc / "artifact.json").write_text(json.dumps({"method": "pulid"}))
    with pytest.raises(ArtifactError, match="has no learned words"):
        export_artifact(enc, tmp_path / "out")
    with pytest.raises(ArtifactError, match="not a personalised identity"):
        export_artifact(tmp_path / "nothing", tmp_path / "out")
    from sameface.methods.words import save_embeddings

    world = tmp_path / "world"  # the miniature world's 64-wide words
    save_embeddings(world, "sd1", "<id>", [torch.zeros(1, 64)], {"method": "x", "family": "sd1",
                    "placeholder": "<id>", "format_version": 1})  # fmt: skip
    with pytest.raises(ArtifactError, match="width 64, the sd1 text encoder's is 768"):
        export_artifact(world, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_checks_refuse_what_the_tools_refuse():
    v = torch.zeros(2, 768)
    assert webui_problems({"emb_params": v}, "sd1") == []
    assert "single-tensor" in webui_problems({"a": v, "b": v}, "sd1")[0]
    assert "2-d float" in webui_problems({"emb_params": torch.zeros(768)}, "sd1")[0]
    assert "width 768" in webui_problems({"emb_params": v}, "sd2")[0]
    xl = {"clip_l": torch.zeros(2, 768), "clip_g": torch.zeros(2, 1280)}
    assert webui_problems(xl, "sdxl") == []
    assert "missing clip_g" in webui_problems({"clip_l": xl["clip_l"]}, "sdxl")[0]
    assert "same number" in webui_problems(xl | {"clip_g": torch.zeros(3, 1280)}, "sdxl")[0]
    assert embedding_tensors("sd2", [torch.zeros(1, 1024)]).keys() == {"emb_params"}
    bad = kohya_lora({"unet.a.b.lora_A.weight": torch.zeros(4, 8),
                      "unet.a.b.lora_B.weight": torch.zeros(8, 3)}, 4)  # fmt: skip
    assert "disagree" in lora_problems(bad)[0]
    assert any("no such UNet module" in p for p in lora_problems(bad, {"x.y"}))
    with pytest.raises(ValueError, match="needs both"):
        kohya_lora({"unet.a.lora_A.weight": torch.zeros(4, 8)}, 4)


def test_diffusers_loads_the_exported_file_too(tmp_path):
    """The single-key layout is also what diffusers' `load_textual_inversion` reads."""
    import transformers
    from diffusers.loaders import TextualInversionLoaderMixin

    from sameface.models.tokenizer import clip_tokenizer

    art = tmp_path / "a"
    vectors = _artifact(art, "sd1")
    done = export_artifact(art, tmp_path / "out", name="ada-lovelace")
    config = transformers.CLIPTextConfig(hidden_size=768, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2)  # fmt: skip
    encoder, tokenizer = transformers.CLIPTextModel(config), clip_tokenizer()

    class Loader(TextualInversionLoaderMixin):  # a pipeline's loading side, without a UNet
        hf_device_map = None
        components = {}  # noqa: RUF012

    Loader().load_textual_inversion(
        str(done.embeddings[0]), token="ada-lovelace", tokenizer=tokenizer, text_encoder=encoder
    )
    ids = tokenizer.convert_tokens_to_ids(["ada-lovelace", "ada-lovelace_1"])
    table = encoder.get_input_embeddings().weight
    assert torch.equal(table[ids], vectors["<id>"][0])


def test_the_cli_prints_the_files_and_where_they_go(tmp_path, capsys):
    from sameface.cli import main

    _artifact(tmp_path / "ada", "sdxl")
    assert main(["export", str(tmp_path / "ada"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "out" / "embeddings" / "ada.safetensors") in out
    assert "embedding:ada" in out and "stable-diffusion-webui/embeddings/" in out
    assert main(["export", str(tmp_path / "ada"), "--out", str(tmp_path / "out")]) == 1
    assert "--force" in capsys.readouterr().err
    assert (
        main(["export", str(tmp_path / "ada"), "--out", str(tmp_path / "o2"), "--name", "a b"]) == 2
    )
