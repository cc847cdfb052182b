"""Importing the released PuLID v1.1 weights: random tensors in the official layout (no
download), every key used once, and our IDFormer computing the release's function."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from sameface.adapters.id_encoder_config import IDEncoderConfig
from sameface.errors import ArtifactError
from sameface.interop.pulid import (
    import_pulid,
    modules_from_release,
    official_encoder_config,
    sdxl_unet_skeleton,
)

TINY = {"dim": 16, "heads": 2, "dim_head": 8, "mlp": 12, "vit": 10, "id": 6, "clip": 4,
        "queries": 3, "id_tokens": 5, "depth": 2}  # fmt: skip


def _official(unet, d=TINY, out_dim=None, make=torch.randn) -> dict:
    """A state dict in the release's layout (ToTheBeginning/PuLID: IDFormer `id_adapter.*`,
    `id_adapter_attn_layers.{i}`), written from its description, not from our mapping."""
    dim, mlp, inner = d["dim"], d["mlp"], d["heads"] * d["dim_head"]
    out_dim = out_dim or unet.config.cross_attention_dim
    sd = {
        "id_adapter.latents": make(1, d["queries"], dim),
        "id_adapter.proj_out": make(dim, out_dim),
    }

    def mapping(prefix, d_in, d_out):
        for idx, (a, b) in {0: (d_in, mlp), 3: (mlp, mlp), 6: (mlp, d_out)}.items():
            sd[f"{prefix}.{idx}.weight"], sd[f"{prefix}.{idx}.bias"] = make(b, a), make(b)
        for idx in (1, 4):
            sd[f"{prefix}.{idx}.weight"], sd[f"{prefix}.{idx}.bias"] = make(mlp), make(mlp)

    mapping("id_adapter.id_embedding_mapping", d["id"] + d["clip"], d["id_tokens"] * dim)
    for i in range(5):
        mapping(f"id_adapter.mapping_{i}", d["vit"], dim)
    for j in range(5 * d["depth"]):
        p = f"id_adapter.layers.{j}"
        for n in ("norm1", "norm2"):
            sd[f"{p}.0.{n}.weight"], sd[f"{p}.0.{n}.bias"] = make(dim), make(dim)
        sd[f"{p}.0.to_q.weight"] = make(inner, dim)
        sd[f"{p}.0.to_kv.weight"] = make(2 * inner, dim)
        sd[f"{p}.0.to_out.weight"] = make(dim, inner)
        sd[f"{p}.1.0.weight"], sd[f"{p}.1.0.bias"] = make(dim), make(dim)
        sd[f"{p}.1.1.weight"] = make(4 * dim, dim)
        sd[f"{p}.1.3.weight"] = make(dim, 4 * dim)
    modules = dict(unet.named_modules())
    for i, name in enumerate(unet.attn_processors):
        attn = modules[name.removesuffix(".processor")]
        if attn.is_cross_attention:
            sd[f"id_adapter_attn_layers.{i}.id_to_k.weight"] = make(attn.to_k.out_features, out_dim)
            sd[f"id_adapter_attn_layers.{i}.id_to_v.weight"] = make(attn.to_v.out_features, out_dim)
    return sd


def _reference_idformer(sd, x, ys, d=TINY):
    """The release's IDFormer forward (encoders_transformer.py), on its own state dict."""
    w = {k.removeprefix("id_adapter."): v for k, v in sd.items() if k.startswith("id_adapter.")}

    def mapping(prefix, h):
        for idx in (0, 3):
            h = F.linear(h, w[f"{prefix}.{idx}.weight"], w[f"{prefix}.{idx}.bias"])
            h = F.layer_norm(
                h, h.shape[-1:], w[f"{prefix}.{idx + 1}.weight"], w[f"{prefix}.{idx + 1}.bias"]
            )
            h = F.leaky_relu(h, 0.01)
        return F.linear(h, w[f"{prefix}.6.weight"], w[f"{prefix}.6.bias"])

    def attention(p, ctx, lat):
        ctx = F.layer_norm(ctx, ctx.shape[-1:], w[f"{p}.norm1.weight"], w[f"{p}.norm1.bias"])
        lat = F.layer_norm(lat, lat.shape[-1:], w[f"{p}.norm2.weight"], w[f"{p}.norm2.bias"])
        q = F.linear(lat, w[f"{p}.to_q.weight"])
        k, v = F.linear(torch.cat([ctx, lat], dim=-2), w[f"{p}.to_kv.weight"]).chunk(2, dim=-1)
        b, h, dh = q.shape[0], d["heads"], d["dim_head"]
        q, k, v = (t.view(b, t.shape[1], h, dh).transpose(1, 2) for t in (q, k, v))
        att = ((q * dh**-0.25) @ (k * dh**-0.25).transpose(-2, -1)).float().softmax(-1)
        return F.linear(
            (att @ v).permute(0, 2, 1, 3).reshape(b, -1, h * dh), w[f"{p}.to_out.weight"]
        )

    def ff(p, h):
        h = F.layer_norm(h, h.shape[-1:], w[f"{p}.0.weight"], w[f"{p}.0.bias"])
        return F.linear(F.gelu(F.linear(h, w[f"{p}.1.weight"])), w[f"{p}.3.weight"])

    latents = w["latents"].repeat(x.shape[0], 1, 1)
    x = mapping("id_embedding_mapping", x).reshape(x.shape[0], -1, d["dim"])
    latents = torch.cat([latents, x], dim=1)
    for i in range(5):
        ctx = torch.cat([x, mapping(f"mapping_{i}", ys[i])], dim=1)
        for j in range(i * d["depth"], (i + 1) * d["depth"]):
            latents = attention(f"layers.{j}.0", ctx, latents) + latents
            latents = ff(f"layers.{j}.1", latents) + latents
    return latents[:, : d["queries"]] @ w["proj_out"]


def _tiny_config(out_dim: int) -> IDEncoderConfig:
    d = TINY
    return IDEncoderConfig(
        kind="idformer", id_dim=d["id"], clip_dim=d["clip"], vit_dim=d["vit"], num_vit_layers=5,
        output_dim=out_dim, num_tokens=d["queries"], num_id_tokens=d["id_tokens"], dim=d["dim"],
        depth_per_layer=d["depth"], heads=d["heads"], dim_head=d["dim_head"], mlp_dim=d["mlp"],
        normalize_clip=False, proj_bias=False, out_norm=False,
    )  # fmt: skip


def test_the_full_size_release_fits_sdxl_key_for_key():
    """Real SDXL and the release's sizes, tensors on the meta device (no memory): the 172
    IDFormer tensors and the 70 cross-attention layers' 140 projections, each used once."""
    unet = sdxl_unet_skeleton()
    sd = _official(
        unet,
        {
            "dim": 1024,
            "heads": 16,
            "dim_head": 64,
            "mlp": 1024,
            "vit": 1024,
            "id": 512,
            "clip": 768,
            "queries": 32,
            "id_tokens": 5,
            "depth": 2,
        },
        out_dim=2048,
        make=lambda *s: torch.empty(*s, device="meta"),
    )
    encoder_keys = [k for k in sd if k.startswith("id_adapter.")]
    attention_keys = [k for k in sd if k.startswith("id_adapter_attn_layers.")]
    assert (len(encoder_keys), len(attention_keys)) == (172, 140)
    assert sorted({int(k.split(".")[1]) for k in attention_keys}) == list(range(1, 140, 2))
    encoder, adapter = modules_from_release(sd, unet, official_encoder_config())
    assert len(encoder.state_dict()) == 172 and len(adapter.state_dict()) == 140
    first = adapter.layers["down_blocks_1_attentions_0_transformer_blocks_0_attn2"]
    assert first.to_k_id.weight.shape == (640, 2048)  # index 1: the first cross-attention
    assert encoder.proj_out.bias is None and isinstance(encoder.norm_out, torch.nn.Identity)


def test_an_imported_release_computes_the_release_and_loads_as_pulid(tmp_path):
    from sameface.methods.pulid.model import PuLIDModel, read_meta
    from sameface.models import tiny_base_model

    base = tiny_base_model("sdxl")
    out_dim = base.unet.config.cross_attention_dim
    torch.manual_seed(0)
    sd = {k: v * 0.3 for k, v in _official(base.unet).items()}
    from sameface.tensorfile import save_safetensors

    save_safetensors({k: v.half() for k, v in sd.items()}, tmp_path / "pulid_v1.1.safetensors")
    sd = {k: v.half().float() for k, v in sd.items()}  # as stored: 16-bit
    folder = import_pulid(tmp_path / "pulid_v1.1.safetensors", tmp_path / "imported",
                          unet=base.unet, config=_tiny_config(out_dim))  # fmt: skip
    meta = read_meta(folder)
    assert meta["config"]["num_zero"] == 20 and meta["config"]["ortho"] == "v2"
    assert meta["config"]["raw_id_embedding"] is True and meta["license"] == "pulid"
    assert meta["clip_vision"]["name"] == "EVA02-CLIP-L-14-336"
    model = PuLIDModel.load(folder, base)  # strict: every tensor fits
    try:
        g = torch.Generator().manual_seed(1)
        ident = torch.randn(2, TINY["id"], generator=g)
        clip = torch.randn(2, TINY["clip"], generator=g)
        ys = [torch.randn(2, 7, TINY["vit"], generator=g) for _ in range(5)]
        ours = model.encoder(ident, clip, ys)
        want = _reference_idformer(sd, torch.cat([ident, clip], dim=-1), ys)
        assert torch.allclose(ours, want, atol=1e-4, rtol=1e-4)
        assert model.adapter.num_zero == 20 and model.adapter.ortho == "v2"
        name = next(n for n in base.unet.attn_processors if "attn2" in n)
        i = list(base.unet.attn_processors).index(name)
        key = name.removesuffix(".processor").replace(".", "_")
        assert torch.equal(model.adapter.layers[key].to_v_id.weight,
                           sd[f"id_adapter_attn_layers.{i}.id_to_v.weight"])  # fmt: skip
    finally:
        model.remove()
    # A folder imported before `raw_id_embedding` existed would feed unit vectors: refused.
    meta["config"].pop("raw_id_embedding")
    (folder / "pulid.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="import pulid` again"):
        PuLIDModel.load(folder, base)


def test_what_is_not_the_release_is_refused(tmp_path):
    from sameface.models import tiny_base_model
    from sameface.tensorfile import save_safetensors

    base = tiny_base_model("sdxl")
    cfg = _tiny_config(base.unet.config.cross_attention_dim)
    sd = _official(base.unet)
    (tmp_path / "pulid_v1.bin").write_bytes(b"x")
    with pytest.raises(ArtifactError, match=r"PuLID v1 .* has no sameface encoder kind"):
        import_pulid(tmp_path / "pulid_v1.bin", tmp_path / "o", unet=base.unet, config=cfg)
    cases = {
        "left over": sd | {"id_adapter.layers.99.0.to_q.weight": torch.zeros(1)},
        "missing": {k: v for k, v in sd.items() if k != "id_adapter.latents"},
        "not cross-attention": sd | {"id_adapter_attn_layers.0.id_to_k.weight": torch.zeros(1)},
        "not a PuLID v1.1 file": sd | {"model.diffusion": torch.zeros(1)},
    }
    for why, bad in cases.items():
        save_safetensors(bad, tmp_path / "bad.safetensors")
        with pytest.raises(ArtifactError, match=why):
            import_pulid(tmp_path / "bad.safetensors", tmp_path / "o", unet=base.unet, config=cfg)
    assert not (tmp_path / "o").exists()


def test_an_imported_release_refuses_another_vision_tower(tmp_path):
    """OpenAI's ViT-L/14-336 has EVA02-CLIP-L-14-336's shapes: only its name tells them apart."""
    from types import SimpleNamespace

    from sameface.methods.pulid.model import PuLIDModel
    from sameface.models import tiny_base_model
    from sameface.tensorfile import save_safetensors

    base = tiny_base_model("sdxl")
    save_safetensors(_official(base.unet), tmp_path / "r.safetensors")
    cfg = _tiny_config(base.unet.config.cross_attention_dim)
    folder = import_pulid(tmp_path / "r.safetensors", tmp_path / "imp", unet=base.unet, config=cfg)
    from sameface.errors import OutputError

    with pytest.raises(OutputError, match="holds a PuLID folder already"):
        import_pulid(tmp_path / "r.safetensors", tmp_path / "imp", unet=base.unet, config=cfg)
    with pytest.raises(ArtifactError, match="needs the vision tower EVA02-CLIP-L-14-336"):
        # the check reads only the tower's name, before anything of it is used
        PuLIDModel.load(
            folder, base, vision=SimpleNamespace(name="openai/clip-vit-large-patch14-336")
        )


def test_an_imported_release_encodes_with_the_users_eva02_file(tmp_path, monkeypatch):
    """The folder names its tower; `clip_vision: FILE` is where the user keeps it, loaded
    (and then checked by name) instead of looking the name up in the cache."""
    from sameface.identity import Identity
    from sameface.methods.pulid import encode
    from sameface.methods.pulid.config import PuLIDConfig
    from sameface.models import tiny_base_model
    from sameface.tensorfile import save_safetensors

    base = tiny_base_model("sdxl")
    save_safetensors(_official(base.unet), tmp_path / "r.safetensors")
    cfg = _tiny_config(base.unet.config.cross_attention_dim)
    folder = import_pulid(tmp_path / "r.safetensors", tmp_path / "imp", unet=base.unet, config=cfg)
    eva = tmp_path / "EVA02_CLIP_L_336_psz14_s6B.pt"
    eva.write_bytes(b"")
    asked = []

    def load(spec, **kw):
        asked.append(str(spec))
        raise RuntimeError("stop here")

    monkeypatch.setattr(encode.ClipVision, "load", staticmethod(load))
    ident = Identity.__new__(Identity)
    for spec, want in ((str(eva), str(eva)), ("openai/clip-vit-large-patch14-336", None)):
        with pytest.raises(RuntimeError, match="stop here"):
            encode.personalize(ident, base, PuLIDConfig(adapter=str(folder), clip_vision=spec),
                               tmp_path / "art")  # fmt: skip
        assert asked[-1] == (want or "EVA02-CLIP-L-14-336")
