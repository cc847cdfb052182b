"""Modified textual inversion (seed 001) on tiny models: what changes, reparameterisation,
inits, plain-diffusers loading, exact resume, non-finite losses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sameface.adapters.tokens import LearnedTokens, expand_placeholder
from sameface.errors import SamefaceError, TrainingError
from sameface.identity import Identity
from sameface.methods.textual_inversion import (
    TextualInversionConfig,
    TextualInversionPipeline,
    personalize,
)
from sameface.methods.textual_inversion.artifact import load_embeddings
from sameface.methods.textual_inversion.init import choose_init, fit_to_count, word_ids
from sameface.models import tiny_base_model


@pytest.fixture(scope="module")
def ident(obama, obama2) -> Identity:
    return Identity.from_images([obama, obama2], square_size=64, mask_method="landmarks")


@pytest.fixture
def base():
    return tiny_base_model("sd1")


def cfg(**kw) -> TextualInversionConfig:
    return TextualInversionConfig(**({"steps": 6, "init": "face", "checkpoint_every": 2} | kw))


class FakeBank:
    """A two-person celebrity bank (the real one is built by `sameface celebs build`)."""

    def __init__(self, tokenizer, ident):
        self.names = ["Barack Obama", "Tom Hanks"]
        self.token_ids = [word_ids(tokenizer, n) for n in self.names]
        other = np.roll(ident.embedding, 7)
        self.embeddings = np.stack([ident.embedding, other / np.linalg.norm(other)]).astype(
            np.float32
        )

    def __len__(self):
        return len(self.names)

    def nearest(self, identity, k=1):
        sims = self.embeddings @ identity.embedding
        order = np.argsort(-sims)[:k]
        return [(self.names[i], float(sims[i])) for i in order]


def test_only_the_learned_vectors_change(tmp_path, base, ident):
    snapshot = {
        n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in base.modules().items()
    }
    vocab = len(base.tokenizer)
    personalize(ident, base, cfg(), tmp_path, progress=False)
    for name, mod in base.modules().items():
        for k, v in mod.state_dict().items():
            assert torch.equal(snapshot[name][k], v), f"{name}.{k} changed"
    assert len(base.tokenizer) == vocab  # the base tokenizer is untouched (a copy got the tokens)
    (vec,), meta = load_embeddings(tmp_path)
    init = base.text_encoder.get_input_embeddings().weight[word_ids(base.tokenizer, "human face")]
    assert vec.shape == (2, 32) and not torch.allclose(vec, init)
    assert meta["init"]["used"] == "face" and meta["loss"]["steps"] == 6
    assert not (tmp_path / "checkpoints").exists()  # cleared after a finished run


@pytest.mark.parametrize("a", [2.0, math.e])
def test_reparameterisation_norm_follows_a_to_the_n(a):
    init = torch.randn(2, 16)
    lt = LearnedTokens(init, a)
    torch.testing.assert_close(lt.vectors(), init)  # starts exactly at the init vectors
    with torch.no_grad():
        lt.n += 0.5
        lt.d.mul_(3.0)  # the direction's length does not matter
    torch.testing.assert_close(lt.vectors().norm(dim=-1), a ** lt.n.detach())
    # eq. 2: dL/dn = dL/dv · d/|d| · a^n · ln a
    v = lt.vectors()
    g = torch.randn_like(v)
    (v * g).sum().backward()
    expected = (g * lt.d / lt.d.norm(dim=-1, keepdim=True)).sum(-1) * a**lt.n * math.log(a)
    torch.testing.assert_close(lt.n.grad, expected.detach())


def test_plain_vectors_with_l2_regularisation(tmp_path, base, ident):
    personalize(ident, base, cfg(reparam_base="off"), tmp_path, progress=False)
    meta = json.loads((tmp_path / "artifact.json").read_text())
    assert meta["reparam_base"] is None and meta["config"]["l2_weight"] == 0.01


def test_inits_start_from_the_intended_vectors(base, ident):
    tok = base.tokenizer
    bank = FakeBank(tok, ident)
    face = choose_init("face", tok, 2)
    assert face.token_ids == word_ids(tok, "human face")
    idc = choose_init("id", tok, 2, identity=ident, bank=bank)
    assert idc.celebrity == "Barack Obama" and idc.token_ids == [22481, 4276]
    assert idc.similarity == pytest.approx(1.0, abs=1e-5)
    r1 = choose_init("rand2", tok, 2, bank=bank, seed=1)
    pool = {t for ids in bank.token_ids for t in ids}
    assert set(r1.token_ids) <= pool and len(set(r1.token_ids)) == 2
    assert choose_init("rand2", tok, 2, bank=bank, seed=1).token_ids == r1.token_ids
    assert choose_init("auto", tok, 2, identity=ident, bank=bank).init == "id"
    assert choose_init("auto", tok, 2).init == "face"
    with pytest.raises(SamefaceError, match="celebrity bank"):
        choose_init("id", tok, 2, identity=ident)
    assert fit_to_count([5, 6, 7], 2) == [5, 6] and fit_to_count([5], 3) == [5, 5, 5]


def test_id_init_vectors_are_the_celebrity_name_rows(tmp_path, base, ident):
    bank = FakeBank(base.tokenizer, ident)
    personalize(
        ident,
        base,
        cfg(init="id", steps=1, learning_rate=1e-12),
        tmp_path,
        bank=bank,
        progress=False,
    )
    (vec,), meta = load_embeddings(tmp_path)
    rows = base.text_encoder.get_input_embeddings().weight[[22481, 4276]]
    torch.testing.assert_close(vec, rows, atol=1e-6, rtol=0)
    assert meta["init"]["celebrity"] == "Barack Obama"


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_plain_diffusers_loads_the_artifact_and_uses_it(tmp_path, ident, family):
    from diffusers import DDIMScheduler
    from safetensors.torch import load_file

    base = tiny_base_model(family)
    personalize(ident, base, cfg(steps=3), tmp_path, progress=False)
    vectors, meta = load_embeddings(tmp_path)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    prompt = "a photo of <id> smiling"
    with TextualInversionPipeline.from_artifact(tmp_path, base) as ours:
        mine = ours(prompt, num_inference_steps=2, generator=gen(), output_type="np").images[0]

    # Plain diffusers, no sameface code: a fresh pipeline from the same weights.
    fresh = tiny_base_model(family)
    pipe = fresh.as_pipeline(scheduler=DDIMScheduler.from_config(fresh.scheduler.config))
    path = tmp_path / "learned_embeds.safetensors"
    if family == "sdxl":
        sd = load_file(str(path))
        pipe.load_textual_inversion(
            sd["clip_l"], token="<id>", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer
        )
        pipe.load_textual_inversion(
            sd["clip_g"], token="<id>", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2
        )
    else:
        pipe.load_textual_inversion(str(path), token="<id>")
    ids = pipe.tokenizer.convert_tokens_to_ids(["<id>", "<id>_1"])
    torch.testing.assert_close(pipe.text_encoder.get_input_embeddings().weight[ids], vectors[0])
    theirs = pipe(
        prompt, num_inference_steps=2, generator=gen(), output_type="np", height=64, width=64
    ).images[0]
    np.testing.assert_allclose(mine, theirs, atol=1e-4)
    # And the identity matters: without it the image differs.
    other = pipe(
        "a photo of a man smiling",
        num_inference_steps=2,
        generator=gen(),
        output_type="np",
        height=64,
        width=64,
    ).images[0]
    assert np.abs(other - theirs).max() > 1e-3


def test_pipeline_requires_the_placeholder(tmp_path, base, ident):
    personalize(ident, base, cfg(steps=1), tmp_path, progress=False)
    with (
        TextualInversionPipeline.from_artifact(tmp_path, base) as pipe,
        pytest.raises(ValueError, match="<id>"),
    ):
        pipe("a photo of a person")
    # Closing removed the hooks: the base encoder gives its plain output again.
    assert not base.text_encoder.get_input_embeddings()._forward_hooks


def _vectors(path):
    return load_embeddings(path)[0][0]


def test_interrupted_run_resumes_to_the_same_result(tmp_path, ident, monkeypatch):
    import sameface.methods.textual_inversion.train as train_mod

    settings = cfg(steps=8, checkpoint_every=3)
    personalize(ident, tiny_base_model("sd1"), settings, tmp_path / "straight", progress=False)

    real = train_mod.l_simple
    calls = {"n": 0}

    def interrupt_at_step_5(*a, **k):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "l_simple", interrupt_at_step_5)
    with pytest.raises(TrainingError, match="interrupted at step 5/8"):
        personalize(ident, tiny_base_model("sd1"), settings, tmp_path / "resumed", progress=False)
    assert (tmp_path / "resumed" / "checkpoints" / "checkpoint-5").is_dir()
    assert not (tmp_path / "resumed" / "artifact.json").exists()
    monkeypatch.setattr(train_mod, "l_simple", real)
    personalize(ident, tiny_base_model("sd1"), settings, tmp_path / "resumed", progress=False)
    torch.testing.assert_close(
        _vectors(tmp_path / "resumed"), _vectors(tmp_path / "straight"), rtol=0, atol=1e-6
    )
    a = json.loads((tmp_path / "straight" / "artifact.json").read_text())["loss"]
    b = json.loads((tmp_path / "resumed" / "artifact.json").read_text())["loss"]
    assert a == b


def test_checkpoints_of_other_settings_are_not_mixed(tmp_path, ident, monkeypatch):
    import sameface.methods.textual_inversion.train as train_mod

    monkeypatch.setattr(
        train_mod, "l_simple", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt)
    )
    with pytest.raises(TrainingError):
        personalize(ident, tiny_base_model("sd1"), cfg(), tmp_path, progress=False)
    monkeypatch.undo()
    with pytest.raises(SamefaceError, match="other settings"):
        personalize(ident, tiny_base_model("sd1"), cfg(num_tokens=3), tmp_path, progress=False)
    personalize(
        ident, tiny_base_model("sd1"), cfg(num_tokens=3), tmp_path, resume=False, progress=False
    )
    assert load_embeddings(tmp_path)[0][0].shape[0] == 3


def test_non_finite_losses(tmp_path, ident, monkeypatch):
    import sameface.methods.textual_inversion.train as train_mod

    real = train_mod.l_simple
    calls = {"n": 0}

    def one_nan(*a, **k):
        calls["n"] += 1
        out = real(*a, **k)
        return out * float("nan") if calls["n"] == 2 else out

    monkeypatch.setattr(train_mod, "l_simple", one_nan)
    personalize(ident, tiny_base_model("sd1"), cfg(), tmp_path / "one", progress=False)
    meta = json.loads((tmp_path / "one" / "artifact.json").read_text())
    assert (
        meta["loss"]["non_finite_steps"] == 1 and torch.isfinite(_vectors(tmp_path / "one")).all()
    )

    monkeypatch.setattr(train_mod, "l_simple", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(TrainingError, match="not finite"):
        personalize(
            ident, tiny_base_model("sd1"), cfg(max_nan_steps=3), tmp_path / "all", progress=False
        )
    assert (tmp_path / "all" / "checkpoints").is_dir()


def test_bf16_and_v_prediction_and_mask_weighting(tmp_path, ident):
    base = tiny_base_model("sd2", prediction_type="v_prediction")
    personalize(
        ident, base, cfg(mixed_precision="bf16", mask_weight=0.2, steps=3), tmp_path, progress=False
    )
    assert next(base.unet.parameters()).dtype == torch.float32  # given back as it was
    assert json.loads((tmp_path / "artifact.json").read_text())["prediction_type"] == "v_prediction"


def test_config_validation():
    with pytest.raises(ValueError, match="init"):
        TextualInversionConfig(init="celebrity")
    with pytest.raises(ValueError, match="reparam base"):
        TextualInversionConfig(reparam_base="pi")
    with pytest.raises(ValueError, match="placeholder"):
        TextualInversionConfig(placeholder="my face")
    assert TextualInversionConfig(reparam_base="e").reparam_base == pytest.approx(math.e)
    assert TextualInversionConfig(reparam_base="off").reparam_base is None
    c = TextualInversionConfig()
    assert (c.steps, c.adam_betas, c.l2_weight, c.reparam_base) == (400, (0.9, 0.98), 0.01, 2.0)
    assert TextualInversionConfig.from_dict(c.to_dict()) == c


def test_expand_placeholder():
    assert expand_placeholder("a photo of <id>", "<id>", 3) == "a photo of <id> <id>_1 <id>_2"


def test_one_identity_per_text_encoder_at_a_time(tmp_path, base, ident):
    personalize(ident, base, cfg(steps=1), tmp_path, progress=False)
    with TextualInversionPipeline.from_artifact(tmp_path, base):
        with pytest.raises(SamefaceError, match="already attached"):
            TextualInversionPipeline.from_artifact(tmp_path, base)
        with pytest.raises(SamefaceError, match="already attached"):
            personalize(ident, base, cfg(steps=1), tmp_path / "again", progress=False)
    with TextualInversionPipeline.from_artifact(tmp_path, base):  # closed: free again
        pass


def test_placeholder_must_be_a_new_word(tmp_path, base, ident):
    with pytest.raises(ValueError, match="already a word"):
        personalize(ident, base, cfg(placeholder="face"), tmp_path, progress=False)


def test_id_init_takes_as_many_vectors_as_the_name_has_tokens(tmp_path, base, ident):
    bank = FakeBank(base.tokenizer, ident)
    bank.names[0] = "Samuel L. Jackson"
    bank.token_ids[0] = word_ids(base.tokenizer, "Samuel L. Jackson")
    personalize(ident, base, cfg(init="id", steps=1), tmp_path, bank=bank, progress=False)
    (vec,), meta = load_embeddings(tmp_path)
    assert vec.shape[0] == len(bank.token_ids[0]) == meta["num_tokens"] > 2
    personalize(
        ident,
        base,
        cfg(init="id", steps=1, num_tokens=2),
        tmp_path / "two",
        bank=bank,
        progress=False,
    )
    assert load_embeddings(tmp_path / "two")[0][0].shape[0] == 2


def test_damaged_newest_checkpoint_falls_back(tmp_path):
    from sameface.training import CheckpointManager

    ck = CheckpointManager(tmp_path, keep=3)
    ck.save(1, {"x": torch.ones(2)}, {"a": 1})
    ck.save(2, {"x": torch.full((2,), 2.0)}, {"a": 2})
    (tmp_path / "checkpoint-2" / "state.safetensors").write_bytes(b"\0" * 10)
    tensors, state = ck.load_latest()
    assert state["step"] == 1 and torch.equal(tensors["x"], torch.ones(2))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
