"""PuLID (seed 004) model and inference on tiny SD1 / SDXL models, a tiny CLIP vision tower and
SFace identities: exactness without ID, shapes, save/load, artifact -> pipeline, CFG order,
restoration, strict loading."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from sameface.adapters import IDAttnProcessor
from sameface.errors import ArtifactError, DependencyMissingError, ModelNotFoundError, SamefaceError
from sameface.faces.aligned_masks import aligned_face_masks, template_face_mask
from sameface.identity import Identity
from sameface.methods import GenerationOutput, artifact_method
from sameface.methods.pulid import (
    METHOD,
    ClipVision,
    PuLIDConfig,
    PuLIDModel,
    PuLIDPipeline,
    personalize,
    tiny_clip_vision,
)
from sameface.methods.pulid.model import ADAPTER_FILE, read_meta
from sameface.models import tiny_base_model

from .conftest import portrait

FAMILIES = ["sd1", "sdxl"]
# A small encoder that fits the tiny CLIP vision tower (4 layers, width 32, 16-d embeddings).
SMALL = {
    "clip_vision": "tiny-random",
    "vit_layers": (1, 2, 4),
    "encoder_dim": 32,
    "heads": 2,
    "dim_head": 16,
    "mlp_dim": 32,
    "depth_per_layer": 1,
    "num_tokens": 4,
    "num_id_tokens": 2,
}


def cfg(**kw) -> PuLIDConfig:
    return PuLIDConfig(**(SMALL | kw))


@pytest.fixture(scope="module")
def ident(obama, obama2) -> Identity:
    return Identity.from_images([obama, obama2], square_size=64, mask_method="landmarks")


@pytest.fixture(scope="module")
def vision() -> ClipVision:
    return tiny_clip_vision()


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _base_images(base, prompt: str, **kw) -> np.ndarray:
    """The plain base model's images (no adapter), as the pipeline would make them."""
    pipe = base.as_pipeline()
    out = pipe(
        prompt=prompt.replace("<id>", "a person"),
        num_inference_steps=2,
        generator=_gen(),
        output_type="np",
        height=64,
        width=64,
        **kw,
    )
    return np.asarray(out.images)


def _artifact(tmp_path, base, ident, vision, **kw):
    """Save a freshly initialised PuLID model and personalise `ident` with it."""
    with PuLIDModel(base, cfg(**kw), vision=vision) as model:
        model.save(tmp_path / "pulid")
    return personalize(ident, base, cfg(**kw), tmp_path / "art", adapter=tmp_path / "pulid")


# ---- the model -------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_parameters_are_exactly_encoder_and_adapter(family, vision):
    base = tiny_base_model(family)
    unet_ids = {id(p) for p in base.unet.parameters()}
    with PuLIDModel(base, cfg(), vision=vision) as model:
        assert [n for n, _ in model.named_children()] == ["encoder", "adapter"]
        params = {id(p) for p in model.parameters()}
        expected = {id(p) for p in model.encoder.parameters()} | {
            id(p) for p in model.adapter.parameters()
        }
        assert params == expected and params.isdisjoint(unet_ids)
        assert not {id(p) for p in vision.model.parameters()} & params
        assert all(k.startswith(("encoder.", "adapter.")) for k in model.state_dict())
        assert model.cross_dim == base.unet.config.cross_attention_dim
        assert model.cond_dim == 128 + vision.clip_dim  # SFace ⊕ CLIP embedding


@pytest.mark.parametrize("family", FAMILIES)
def test_token_shapes_for_one_and_three_photos(family, vision, obama, obama2):
    three = Identity.from_images(
        [obama, obama2, portrait("obama3.jpg")], square_size=64, mask_method="landmarks"
    )
    one = Identity.from_images([obama], square_size=64, mask_method="landmarks")
    base = tiny_base_model(family)
    d = base.unet.config.cross_attention_dim
    with PuLIDModel(base, cfg(), vision=vision) as model:
        id_vec, vit = model.condition(three)
        assert id_vec.shape == (1, 3, model.cond_dim) and len(vit) == 3
        assert all(h.shape == (1, 3, vision.seq_len, vision.vit_dim) for h in vit)
        # The CLIP half is unit length (PuLID normalises id_cond_vit).
        torch.testing.assert_close(id_vec[..., 128:].norm(dim=-1), torch.ones(1, 3))
        for who in (one, three):
            cond, uncond = model.identity_tokens(who)
            assert cond.shape == uncond.shape == (1, 4, d)  # IDFormer: N tokens for any P
        assert model.uncond_tokens(3).shape == (3, 4, d)
    # The seed's MLP encoder with "concat": tokens per photo; uncond matches.
    with PuLIDModel(base, cfg(encoder="mlp", num_tokens=5), vision=vision) as mlp:
        cond, uncond = mlp.identity_tokens(three)
        assert cond.shape == uncond.shape == (1, 15, d)
        assert mlp.identity_tokens(one)[0].shape == (1, 5, d)


def test_condition_of_a_training_batch(vision, ident):
    """The trainer's path: crops + aligned masks + embeddings as arrays, one photo each."""
    base = tiny_base_model("sd1")
    masks = aligned_face_masks(ident)
    with PuLIDModel(base, cfg(), vision=vision) as model:
        id_vec, vit = model.condition(ident.aligned, masks, ident.embeddings)
        assert id_vec.shape == (2, 1, model.cond_dim)
        # The same photos as one identity: the same per-photo conditions.
        id_one, vit_one = model.condition(ident)
        torch.testing.assert_close(id_vec[:, 0], id_one[0])
        torch.testing.assert_close(vit[0][:, 0], vit_one[0][0])
        # Float (B, 3, H, W) crops in [0, 1] give the same result as uint8 (B, H, W, 3).
        floats = torch.from_numpy(ident.aligned).permute(0, 3, 1, 2).float() / 255
        id_f, _ = model.condition(
            floats, torch.from_numpy(masks), torch.from_numpy(ident.embeddings)
        )
        torch.testing.assert_close(id_f, id_vec)
        tokens = model.tokens(id_vec, vit)
        assert tokens.shape == (2, 4, model.cross_dim)
        tokens.square().mean().backward()
        assert all(p.grad is not None for p in model.encoder.parameters())
        with pytest.raises(ValueError, match="face embeddings"):
            model.condition(ident.aligned, masks, ident.embeddings[:, :64])


def test_only_the_face_reaches_clip(vision, ident):
    """Parsed face: pixels outside the face mask are painted white, so they cannot matter."""
    base = tiny_base_model("sd1")
    masks = aligned_face_masks(ident)
    crops = ident.aligned.copy()
    outside = masks == 0
    crops[outside] = np.random.default_rng(0).integers(0, 256, (int(outside.sum()), 3))
    with PuLIDModel(base, cfg(), vision=vision) as model:
        a, va = model.condition(ident.aligned, masks, ident.embeddings)
        b, vb = model.condition(crops, masks, ident.embeddings)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(va[-1], vb[-1])
        inside = ident.aligned.copy()
        inside[masks == 255] = 0
        c, _ = model.condition(inside, masks, ident.embeddings)
        assert not torch.allclose(a, c)


def test_aligned_masks_follow_the_face(ident):
    masks = aligned_face_masks(ident)
    assert masks.shape == (2, 112, 112) and masks.dtype == np.uint8
    template = template_face_mask(112) > 127
    for m in masks > 127:  # the landmark ellipse, carried through square crop and alignment
        assert (m & template).sum() / (m | template).sum() > 0.85
    no_boxes = dataclasses.replace(ident, meta={})
    assert np.array_equal(aligned_face_masks(no_boxes), np.stack([template_face_mask(112)] * 2))


def test_uncond_tokens_are_pulids(vision):
    """Zero id ⊕ CLIP vector with zero ViT states (PuLID's code) or a black image's."""
    base = tiny_base_model("sd1")
    with PuLIDModel(base, cfg(), vision=vision) as model:
        id_vec, vit = model.uncond_condition(2)
        assert not id_vec.any() and not any(h.any() for h in vit)
        torch.testing.assert_close(model.uncond_tokens(2), model.tokens(id_vec, vit))
    with PuLIDModel(base, cfg(uncond_vit="black"), vision=vision) as model:
        id_vec, vit = model.uncond_condition(1)
        _, black = vision.features(torch.zeros(1, 3, 32, 32), (1, 2, 4))
        assert not id_vec.any()
        torch.testing.assert_close(vit[0][:, 0], black[0])


def test_drop_condition_gives_the_uncond_tokens(vision, ident):
    base = tiny_base_model("sd1")
    with PuLIDModel(base, cfg(), vision=vision) as model:
        id_vec, vit = model.condition(ident.aligned, aligned_face_masks(ident), ident.embeddings)
        dropped = model.tokens(*model.drop_condition(id_vec, vit, torch.tensor([True, False])))
        torch.testing.assert_close(dropped[0], model.uncond_tokens(1)[0])
        torch.testing.assert_close(dropped[1], model.tokens(id_vec, vit)[1])


def test_vit_layers_are_checked_against_the_vision_model(vision):
    base = tiny_base_model("sd1")
    with pytest.raises(ValueError, match="vit_layers"):
        PuLIDModel(base, PuLIDConfig(clip_vision="tiny-random"), vision=vision)  # (4, ..., 20)
    assert not any(isinstance(p, IDAttnProcessor) for p in base.unet.attn_processors.values())


def test_recogniser_must_match(vision, ident):
    base = tiny_base_model("sd1")
    other = dataclasses.replace(
        ident, meta=ident.meta | {"recognizer": {"name": "dlib", "dim": 128}}
    )
    with (
        PuLIDModel(base, cfg(), vision=vision) as model,
        pytest.raises(SamefaceError, match="recognizer sface"),
    ):
        model.encode_identity(other)


@pytest.mark.parametrize("family", FAMILIES)
def test_remove_restores_the_unet(family, vision):
    base = tiny_base_model(family)
    before = dict(base.unet.attn_processors)
    flags = {n: p.requires_grad for n, p in base.unet.named_parameters()}
    x = torch.randn(1, 4, 8, 8, generator=_gen())
    cond = torch.randn(1, 77, base.unet.config.cross_attention_dim, generator=_gen(1))
    added = None
    if family == "sdxl":
        added = {"text_embeds": torch.randn(1, 64), "time_ids": torch.zeros(1, 6)}

    def unet(**kw):
        with torch.no_grad():
            return base.unet(x, 10, cond, added_cond_kwargs=added, **kw).sample

    ref = unet()
    model = PuLIDModel(base, cfg(adapter_init="random"), vision=vision)
    tokens = model.uncond_tokens(1) + 1
    assert not torch.allclose(unet(cross_attention_kwargs={"id_tokens": tokens}), ref)
    model.remove()
    after = base.unet.attn_processors
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    assert {n: p.requires_grad for n, p in base.unet.named_parameters()} == flags
    assert torch.equal(unet(), ref)
    model.remove()  # idempotent
    with (  # the UNet is free again; one adapter at a time
        PuLIDModel(base, cfg(), vision=vision),
        pytest.raises(SamefaceError, match="already has an ID adapter"),
    ):
        PuLIDModel(base, cfg(), vision=vision)
    assert all(base.unet.attn_processors[k] is before[k] for k in before)


# ---- save / load -----------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip_is_exact(tmp_path, family, vision, ident):
    base = tiny_base_model(family)
    with PuLIDModel(base, cfg(adapter_init="random"), vision=vision) as model:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=_gen(3)))  # as if trained
        tokens = model.encode_identity(ident)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        model.save(tmp_path, extra={"step": 7})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "adapter.safetensors",
        "encoder.safetensors",
        "pulid.json",
    ]
    meta = read_meta(tmp_path)
    assert meta["family"] == family and meta["step"] == 7
    assert meta["recognizer"] == {"name": "sface", "dim": 128}
    assert meta["clip_vision"]["name"] == "tiny-random" and meta["vit_layers"] == [1, 2, 4]
    assert meta["cross_attention_dim"] == base.unet.config.cross_attention_dim
    # Loading by the recorded spec rebuilds the same tiny vision tower.
    with PuLIDModel.load(tmp_path, base, meta["clip_vision"]["name"]) as loaded:
        assert loaded.state_dict().keys() == state.keys()
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
        assert torch.equal(loaded.encode_identity(ident), tokens)
        assert loaded.config == cfg(adapter_init="random")
        uncond = loaded.uncond_tokens(1)
    # Without vision: tokens from given conditions only.
    with PuLIDModel.load(tmp_path, base) as bare:
        assert torch.equal(bare.uncond_tokens(1), uncond)
        with pytest.raises(SamefaceError, match="without its CLIP vision"):
            bare.encode_identity(ident)


def test_load_is_strict(tmp_path, vision):
    sd1 = tiny_base_model("sd1")
    with PuLIDModel(sd1, cfg(), vision=vision) as model:
        model.save(tmp_path / "a")
        model.save(tmp_path / "b")
    before = dict(sd1.unet.attn_processors)
    with pytest.raises(ArtifactError, match="sd1 base model, not sdxl"):
        PuLIDModel.load(tmp_path / "a", tiny_base_model("sdxl"))
    sd2 = tiny_base_model("sd2")  # same width as the tiny sd1: the family still decides
    with pytest.raises(ArtifactError, match="not sd2"):
        PuLIDModel.load(tmp_path / "a", sd2)
    wide = tiny_clip_vision()
    wide.clip_dim = 24
    with pytest.raises(ArtifactError, match="clip_dim"):
        PuLIDModel.load(tmp_path / "a", sd1, wide)
    with pytest.raises(ArtifactError, match="not a PuLID model"):
        PuLIDModel.load(tmp_path, sd1)
    # Files of two saves mixed (an interrupted overwrite) are refused.
    (tmp_path / "a" / ADAPTER_FILE).write_bytes((tmp_path / "b" / ADAPTER_FILE).read_bytes())
    with pytest.raises(ArtifactError, match="different saves"):
        PuLIDModel.load(tmp_path / "a", sd1)
    # A corrupt weight file is refused and leaves the UNet as it was.
    (tmp_path / "b" / "encoder.safetensors").write_bytes(b"\0" * 8)
    with pytest.raises(ArtifactError):
        PuLIDModel.load(tmp_path / "b", sd1)
    assert all(sd1.unet.attn_processors[k] is before[k] for k in before)


def test_clip_vision_loads_only_local_weights(tmp_path, no_network):
    from transformers import CLIPConfig, CLIPModel

    tiny = tiny_clip_vision(seed=3)
    tiny.model.save_pretrained(str(tmp_path / "vision"))
    loaded = ClipVision.load(tmp_path / "vision")
    x = torch.rand(2, 3, 40, 40)
    a, ha = tiny.features(x, [0, 4])
    b, hb = loaded.features(x, [0, 4])
    assert torch.equal(a, b) and torch.equal(ha[1], hb[1])
    assert a.shape == (2, 16) and ha[0].shape == (2, 17, 32)
    # A whole CLIPModel folder: its vision tower and projection.
    full = CLIPModel(
        CLIPConfig(
            text_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1},
            vision_config=tiny.model.config.to_dict(),
            projection_dim=16,
        )
    )
    full.save_pretrained(str(tmp_path / "full"))
    clip = ClipVision.load(tmp_path / "full")
    assert (clip.clip_dim, clip.vit_dim, clip.num_layers) == (16, 32, 4)
    feats = full.get_image_features(pixel_values=clip.preprocess(x))
    feats = feats if isinstance(feats, torch.Tensor) else feats.pooler_output
    torch.testing.assert_close(clip.features(x, [1])[0], feats)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        ClipVision.load(tmp_path / "missing")
    with pytest.raises(ModelNotFoundError, match="not in the Hugging Face cache"):
        ClipVision.load("nobody/no-such-clip")


# ---- personalise and generate ----------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_artifact_generates_deterministically(tmp_path, family, vision, ident):
    base = tiny_base_model(family)
    out = _artifact(tmp_path, base, ident, vision, adapter_init="random")
    assert artifact_method(out) == "pulid"
    assert Identity.load(out / "identity").num_photos == 2
    meta = json.loads((out / "artifact.json").read_text())
    assert meta["adapter"] == str((tmp_path / "pulid").resolve()) and meta["family"] == family
    assert meta["id_scale"] == 0.8 and meta["num_tokens"] == 4
    with PuLIDModel.load(tmp_path / "pulid", base, vision) as model:
        cond, uncond = model.identity_tokens(ident)
    from safetensors.torch import load_file

    cached = load_file(str(out / "id_tokens.safetensors"))
    assert torch.equal(cached["cond"], cond) and torch.equal(cached["uncond"], uncond)

    def generate(seed, **kw):
        with PuLIDPipeline.from_artifact(out, base) as pipe:
            return pipe(
                "a photo of <id> in a garden",
                num_inference_steps=2,
                generator=_gen(seed),
                num_images_per_prompt=2,
                output_type="np",
                **kw,
            )

    a, b, c = generate(0), generate(0), generate(1)
    assert isinstance(a, GenerationOutput) and a.prompts == ["a photo of <id> in a garden"] * 2
    img = np.asarray(a.images)
    assert img.shape == (2, 64, 64, 3) and img.dtype == np.float32 and np.isfinite(img).all()
    np.testing.assert_array_equal(img, np.asarray(b.images))
    assert np.abs(img - np.asarray(c.images)).max() > 1e-4
    assert np.abs(img - np.asarray(generate(0, id_scale=2.0).images)).max() > 1e-4
    assert not any(isinstance(p, IDAttnProcessor) for p in base.unet.attn_processors.values())


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_v_adapter_generates_the_base_models_images(tmp_path, family, vision, ident):
    base = tiny_base_model(family)
    ref = _base_images(base, "a photo of <id> smiling")
    out = _artifact(tmp_path, base, ident, vision, adapter_init="zero_v")
    with PuLIDPipeline.from_artifact(out, base) as pipe:
        got = pipe(
            "a photo of <id> smiling", num_inference_steps=2, generator=_gen(), output_type="np"
        )
    np.testing.assert_array_equal(np.asarray(got.images), ref)


@pytest.mark.parametrize("family", FAMILIES)
def test_id_scale_zero_generates_the_base_models_images(tmp_path, family, vision, ident):
    base = tiny_base_model(family)
    ref = _base_images(base, "a photo of <id>", negative_prompt="blurry")
    out = _artifact(tmp_path, base, ident, vision, adapter_init="copy")
    with PuLIDPipeline.from_artifact(out, base) as pipe:
        kw = dict(negative_prompt="blurry", num_inference_steps=2, output_type="np")
        zero = pipe("a photo of <id>", generator=_gen(), id_scale=0.0, **kw)
        full = pipe("a photo of <id>", generator=_gen(), id_scale=1.0, **kw)
    np.testing.assert_array_equal(np.asarray(zero.images), ref)
    assert np.abs(np.asarray(full.images) - ref).max() > 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_cfg_pairs_uncond_tokens_with_the_negative_prompt(tmp_path, family, vision, ident):
    """diffusers batches [negative; positive]: the uncond ID tokens must sit with the negative."""
    from sameface.models.text import encode_prompts

    base = tiny_base_model(family)
    out = _artifact(tmp_path, base, ident, vision)
    seen = []

    def spy(module, args, kwargs):
        hidden = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        seen.append((hidden, kwargs["cross_attention_kwargs"]["id_tokens"]))

    with PuLIDPipeline.from_artifact(out, base) as pipe:
        handle = base.unet.register_forward_pre_hook(spy, with_kwargs=True)
        try:
            pipe(
                ["<id> reading", "<id> running"],
                negative_prompt=["ugly", "dark"],
                num_inference_steps=1,
                num_images_per_prompt=2,
                output_type="np",
            )
            hidden, tokens = seen[0]
            seen.clear()
            pipe("<id>", num_inference_steps=1, guidance_scale=1.0, output_type="np")
        finally:
            handle.remove()
    with torch.no_grad():
        neg, _ = encode_prompts(base, ["ugly", "ugly", "dark", "dark"])
        pos, _ = encode_prompts(base, ["a person reading"] * 2 + ["a person running"] * 2)
    torch.testing.assert_close(hidden, torch.cat([neg, pos]))
    assert torch.equal(tokens[:4], pipe.uncond.expand(4, -1, -1))
    assert torch.equal(tokens[4:], pipe.cond.expand(4, -1, -1))
    assert seen[0][1].shape[0] == 1  # no CFG: the identity's tokens only


def test_personalize_needs_a_trained_model_or_untrained(tmp_path, vision, ident):
    base = tiny_base_model("sd1")
    with pytest.raises(SamefaceError, match="trained PuLID model"):
        personalize(ident, base, cfg(), tmp_path / "a")
    out = personalize(ident, base, cfg(adapter="untrained"), tmp_path / "b", vision=vision)
    meta = json.loads((out / "artifact.json").read_text())
    assert meta["untrained"] and meta["adapter"] == str((out / "untrained-pulid").resolve())
    with PuLIDPipeline.from_artifact(out, base) as pipe:
        assert pipe("<id>", num_inference_steps=1, output_type="np").images[0].shape == (64, 64, 3)


def test_tokens_of_a_retrained_model_are_refused(tmp_path, vision, ident):
    base = tiny_base_model("sd1")
    out = _artifact(tmp_path, base, ident, vision)
    with PuLIDModel.load(tmp_path / "pulid", base) as model:
        model.save(tmp_path / "pulid")  # training went on: another save
    with pytest.raises(ArtifactError, match="run personalize again"):
        PuLIDPipeline.from_artifact(out, base)
    with pytest.raises(ArtifactError, match="sd1 base model but this one is sdxl"):
        PuLIDPipeline.from_artifact(out, tiny_base_model("sdxl"))


# ---- settings and registry -------------------------------------------------------------


def test_config_validation_and_round_trip():
    c = PuLIDConfig()
    assert (c.num_tokens, c.num_id_tokens, c.vit_layers, c.learning_rate) == (
        32,
        5,
        (4, 8, 12, 16, 20),
        1e-4,
    )
    assert (c.id_scale, c.inference_id_scale, c.id_drop_prob, c.lightning_steps) == (
        1.0,
        0.8,
        0.1,
        4,
    )
    assert c.recognizer_dim == 128 and PuLIDConfig(recognizer="insightface").recognizer_dim == 512
    assert PuLIDConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    for bad, match in [
        ({"encoder": "resampler"}, "encoder"),
        ({"stage": 4}, "stage"),
        ({"vit_layers": (4, 4)}, "vit_layers"),
        ({"vit_layers": "4,8"}, "vit_layers"),
        ({"fast_sampler": "euler"}, "fast_sampler"),
        ({"steps": "many"}, "steps must be a whole number"),
        ({"id_drop_prob": 1.0}, "id_drop_prob"),
        ({"learning_rate": True}, "learning_rate"),
        ({"recognizer": "arcface"}, "recognizer"),
        ({"gradient_checkpointing": "yes"}, "gradient_checkpointing"),
    ]:
        with pytest.raises(ValueError, match=match):
            PuLIDConfig(**bad)


def test_method_spec(monkeypatch):
    assert METHOD.name == "pulid" and METHOD.kind == "encoder" and METHOD.train is not None
    assert METHOD.config_cls is PuLIDConfig and METHOD.pipeline_cls is PuLIDPipeline
    import sameface.methods.pulid as pkg

    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(pkg.importlib, "import_module", missing)
    with pytest.raises(DependencyMissingError, match=r"train\.py is missing"):
        METHOD.train()


def test_a_model_on_raw_embeddings_takes_the_identitys_raw_ones(vision, ident):
    """`raw_id_embedding` (the released PuLID): the ID part of the condition is the recorded
    raw embedding; an identity without recorded lengths is refused, not silently unit."""
    base = tiny_base_model("sd1")
    longer = dataclasses.replace(ident, meta=ident.meta | {"embedding_norms": [2.0, 3.0]})
    with PuLIDModel(base, cfg(raw_id_embedding=True), vision=vision) as model:
        id_vec, _ = model.condition(longer)
        raw = torch.from_numpy(ident.embeddings * np.array([[2.0], [3.0]], np.float32))
        torch.testing.assert_close(id_vec[0, :, : model.id_dim], raw)
        old = dataclasses.replace(
            ident, meta={k: v for k, v in ident.meta.items() if k != "embedding_norms"}
        )
        with pytest.raises(SamefaceError, match="raw embedding"):
            model.condition(old)


def test_new_settings_are_type_checked():
    with pytest.raises(ValueError, match="face_parser must be a path"):
        cfg(face_parser=123)
    with pytest.raises(ValueError, match="raw_id_embedding must be true or false"):
        cfg(raw_id_embedding="yes")
    from pathlib import Path

    assert cfg(face_parser=Path("/m/parsing_bisenet.pth")).face_parser == "/m/parsing_bisenet.pth"
