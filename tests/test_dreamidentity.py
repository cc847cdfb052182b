"""DreamIdentity (seed 000) on tiny models: the backbones read several depths (arcface_torch's
ViT layout loaded safely), the M² encoder's words land on the placeholder's positions, zero
projections read as the anchor word, the artifact is a textual-inversion file plain diffusers
loads, the self-augment filter keeps the top quarter, and training mixes both data kinds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sameface.adapters.tokens import EncoderTokens, expand_placeholder
from sameface.data.prepare import PrepareSettings, prepare_face_dataset
from sameface.errors import ArtifactError, ModelNotFoundError, SamefaceError
from sameface.identity import Identity
from sameface.methods import get_method
from sameface.methods.dreamidentity.augment import (
    TRIPLETS,
    TripletSet,
    keep_top,
    self_augment,
    write_triplets,
)
from sameface.methods.dreamidentity.backbones import (
    ArcFaceViT,
    SFaceStages,
    load_backbone,
    tiny_vit,
)
from sameface.methods.dreamidentity.config import DreamIdentityConfig
from sameface.methods.dreamidentity.model import M2Encoder
from sameface.methods.dreamidentity.pipeline import DreamIdentityPipeline
from sameface.methods.dreamidentity.train import reconstruction_prompt
from sameface.models import save_base_model, tiny_base_model
from sameface.models.text import encode_prompts

REPO = Path(__file__).resolve().parents[1]
METHOD = get_method("dreamidentity")
TINY = {"backbone": "tiny-vit", "feature_layers": (1, 2, 3, 4)}


@pytest.fixture(scope="module")
def ident(obama, obama2) -> Identity:
    return Identity.from_images([obama, obama2], square_size=64, mask_method="landmarks")


@pytest.fixture(scope="module")
def data(tmp_path_factory, analyzer):
    out = tmp_path_factory.mktemp("data")
    prepare_face_dataset(
        REPO / "examples" / "faces", out, analyzer, PrepareSettings(resolution=64), progress=False
    )
    return out


def _faces(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, 112, 112, generator=torch.Generator().manual_seed(0)) * 255


def _trained_like(model: M2Encoder) -> M2Encoder:
    """Give the zero-initialised projections weights, as training would."""
    g = torch.Generator().manual_seed(1)
    for per_encoder in model.proj:
        for p in per_encoder:
            for lin in (m for m in p if isinstance(m, torch.nn.Linear)):
                lin.weight.data = torch.randn(lin.weight.shape, generator=g) * 0.05
    return model


# ---- backbones ---------------------------------------------------------------------------


def test_vit_reads_the_chosen_blocks_and_the_embedding():
    vit = tiny_vit((2, 4))
    feats = vit.features(_faces())
    assert [tuple(f.shape) for f in feats] == [(2, 32), (2, 32), (2, 24)] and vit.dims == [
        32,
        32,
        24,
    ]
    assert not any(p.requires_grad for p in vit.parameters())


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_arcface_torch_vit_weights_load_safely(tmp_path, suffix):
    """A state dict with arcface_torch's names (as its model zoo ships them, `module.` prefix
    of DDP included) loads into the same network, from safetensors or a weights-only torch file."""
    from safetensors.torch import save_file

    ref = tiny_vit((1, 3))
    sd = {f"module.{k}": v.clone() for k, v in ref.state_dict().items()}
    path = tmp_path / f"vit{suffix}"
    if suffix == ".pt":
        torch.save(sd, path)
    else:
        save_file(sd, str(path))
    loaded = load_backbone(str(path), layers=(1, 3), heads=2)
    assert isinstance(loaded, ArcFaceViT) and loaded.shape == ref.shape
    for a, b in zip(loaded.features(_faces()), ref.features(_faces()), strict=True):
        torch.testing.assert_close(a, b)


def test_wrong_backbone_weights_are_clear_errors(tmp_path):
    from safetensors.torch import save_file

    sd = tiny_vit().state_dict()
    bad = dict(sd, **{"blocks.0.mlp.fc2.weight": torch.zeros(5, 5)})
    save_file(bad, str(tmp_path / "shape.safetensors"))
    with pytest.raises(ArtifactError, match="wrong shape"):
        load_backbone(str(tmp_path / "shape.safetensors"), layers=(1,), heads=2)
    save_file({"conv.weight": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ArtifactError, match="not an arcface_torch ViT"):
        load_backbone(str(tmp_path / "other.safetensors"))
    with pytest.raises(ArtifactError, match=r"blocks 1\.\.4"):
        load_backbone(str(_saved(tmp_path, sd)), layers=(3, 6, 9, 12), heads=2)
    with pytest.raises(ModelNotFoundError, match="not found"):
        load_backbone(str(tmp_path / "missing.pth"))
    with pytest.raises(ModelNotFoundError, match="unknown face backbone"):
        load_backbone("vit-huge")


def _saved(tmp_path, sd) -> Path:
    from safetensors.torch import save_file

    save_file(sd, str(tmp_path / "good.safetensors"))
    return tmp_path / "good.safetensors"


def test_sface_is_read_at_its_four_stages_and_embedding():
    backbone = load_backbone("sface")
    assert isinstance(backbone, SFaceStages) and len(backbone.dims) == 5
    feats = backbone.features(_faces())
    assert [f.shape[1] for f in feats] == backbone.dims and backbone.dims[-1] == 128
    # The last feature is SFace's own embedding.
    torch.testing.assert_close(feats[-1], backbone.sface(_faces()))


# ---- the encoder ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_words_per_text_encoder(family):
    base = tiny_base_model(family)
    model = M2Encoder(base, DreamIdentityConfig(**TINY), backbone=tiny_vit())
    words = model.words(model.features(_faces()[:, None].repeat(1, 3, 1, 1, 1)))
    widths = [e.get_input_embeddings().embedding_dim for e in base.text_encoders]
    assert [tuple(w.shape) for w in words] == [(2, 5, d) for d in widths]


def test_zero_projections_read_as_the_anchor_word():
    """Untrained (zero) projections: the prompt reads exactly as with the anchor word there."""
    base = tiny_base_model("sd1")
    model = M2Encoder(base, DreamIdentityConfig(**TINY), backbone=tiny_vit())
    words = model.words(model.features(_faces(1)[:, None]))
    with EncoderTokens(base.tokenizers, base.text_encoders, {"<id>": model.k}) as tokens:
        tokens.set("<id>")
        with tokens.given({"<id>": words}), torch.no_grad():
            ours, _ = encode_prompts(
                base,
                [expand_placeholder("a photo of <id>", "<id>", 5)],
                tokenizers=tokens.tokenizers,
            )
    with torch.no_grad():
        plain, _ = encode_prompts(base, ["a photo of " + " ".join(["person"] * 5)])
    torch.testing.assert_close(ours, plain)


def test_words_land_on_the_placeholder_positions():
    base = tiny_base_model("sd1")
    model = _trained_like(M2Encoder(base, DreamIdentityConfig(**TINY), backbone=tiny_vit()))
    words = model.words(model.features(_faces(2)[:, None]))
    prompts = [expand_placeholder(p, "<id>", 5) for p in ("<id> smiling", "a photo of <id>")]
    emb = base.text_encoder.get_input_embeddings()
    with EncoderTokens(base.tokenizers, base.text_encoders, {"<id>": model.k}) as tokens:
        tokens.set("<id>")
        ids = tokens.tokenizers[0](prompts, padding="max_length", return_tensors="pt").input_ids
        with tokens.given({"<id>": words}), torch.no_grad():
            rows = emb(ids)
        placeholder_ids = tokens.ids[0]["<id>"]
    for b, start in ((0, 1), (1, 4)):  # after <bos> ("smiling" follows) / after "a photo of"
        torch.testing.assert_close(rows[b, start : start + 5], words[0][b])
        assert ids[b, start : start + 5].tolist() == placeholder_ids
    plain = emb.weight[ids[1, :4]]
    torch.testing.assert_close(rows[1, :4], plain)  # the rest of the prompt is untouched


def test_multi_and_last_scales():
    base = tiny_base_model("sd1")
    last = _trained_like(
        M2Encoder(base, DreamIdentityConfig(**TINY, scales="last"), backbone=tiny_vit())
    )
    assert [p[0].normalized_shape[0] for p in last.proj[0]] == [24] * 5  # all from the embedding
    multi = M2Encoder(base, DreamIdentityConfig(**TINY), backbone=tiny_vit())
    assert [p[0].normalized_shape[0] for p in multi.proj[0]] == [32, 32, 32, 32, 24]


def test_mlp_projection_starts_at_the_anchor_and_round_trips(tmp_path):
    """`projection: mlp` (the seed's `MLP(f)`): zero-initialised last layer, saved and loaded."""
    base = tiny_base_model("sd1")
    cfg = DreamIdentityConfig(**TINY, projection="mlp")
    model = M2Encoder(base, cfg, backbone=tiny_vit())
    assert [type(m).__name__ for m in model.proj[0][0]] == ["LayerNorm", "Linear", "GELU", "Linear"]
    feats = model.features(_faces(2)[:, None])
    anchor = model.anchors()[0]
    torch.testing.assert_close(model.words(feats)[0], anchor.expand(2, 5, -1))
    model = _trained_like(model)
    words = model.words(feats)[0]
    assert not torch.allclose(words[0], words[1])  # two faces, two sets of words
    loaded = M2Encoder.load(model.save(tmp_path / "enc"), base, tiny_vit())
    assert loaded.config.projection == "mlp"
    torch.testing.assert_close(loaded.words(feats)[0], words)
    with pytest.raises(ValueError, match="projection"):
        DreamIdentityConfig(projection="conv")


def test_encoders_saved_before_the_projection_setting_load_as_linear(tmp_path):
    base = tiny_base_model("sd1")
    model = _trained_like(
        M2Encoder(base, DreamIdentityConfig(**TINY, projection="linear"), backbone=tiny_vit())
    )
    folder = model.save(tmp_path / "old")
    meta_file = folder / "dreamidentity.json"
    meta = json.loads(meta_file.read_text())
    del meta["config"]["projection"]
    meta_file.write_text(json.dumps(meta))
    loaded = M2Encoder.load(folder, base, tiny_vit())
    assert loaded.config.projection == "linear"
    feats = model.features(_faces(1)[:, None])
    torch.testing.assert_close(loaded.words(feats)[0], model.words(feats)[0])


# ---- artifact and generation ---------------------------------------------------------------


def _trained_folder(tmp_path, base) -> Path:
    model = _trained_like(M2Encoder(base, DreamIdentityConfig(**TINY), backbone=tiny_vit()))
    return model.save(tmp_path / "encoder")


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_plain_diffusers_loads_the_identity_and_draws_the_same(tmp_path, ident, family):
    from safetensors.torch import load_file

    base = tiny_base_model(family)
    folder = _trained_folder(tmp_path, base)
    art = METHOD.personalize(
        ident, base, DreamIdentityConfig(adapter=str(folder)), tmp_path / "art"
    )
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    prompt = "a photo of <id> as a chef"
    with DreamIdentityPipeline.from_artifact(art, base) as ours:
        mine = ours(prompt, num_inference_steps=2, generator=gen(), output_type="np").images[0]

    fresh = tiny_base_model(family)  # plain diffusers from here on: no sameface code
    pipe = fresh.as_pipeline()
    path = art / "learned_embeds.safetensors"
    if family == "sdxl":
        sd = load_file(str(path))
        pipe.load_textual_inversion(
            sd["clip_l"], token="<id>", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer
        )
        pipe.load_textual_inversion(sd["clip_g"], token="<id>", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)  # fmt: skip
    else:
        pipe.load_textual_inversion(str(path), token="<id>")
    kw = {"num_inference_steps": 2, "output_type": "np", "height": 64, "width": 64}
    theirs = pipe(prompt, generator=gen(), **kw).images[0]
    np.testing.assert_allclose(mine, theirs, atol=1e-4)
    other = pipe("a photo of a person as a chef", generator=gen(), **kw).images[0]
    assert np.abs(other - theirs).max() > 1e-3  # the identity's words matter


def test_photos_are_averaged_into_one_set_of_words(tmp_path, ident):
    base = tiny_base_model("sd1")
    folder = _trained_folder(tmp_path, base)
    art = METHOD.personalize(ident, base, DreamIdentityConfig(adapter=str(folder)), tmp_path / "a")
    meta = json.loads((art / "artifact.json").read_text())
    assert meta["num_tokens"] == 5 and meta["references"] == 2 and meta["method"] == "dreamidentity"
    model = M2Encoder.load(folder, base, tiny_vit())
    aligned = torch.from_numpy(ident.aligned).permute(0, 3, 1, 2).float()
    each = [model.features(a[None, None]) for a in aligned]
    mean = [torch.stack([e[k] for e in each]).mean(0) for k in range(5)]
    from sameface.methods.words import load_embeddings

    vectors, _ = load_embeddings(art, "dreamidentity")
    torch.testing.assert_close(vectors[0], model.words(mean)[0][0], atol=1e-5, rtol=1e-5)


def test_encoder_for_another_family_or_backbone_is_refused(tmp_path, ident):
    folder = _trained_folder(tmp_path, tiny_base_model("sd1"))
    with pytest.raises(ArtifactError, match="sd1 base model"):
        M2Encoder.load(folder, tiny_base_model("sdxl"), tiny_vit())
    with pytest.raises(ArtifactError, match="trained on"):
        M2Encoder.load(folder, tiny_base_model("sd1"), tiny_vit((1, 2)))
    with pytest.raises(SamefaceError, match="--adapter"):
        METHOD.personalize(
            ident, tiny_base_model("sd1"), DreamIdentityConfig(**TINY), tmp_path / "x"
        )


# ---- self-augmented data -------------------------------------------------------------------


def test_filter_keeps_exactly_the_top_quarter():
    scores = [0.1, 0.9, 0.5, 0.7, 0.2, 0.9, 0.3, 0.0]
    assert keep_top(scores) == [1, 5]  # the top 2 of 8; ties keep the earlier one first
    assert keep_top([0.3]) == [0] and keep_top([]) == []
    assert keep_top(list(range(12)), 0.25) == [11, 10, 9]


def test_write_triplets_ranks_over_all_names(tmp_path):
    (tmp_path / "names").mkdir()
    cands = lambda s: [{"template": f"{{name}} t{i}", "image": f"images/x{i}.png", "face_found": True,  # noqa: E731
                        "id_similarity": v, "clip_score": 0.0, "score": v} for i, v in enumerate(s)]  # fmt: skip
    for name, scores in (("Ann", [0.1, 0.8, 0.2, 0.3]), ("Bob", [0.9, 0.0, 0.4, 0.5])):
        rec = {"name": name, "face": f"faces/{name}.png", "candidates": cands(scores)}
        (tmp_path / "names" / f"{name}.json").write_text(json.dumps(rec))
    (tmp_path / "names" / "Cy.json").write_text(json.dumps({"name": "Cy", "skipped": "no face"}))
    summary = write_triplets(tmp_path, ["Ann", "Bob", "Cy"], 0.25, settings={})
    kept = [json.loads(x) for x in (tmp_path / TRIPLETS).read_text().splitlines()]
    assert [(k["name"], k["score"]) for k in kept] == [("Bob", 0.9), ("Ann", 0.8)]
    assert summary["kept"] == 2 and summary["names_skipped"] == {"Cy": "no face"}
    with pytest.raises(SamefaceError, match="not generated"):
        write_triplets(tmp_path, ["Dee"], 0.25, settings={})


class _FakeAnalyzer:
    """Finds a 'face' in every image; its embedding is the image's mean colour."""

    class recognizer:
        name = "fake"

    def analyze(self, image):
        from types import SimpleNamespace

        e = image.reshape(-1, 3).mean(0).astype(np.float32) + 1.0
        return SimpleNamespace(aligned=np.full((112, 112, 3), 128, np.uint8), embedding=e / np.linalg.norm(e), error=None)  # fmt: skip


def test_self_augment_generates_scores_keeps_and_resumes(tmp_path):
    from sameface.models.clip import tiny_clip

    base = tiny_base_model("sd1")
    kw = {"analyzer": _FakeAnalyzer(), "clip": tiny_clip(image_size=32), "num_inference_steps": 1,
          "templates": ("{name} as a chef", "oil painting style, {name} face"), "progress": False}  # fmt: skip
    summary = self_augment(base, ["Ann Example", "Bob Example"], tmp_path, **kw)
    assert summary["candidates"] == 4 and summary["kept"] == 1
    triplets = TripletSet(tmp_path)
    assert len(triplets) == 1 and triplets[0]["face"].shape == (112, 112, 3)
    assert "{name}" in triplets[0]["template"]
    before = (tmp_path / "names" / "Ann_Example.json").stat().st_mtime_ns
    again = self_augment(base, ["Ann Example", "Bob Example"], tmp_path, **kw)  # resumes: no redraw
    assert (tmp_path / "names" / "Ann_Example.json").stat().st_mtime_ns == before
    assert again["kept"] == summary["kept"]
    with pytest.raises(SamefaceError, match="no usable names"):
        self_augment(base, [" ", ""], tmp_path / "empty", **kw)
    with pytest.raises(SamefaceError, match=r"\(templates differ\): use another --out"):
        self_augment(base, ["Ann Example"], tmp_path, **(kw | {"templates": ("{name} in {city}",)}))
    braces = self_augment(
        base, ["Ann Example"], tmp_path / "braces", **(kw | {"templates": ("{name} in {city}",)})
    )
    assert braces["candidates"] == 1  # other braces stay as written: no KeyError


# ---- training --------------------------------------------------------------------------------


def test_reconstruction_prompt():
    assert (
        reconstruction_prompt("a photo of a person, red background", "<id>")
        == "a photo of <id>, red background"
    )
    assert reconstruction_prompt("a sketch of someone", "<id>") == "a sketch of <id>"
    assert reconstruction_prompt("two cats", "<id>") == "a photo of <id>, two cats"


def test_training_mixes_reconstruction_and_triplets(tmp_path, data):
    from sameface.models.clip import tiny_clip

    base = tiny_base_model("sd1")
    aug = tmp_path / "aug"
    self_augment(base, ["Ann Example", "Bob Example"], aug, analyzer=_FakeAnalyzer(),
                 clip=tiny_clip(image_size=32), num_inference_steps=1, keep=1.0, progress=False,
                 templates=("{name} as a chef",))  # fmt: skip
    cfg = DreamIdentityConfig(
        **TINY, batch_size=4, steps=3, augmented_share=0.5, log_every=1, learning_rate=1e-2
    )
    out = METHOD.train(data, base, cfg, tmp_path / "enc", augmented=aug, progress=False)
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(np.isfinite(e["loss"]) and e["reg"] >= 0 for e in log)
    assert 0 < np.mean([e["augmented_share"] for e in log]) < 1
    meta = json.loads((out / "dreamidentity.json").read_text())
    assert meta["trained"]["triplets"] == 2 and meta["num_words"] == 5
    model = M2Encoder.load(out, base, tiny_vit())
    assert any(p[-1].weight.abs().sum() > 0 for p in model.proj[0])  # zero-initialised: learned
    assert not base.text_encoder.get_input_embeddings()._forward_hooks  # given back as it was


def test_continuing_needs_the_same_words(tmp_path, data):
    base = tiny_base_model("sd1")
    folder = _trained_folder(tmp_path, base)
    cfg = DreamIdentityConfig(**TINY, scales="last", steps=1)
    with pytest.raises(SamefaceError, match="scales='multi'"):
        METHOD.train(data, base, cfg, tmp_path / "more", init_from=folder, progress=False)
    linear = DreamIdentityConfig(**TINY, projection="linear", steps=1)
    with pytest.raises(SamefaceError, match="projection='mlp'"):
        METHOD.train(data, base, linear, tmp_path / "more2", init_from=folder, progress=False)
    assert not base.text_encoder.get_input_embeddings()._forward_hooks


def test_cli_trains_personalises_and_generates(tmp_path, data, obama):
    base = save_base_model(tiny_base_model("sd1"), tmp_path / "base")

    def cli(*args):
        proc = subprocess.run(
            [sys.executable, "-m", "sameface.cli", *map(str, args)],
            capture_output=True, text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    cli("train", "dreamidentity", "--config", REPO / "configs/dreamidentity/tiny.yaml", "--data",
        data, "--base", base, "--out", tmp_path / "enc", "--device", "cpu")  # fmt: skip
    cli("personalize", "--method", "dreamidentity", "--adapter", tmp_path / "enc", "--face", obama,
        "--base", base, "--out", tmp_path / "id", "--device", "cpu")  # fmt: skip
    cli("generate", "a photo of <id> as a chef", "--identity", tmp_path / "id", "-n", "1",
        "--steps", "2", "--out", tmp_path / "imgs", "--device", "cpu")  # fmt: skip
    assert (tmp_path / "imgs" / "a-photo-of-id-as-a-chef_0.png").is_file()
    assert (tmp_path / "id" / "learned_embeds.safetensors").is_file()


def test_two_processes_train_together(tmp_path, data):
    from tests.conftest import train_with_two_processes

    base = save_base_model(tiny_base_model("sd1"), tmp_path / "base")
    proc = train_with_two_processes("dreamidentity", data, base, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((tmp_path / "out" / "dreamidentity.json").read_text())
    assert meta["trained"]["steps"] == 4
    log = [json.loads(x) for x in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3, 4]  # one log, written by the main process
