"""IP-Adapter-FaceID: the release's layout with random weights (no download), every key used
once, the projection and the LoRA computing the release's functions, and our images equal
to plain diffusers' `load_ip_adapter` on the same file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sameface.errors import ArtifactError, SamefaceError
from sameface.identity import Identity
from sameface.interop.attn_layers import unet_skeleton
from sameface.interop.ip_adapter_faceid import import_ip_adapter_faceid, read_release
from sameface.methods import get_method
from sameface.methods.ip_adapter_faceid.config import (
    ADAPTER_INITS,
    LORA_TARGETS,
    IPAdapterFaceIDConfig,
)
from sameface.methods.ip_adapter_faceid.model import WEIGHTS_FILE, FaceIDModel
from sameface.models import tiny_base_model


def _official(unet, rank: int = 4, tokens: int = 4, id_dim: int = 512, make=torch.randn) -> dict:
    """A nested state dict in the release's layout (h94/IP-Adapter-FaceID: `MLPProjModel` as
    `image_proj`, `LoRAAttnProcessor` / `LoRAIPAttnProcessor` per `attn_processors` entry as
    `ip_adapter.{i}`), written from its description, not from our mapping."""
    cross = unet.config.cross_attention_dim
    proj = {
        "proj.0.weight": make(2 * id_dim, id_dim),
        "proj.0.bias": make(2 * id_dim),
        "proj.2.weight": make(cross * tokens, 2 * id_dim),
        "proj.2.bias": make(cross * tokens),
        "norm.weight": make(cross),
        "norm.bias": make(cross),
    }
    layers = {}
    modules = dict(unet.named_modules())
    for i, name in enumerate(unet.attn_processors):
        attn = modules[name.removesuffix(".processor")]
        hidden = attn.to_q.out_features
        ctx = cross if attn.is_cross_attention else hidden
        for part, d_in in (("q", hidden), ("k", ctx), ("v", ctx), ("out", hidden)):
            layers[f"{i}.to_{part}_lora.down.weight"] = make(rank, d_in)
            layers[f"{i}.to_{part}_lora.up.weight"] = make(hidden, rank)
        if attn.is_cross_attention:
            layers[f"{i}.to_k_ip.weight"] = make(hidden, cross)
            layers[f"{i}.to_v_ip.weight"] = make(hidden, cross)
    return {"image_proj": proj, "ip_adapter": layers}


def test_literal_choices_match_the_adapters():
    from sameface.adapters.id_attention import INITS
    from sameface.adapters.lora import TARGET_SETS

    assert ADAPTER_INITS == INITS and tuple(TARGET_SETS) == LORA_TARGETS


def test_the_release_imports_key_for_key_on_the_real_sd15_unet(tmp_path):
    """Every tensor of an SD1.5 release (random, rank 4 to stay small) maps once, shapes checked
    against the real SD1.5 UNet; the folder records what the release is."""
    sd = _official(unet_skeleton("sd1"), make=lambda *s: torch.zeros(s, dtype=torch.float16))
    path = tmp_path / "ip-adapter-faceid_sd15.bin"
    torch.save(sd, path)  # the release is a pickle; we read it with weights_only=True
    out = import_ip_adapter_faceid(path, tmp_path / "faceid")
    meta = json.loads((out / "ip_adapter_faceid.json").read_text())
    assert meta["family"] == "sd1" and meta["license"] == "ip-adapter-faceid"
    cfg = meta["config"]
    assert (cfg["lora_rank"], cfg["lora_targets"], cfg["num_tokens"]) == (4, "attention", 4)
    assert cfg["recognizer"] == "insightface" and meta["encoder"]["mlp_dim"] == 1024
    flat = read_release(out / WEIGHTS_FILE)
    n = sum(len(g) for g in sd.values())
    assert len(flat) == n and all(v.dtype == torch.float32 for v in flat.values())
    # 16 transformer blocks: 32 attention layers, 4 LoRA pairs each, 16 ID K/V pairs.
    assert n == 6 + 32 * 8 + 16 * 2


def test_the_full_size_sdxl_release_fits_key_for_key():
    """The SDXL release at its real sizes (rank 128, 2048-d tokens; on the meta device: no
    memory): every tensor maps to one of ours with its shape, none missing."""
    from sameface.interop.ip_adapter_faceid import check_release, release_config

    unet = unet_skeleton("sdxl")
    sd = _official(unet, rank=128, make=lambda *s: torch.empty(s, device="meta"))
    flat = {f"{g}.{k}": v for g in sd for k, v in sd[g].items()}
    cfg = release_config(flat, list(unet.attn_processors))
    assert (cfg.lora_rank, cfg.num_tokens, cfg.mlp_dim) == (128, 4, 1024)
    check_release(flat, unet, cfg)
    # 70 transformer blocks: 140 attention layers with 4 LoRA pairs, 70 ID K/V pairs.
    assert len(flat) == 6 + 140 * 8 + 70 * 2


def test_what_is_not_the_release_is_refused(tmp_path):
    unet = unet_skeleton("sd1")
    sd = _official(unet, make=lambda *s: torch.zeros(s))
    bad = {"image_proj": sd["image_proj"], "ip_adapter": dict(sd["ip_adapter"])}
    del bad["ip_adapter"]["1.to_k_ip.weight"]
    torch.save(bad, tmp_path / "missing.bin")
    with pytest.raises(ArtifactError, match="1 missing"):
        import_ip_adapter_faceid(tmp_path / "missing.bin", tmp_path / "a")
    bad["ip_adapter"]["1.to_k_ip.weight"] = torch.zeros(3, 3)
    torch.save(bad, tmp_path / "shape.bin")
    with pytest.raises(ArtifactError, match="other shapes"):
        import_ip_adapter_faceid(tmp_path / "shape.bin", tmp_path / "b")
    bad["ip_adapter"]["0.to_k_ip.weight"] = torch.zeros(320, 768)  # attn1 has no ID branch
    torch.save(bad, tmp_path / "self.bin")
    with pytest.raises(ArtifactError, match="not cross-attention"):
        import_ip_adapter_faceid(tmp_path / "self.bin", tmp_path / "c")
    far = {
        "image_proj": sd["image_proj"],
        "ip_adapter": {"99.to_q_lora.down.weight": torch.zeros(4, 8)},
    }
    torch.save(far, tmp_path / "far.bin")
    with pytest.raises(ArtifactError, match="layer 99 of a UNet with 32"):
        import_ip_adapter_faceid(tmp_path / "far.bin", tmp_path / "g")
    plus = {
        "image_proj": {"perceiver_resampler.proj_in.weight": torch.zeros(2, 2)},
        "ip_adapter": {},
    }
    torch.save(plus, tmp_path / "plus.bin")
    with pytest.raises(ArtifactError, match="FaceID-Plus"):
        import_ip_adapter_faceid(tmp_path / "plus.bin", tmp_path / "d")
    (tmp_path / "junk.bin").write_bytes(b"not a pickle at all")
    with pytest.raises(ArtifactError, match="cannot read it as weights only"):
        import_ip_adapter_faceid(tmp_path / "junk.bin", tmp_path / "e")
    with pytest.raises(ArtifactError, match="no such file"):
        import_ip_adapter_faceid(tmp_path / "none.bin", tmp_path / "f")


def test_the_projection_and_lora_compute_the_releases_functions():
    """Hand-written release maths on the loaded tensors: MLPProjModel, the uncond tokens of a
    zero embedding, and W' = W + up·down in every wrapped projection."""
    base = tiny_base_model("sd1")
    sd = _official(base.unet, id_dim=128)
    flat = {f"{g}.{k}": v for g in sd for k, v in sd[g].items()}
    cfg = IPAdapterFaceIDConfig(recognizer="sface", lora_rank=4, mlp_dim=256)
    with FaceIDModel(base, cfg) as model:
        model.load_release_state(flat)
        e = F.normalize(torch.randn(2, 128), dim=-1)
        p = sd["image_proj"]
        x = F.linear(F.gelu(F.linear(e, p["proj.0.weight"], p["proj.0.bias"])),
                     p["proj.2.weight"], p["proj.2.bias"]).reshape(2, 4, -1)  # fmt: skip
        want = F.layer_norm(x, x.shape[-1:], p["norm.weight"], p["norm.bias"])
        torch.testing.assert_close(model.tokens(e), want)
        zeros = F.layer_norm(
            F.linear(F.gelu(p["proj.0.bias"]), p["proj.2.weight"], p["proj.2.bias"]).reshape(1, 4, -1),
            (want.shape[-1],), p["norm.weight"], p["norm.bias"],
        )  # fmt: skip
        torch.testing.assert_close(model.uncond_tokens(), zeros)
        name = next(iter(base.unet.attn_processors)).removesuffix(".processor")
        layer = base.unet.get_submodule(name + ".to_q")
        h = torch.randn(3, layer.in_features)
        down, up = (
            sd["ip_adapter"]["0.to_q_lora.down.weight"],
            sd["ip_adapter"]["0.to_q_lora.up.weight"],
        )
        torch.testing.assert_close(layer(h), layer.get_base_layer()(h) + h @ down.T @ up.T)
        assert model.release_state().keys() == flat.keys()  # and back, key for key


@pytest.fixture(scope="module")
def one_photo(obama) -> Identity:
    return Identity.from_images([obama], square_size=64, mask_method="landmarks")


def _trained_like(tmp_path, base, **kw):
    """A FaceID folder with every weight random (as a trained one), saved in release layout."""
    cfg = IPAdapterFaceIDConfig(recognizer="sface", lora_rank=4, **kw)
    with FaceIDModel(base, cfg) as model:
        state = {k: torch.randn_like(v) * 0.2 for k, v in model.release_state().items()}
        for k in state:
            if k.endswith("norm.weight"):
                state[k] = state[k] + 1.0
        model.load_release_state(state)
        return model.save(tmp_path / "faceid")


def test_our_images_are_plain_diffusers_load_ip_adapter_images(tmp_path, one_photo):
    """The folder's weights file loads in diffusers (`load_ip_adapter`, its LoRA included) and
    gives our pipeline's images for the same embedding, prompt, seed and scales."""
    base = tiny_base_model("sd1")
    folder = _trained_like(tmp_path, base)
    method = get_method("ip-adapter-faceid")
    cfg = IPAdapterFaceIDConfig(adapter=str(folder), recognizer="sface", lora_rank=4)
    art = method.personalize(one_photo, base, cfg, tmp_path / "art")
    kw = {"num_inference_steps": 3, "guidance_scale": 5.0, "output_type": "np"}
    with method.pipeline_cls.from_artifact(art, base) as pipe:
        ours = pipe("a photo of <id>", generator=torch.Generator().manual_seed(3), **kw).images
    pipe = base.as_pipeline()
    pipe.load_ip_adapter(
        str(folder), subfolder="", weight_name=WEIGHTS_FILE, image_encoder_folder=None
    )
    emb = torch.from_numpy(one_photo.embeddings).float()[None]  # (1, 1, 128), unit
    theirs = pipe(
        "a photo of a person",
        ip_adapter_image_embeds=[torch.cat([torch.zeros_like(emb), emb])],
        generator=torch.Generator().manual_seed(3),
        **kw,
    ).images
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=2e-4)


def test_zero_scales_give_the_base_models_images(tmp_path, one_photo):
    base = tiny_base_model("sd1")
    before = {k: v.clone() for k, v in base.unet.state_dict().items()}
    flags = {k: p.requires_grad for k, p in base.unet.named_parameters()}
    folder = _trained_like(tmp_path, base)
    method = get_method("ip-adapter-faceid")
    cfg = IPAdapterFaceIDConfig(adapter=str(folder), recognizer="sface", lora_rank=4)
    art = method.personalize(one_photo, base, cfg, tmp_path / "art")
    kw = {"num_inference_steps": 2, "output_type": "np", "guidance_scale": 5.0}
    with method.pipeline_cls.from_artifact(art, base) as pipe:
        off = pipe(
            "a photo of <id>",
            id_scale=0,
            lora_scale=0,
            generator=torch.Generator().manual_seed(1),
            **kw,
        )
        on = pipe("a photo of <id>", generator=torch.Generator().manual_seed(1), **kw)
    plain = base.as_pipeline()(
        "a photo of a person", generator=torch.Generator().manual_seed(1), **kw
    )
    np.testing.assert_allclose(np.asarray(off.images), plain.images, atol=1e-6)
    assert np.abs(np.asarray(on.images) - plain.images).max() > 1e-3
    after = base.unet.state_dict()  # the base is given back exactly: weights, names, flags
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in after)
    assert {k: p.requires_grad for k, p in base.unet.named_parameters()} == flags


def test_bad_inputs_are_clear_errors(tmp_path, one_photo):
    base = tiny_base_model("sd1")
    folder = _trained_like(tmp_path, base)
    method = get_method("ip-adapter-faceid")
    with pytest.raises(SamefaceError, match="--adapter"):
        method.personalize(
            one_photo, base, IPAdapterFaceIDConfig(recognizer="sface"), tmp_path / "a"
        )
    insight = IPAdapterFaceIDConfig(adapter="untrained", lora_rank=4)  # reads 512-d insightface
    with pytest.raises(SamefaceError, match="--recognizer insightface"):
        method.personalize(one_photo, base, insight, tmp_path / "b")
    cfg = IPAdapterFaceIDConfig(adapter=str(folder), recognizer="sface")
    with pytest.raises(ArtifactError, match="sd1 base model, not sdxl"):
        method.personalize(one_photo, tiny_base_model("sdxl"), cfg, tmp_path / "c")
    assert not base.unet.attn_processors.keys() - set(tiny_base_model("sd1").unet.attn_processors)
    with pytest.raises(ValueError, match="drop_prob"):
        IPAdapterFaceIDConfig(id_drop_prob=0.5, text_drop_prob=0.4, both_drop_prob=0.3)


def test_several_photos_mean_or_concat(tmp_path, obama, obama2):
    ident = Identity.from_images([obama, obama2], square_size=64, mask_method="landmarks")
    base = tiny_base_model("sd1")
    for mode, n in (("mean", 4), ("concat", 8)):
        cfg = IPAdapterFaceIDConfig(recognizer="sface", lora_rank=4, multi_photo=mode)
        with FaceIDModel(base, cfg) as model:
            cond, uncond = model.identity_tokens(ident)
        assert cond.shape == uncond.shape == (1, n, base.unet.config.cross_attention_dim)


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory, analyzer):
    from sameface.data.prepare import PrepareSettings, prepare_face_dataset

    out = tmp_path_factory.mktemp("data")
    settings = PrepareSettings(resolution=64)
    prepare_face_dataset(REPO / "examples" / "faces", out, analyzer, settings, progress=False)
    return out


def test_fine_tuning_keeps_the_shape_and_the_terms(tmp_path, data):
    """`--init-from` a release-like folder: other shape settings are refused before training;
    the fine-tuned folder keeps the starting weights' licence and recogniser pack."""
    from sameface.methods.ip_adapter_faceid.train import train

    base = tiny_base_model("sd1")
    start = _trained_like(tmp_path, base)
    meta_path = start / "ip_adapter_faceid.json"
    meta = json.loads(meta_path.read_text())
    meta["license"] = "ip-adapter-faceid"
    meta["recognizer"]["pack"] = "buffalo_l"
    meta_path.write_text(json.dumps(meta))
    quick = {"recognizer": "sface", "batch_size": 1, "steps": 1, "checkpoint_every": 0}
    with pytest.raises(SamefaceError, match=r"lora_rank: 8 \(it has 4\)"):
        train(data, base, IPAdapterFaceIDConfig(lora_rank=8, **quick), tmp_path / "a",
              init_from=start, progress=False)  # fmt: skip
    out = train(data, base, IPAdapterFaceIDConfig(lora_rank=4, **quick), tmp_path / "b",
                init_from=start, progress=False)  # fmt: skip
    tuned = json.loads((out / "ip_adapter_faceid.json").read_text())
    assert tuned["license"] == "ip-adapter-faceid" and tuned["recognizer"]["pack"] == "buffalo_l"
    assert tuned["init_from"] == str(start)


def test_an_identity_of_the_other_insightface_pack_is_refused():
    from types import SimpleNamespace

    from sameface.methods.encoded import check_identity_recognizer

    rec = {"name": "insightface", "version": "antelopev2/glintr100.onnx", "dim": 512}
    ident = SimpleNamespace(meta={"recognizer": rec}, embeddings=np.zeros((1, 512), np.float32))
    with pytest.raises(SamefaceError, match="DIR/buffalo_l"):
        check_identity_recognizer(ident, "insightface", 512, "ip-adapter-faceid", "buffalo_l")
    check_identity_recognizer(ident, "insightface", 512, "pulid", "antelopev2")
    check_identity_recognizer(ident, "insightface", 512, "pulid")  # no pack recorded


def test_cli_trains_generates_and_imports(tmp_path, data, obama):
    """Photos -> prepared data -> `train ip-adapter-faceid` -> `generate` with its scales;
    and `import ip-adapter-faceid` of a release file."""
    import os
    import subprocess
    import sys

    from sameface.models import save_base_model

    repo = REPO
    base = save_base_model(tiny_base_model("sd1"), tmp_path / "base")

    def cli(*args):
        proc = subprocess.run(
            [sys.executable, "-m", "sameface.cli", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=600,
            env=os.environ | {"OMP_NUM_THREADS": "1"},
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    cli("train", "ip-adapter-faceid", "--config", repo / "configs/ip-adapter-faceid/tiny.yaml",
        "--data", data, "--base", base, "--out", tmp_path / "faceid", "--device", "cpu")  # fmt: skip
    cli("generate", "a photo of <id> as a chef", "--method", "ip-adapter-faceid", "--adapter",
        tmp_path / "faceid", "--face", obama, "--recognizer", "sface", "-n", "1", "--steps", "2",
        "--id-scale", "0.7", "--lora-scale", "0.5", "--out", tmp_path / "imgs", "--device", "cpu")  # fmt: skip
    assert (tmp_path / "imgs" / "a-photo-of-id-as-a-chef_0.png").is_file()
    release = tmp_path / "ip-adapter-faceid_sd15.bin"
    torch.save(
        _official(unet_skeleton("sd1"), make=lambda *s: torch.zeros(s, dtype=torch.float16)),
        release,
    )
    out = cli("import", "ip-adapter-faceid", release, "--out", tmp_path / "rel")
    assert "--recognizer insightface" in out and (tmp_path / "rel" / WEIGHTS_FILE).is_file()


def test_two_processes_train_together(tmp_path, data):
    """`accelerate launch` with 2 processes: one folder, one log (the shared loop)."""
    from sameface.models import save_base_model
    from tests.conftest import train_with_two_processes

    base = save_base_model(tiny_base_model("sd1"), tmp_path / "base")
    proc = train_with_two_processes("ip-adapter-faceid", data, base, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((tmp_path / "out" / "ip_adapter_faceid.json").read_text())
    assert meta["trained"]["steps"] == 4
    log = [json.loads(x) for x in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3, 4]
