"""MagiCapture on tiny models: both phases, the style reference, the artifact in plain
diffusers, exact resume in each phase, the base model given back, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sameface.errors import FaceNotFoundError, SamefaceError, TrainingError
from sameface.identity import Identity
from sameface.methods.magicapture import MagiCaptureConfig, MagiCapturePipeline, personalize
from sameface.models import tiny_base_model


@pytest.fixture(scope="module")
def ident(obama, obama2) -> Identity:
    return Identity.from_images([obama, obama2], square_size=64, mask_method="landmarks")


@pytest.fixture(scope="module")
def reference(biden, ident):
    from sameface.methods.magicapture.reference import load_style_reference

    return load_style_reference(biden, ident, 64)


def cfg(**kw) -> MagiCaptureConfig:
    settings = {"ti_steps": 3, "lora_steps": 3, "checkpoint_every": 2, "id_weight": 0.0}
    return MagiCaptureConfig(**(settings | kw))


def _state(base):
    return {k: v.clone() for k, v in base.unet.state_dict().items()}


def test_two_phases_with_a_style_reference_leave_the_base_as_it_was(tmp_path, ident, reference):
    base = tiny_base_model("sd1")
    before, names = _state(base), [n for n, _ in base.unet.named_modules()]
    flags = [p.requires_grad for p in base.unet.parameters()]
    out = personalize(ident, base, cfg(ar_weight=2.5), tmp_path, progress=False, style=reference)
    assert [n for n, _ in base.unet.named_modules()] == names
    assert all(torch.equal(v, before[k]) for k, v in base.unet.state_dict().items())
    assert [p.requires_grad for p in base.unet.parameters()] == flags
    meta = json.loads((out / "artifact.json").read_text())
    assert meta["method"] == "magicapture" and meta["style_placeholder"] == "<style>"
    assert meta["loss"]["steps"] == 6
    lora = load_file(str(out / "pytorch_lora_weights.safetensors"))
    assert lora and all(k.startswith("unet.") for k in lora)
    assert any(v.abs().sum() > 0 for k, v in lora.items() if "lora_B" in k)  # phase 2 trained B
    style = load_file(str(out / "style_embeds.safetensors"))
    assert list(style) == ["<style>"] and style["<style>"].shape == (1, 32)
    with MagiCapturePipeline.from_artifact(out, base) as pipe:
        img = pipe(
            "a photo of a <id> person in the style of <style>",
            num_inference_steps=2,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        ).images[0]
        with pytest.raises(ValueError, match="lora_scale"):
            pipe("a photo of <id>", num_inference_steps=1, lora_scale=5)
    assert img.shape == (64, 64, 3) and np.isfinite(img).all()
    assert [n for n, _ in base.unet.named_modules()] == names  # the pipeline took its LoRA off
    assert [p.requires_grad for p in base.unet.parameters()] == flags


@pytest.mark.parametrize("style_vectors", [1, 2])
def test_phase_two_adds_refocusing_and_the_id_loss(
    tmp_path, ident, reference, monkeypatch, style_vectors
):
    """Refocusing covers [V1] and every vector of [V2], each [V2] vector with the same region."""
    import sameface.methods.magicapture.train as train_mod

    seen = {"ar": 0, "id": 0}
    real_ar, real_id = train_mod.attention_refocusing_loss, train_mod._StepFn._id_loss

    def ar(maps, masks):
        seen["ar"] += 1
        assert masks.shape[1] == 1 + style_vectors and len({m.shape[-1] for m in maps}) == 1
        assert maps[0].shape[1] == 1 + style_vectors
        assert all(torch.equal(masks[:, 1], masks[:, k]) for k in range(2, masks.shape[1]))
        return real_ar(maps, masks)

    def id_loss(self, *a):
        seen["id"] += 1
        return real_id(self, *a)

    real_positions, rows = train_mod._StepFn._positions, []

    def positions(self, prompts):
        out = real_positions(self, prompts)
        rows.extend(zip(prompts, out.tolist(), strict=True))
        return out

    monkeypatch.setattr(train_mod, "attention_refocusing_loss", ar)
    monkeypatch.setattr(train_mod._StepFn, "_id_loss", id_loss)
    monkeypatch.setattr(train_mod._StepFn, "_positions", positions)
    personalize(
        ident,
        tiny_base_model("sd1"),
        cfg(ti_steps=2, lora_steps=4, id_weight=0.25, seed=1, style_vectors=style_vectors),
        tmp_path,
        progress=False,
        style=reference,
    )
    assert seen["ar"] == 4  # every phase-2 step, never in phase 1
    styled = [pos for prompt, pos in rows if "<style>" in prompt]
    assert styled, "no sample named the style word"
    for pos in styled:  # [V2]'s vectors: consecutive tokens of the prompt, never the start
        first = pos[1]
        assert first > 0 and pos[1:] == list(range(first, first + style_vectors))
    assert 1 <= seen["id"] <= 4  # selfie and composed samples (not the reference's own)


@pytest.mark.parametrize("family,style_vectors", [("sd1", 1), ("sdxl", 1), ("sd1", 3)])
def test_plain_diffusers_reproduces_our_images(tmp_path, ident, reference, family, style_vectors):
    """Also with a several-vector [V2]: diffusers expands `<style>` to all its tokens."""
    base = tiny_base_model(family)
    out = personalize(
        ident,
        base,
        cfg(lora_steps=4, style_vectors=style_vectors),
        tmp_path,
        progress=False,
        style=reference,
    )
    style = load_file(str(out / "style_embeds.safetensors"))
    assert {v.shape[0] for v in style.values()} == {style_vectors}
    # A visible LoRA, so the comparison would catch a LoRA diffusers did not apply.
    lora = {
        k: v + 0.05 if "lora_B" in k else v
        for k, v in load_file(str(out / "pytorch_lora_weights.safetensors")).items()
    }
    from safetensors.torch import save_file

    save_id = json.loads((out / "artifact.json").read_text())["save_id"]
    save_file(lora, str(out / "pytorch_lora_weights.safetensors"), metadata={"save_id": save_id})
    prompt = "a photo of a <id> person in the style of <style>"
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    with MagiCapturePipeline.from_artifact(out, base) as ours:
        mine = ours(prompt, num_inference_steps=2, generator=gen(), output_type="np").images[0]

    fresh = tiny_base_model(family)  # plain diffusers, no sameface code
    pipe = fresh.as_pipeline()
    for file, token in (("learned_embeds", "<id>"), ("style_embeds", "<style>")):
        sd = load_file(str(out / f"{file}.safetensors"))
        if family == "sdxl":
            pipe.load_textual_inversion(
                sd["clip_l"], token=token, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer
            )
            pipe.load_textual_inversion(
                sd["clip_g"],
                token=token,
                text_encoder=pipe.text_encoder_2,
                tokenizer=pipe.tokenizer_2,
            )
        else:
            pipe.load_textual_inversion(str(out / f"{file}.safetensors"), token=token)
    plain = pipe(
        prompt, num_inference_steps=2, generator=gen(), output_type="np", height=64, width=64
    )
    pipe.load_lora_weights(str(out))
    theirs = pipe(
        prompt, num_inference_steps=2, generator=gen(), output_type="np", height=64, width=64
    )
    np.testing.assert_allclose(mine, theirs.images[0], atol=1e-4)
    assert np.abs(plain.images[0] - theirs.images[0]).max() > 1e-3  # the LoRA mattered


def _weights(folder):
    return load_file(str(folder / "pytorch_lora_weights.safetensors")) | {
        "id": load_file(str(folder / "learned_embeds.safetensors"))["<id>"],
        "style": load_file(str(folder / "style_embeds.safetensors"))["<style>"],
    }


@pytest.mark.parametrize("stop_at", [2, 5])  # in phase 1 (of 3 steps), in phase 2
def test_interrupted_run_resumes_exactly_in_either_phase(
    tmp_path, ident, reference, monkeypatch, stop_at
):
    import sameface.methods.magicapture.train as train_mod

    settings = cfg(ti_steps=3, lora_steps=4, checkpoint_every=1, id_weight=0.0)
    personalize(
        ident,
        tiny_base_model("sd1"),
        settings,
        tmp_path / "straight",
        progress=False,
        style=reference,
    )
    real, calls = train_mod.l_simple, {"n": 0}

    def interrupt(*a, **k):
        calls["n"] += 1
        if calls["n"] == stop_at + 1:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "l_simple", interrupt)
    base = tiny_base_model("sd1")
    with pytest.raises(TrainingError, match="interrupted"):
        personalize(ident, base, settings, tmp_path / "resumed", progress=False, style=reference)
    assert not any("lora" in n for n, _ in base.unet.named_modules())  # removed on the way out
    monkeypatch.setattr(train_mod, "l_simple", real)
    personalize(ident, base, settings, tmp_path / "resumed", progress=False, style=reference)
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_bad_references_and_settings_are_clear_errors(tmp_path, ident, obama2):
    from sameface.methods.magicapture.reference import load_style_reference

    with pytest.raises(SamefaceError, match="same person"):
        load_style_reference(obama2, ident, 64)
    blank = np.full((96, 96, 3), 128, np.uint8)
    with pytest.raises(FaceNotFoundError):
        personalize(ident, tiny_base_model("sd1"), cfg(style_reference=None), tmp_path, style=blank)
    with pytest.raises(ValueError, match="style_placeholder must differ"):
        MagiCaptureConfig(style_placeholder="<id>")
    with pytest.raises(ValueError, match="id_max_timestep"):
        MagiCaptureConfig(id_max_timestep=0)
    insight = Identity(
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
        meta={"recognizer": {"name": "dlib"}},
    )
    with pytest.raises(SamefaceError, match="differentiable recogniser"):
        personalize(insight, tiny_base_model("sd1"), cfg(id_weight=0.25), tmp_path)
    with pytest.raises(SamefaceError, match="not comparable"):
        personalize(
            insight, tiny_base_model("sd1"), cfg(id_weight=0.25, recognizer="sface"), tmp_path
        )


def test_cli_personalises_with_a_style_reference_and_generates(
    capsys, tmp_path, obama, obama2, biden
):
    from sameface.cli import main
    from sameface.models import save_base_model

    base_dir = save_base_model(tiny_base_model("sd1"), tmp_path / "base")
    art, imgs = tmp_path / "me", tmp_path / "imgs"
    common = ["--base", str(base_dir), "--device", "cpu"]
    code = main(
        [
            "personalize",
            "--method",
            "magicapture",
            "--face",
            str(obama),
            str(obama2),
            "--out",
            str(art),
            *common,
            "--style-reference",
            str(biden),
            "--ti-steps",
            "2",
            "--lora-steps",
            "2",
            "--id-weight",
            "0",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert json.loads((art / "artifact.json").read_text())["style_placeholder"] == "<style>"
    code = main(
        [
            "generate",
            "--identity",
            str(art),
            "a photo of a <id> person in the style of <style>",
            "--steps",
            "2",
            "--out",
            str(imgs),
            "--lora-scale",
            "0.6",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert len(list(imgs.glob("*.png"))) == 4  # generate makes 4 by default
    # The same person as the reference: a clear error, not a traceback.
    code = main(
        [
            "personalize",
            "--method",
            "magicapture",
            "--face",
            str(obama),
            "--out",
            str(tmp_path / "x"),
            *common,
            "--style-reference",
            str(obama2),
            "--ti-steps",
            "1",
            "--lora-steps",
            "1",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "same person" in err and "Traceback" not in err


@pytest.mark.parametrize("preset", ["sd15", "sdxl", "tiny"])
def test_presets_are_valid_settings(preset):
    from pathlib import Path

    import yaml

    path = Path(__file__).parent.parent / "configs" / "magicapture" / f"{preset}.yaml"
    MagiCaptureConfig(**yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("composed", [True, False])
def test_sample_kinds_per_phase(composed):
    from types import SimpleNamespace

    from sameface.methods.magicapture.train import COMPOSED, INSTANCE, STYLE, _StepFn

    step = _StepFn.__new__(_StepFn)
    step.cfg = cfg(batch_size=64, composed_prompts=composed)
    step.g = torch.Generator().manual_seed(0)
    step.data = SimpleNamespace(has_style=True)
    assert set(step._kinds(1)) == {INSTANCE, STYLE}  # phase 1: no composed prompts
    assert set(step._kinds(2)) == ({INSTANCE, STYLE, COMPOSED} if composed else {INSTANCE, STYLE})
    step.data = SimpleNamespace(has_style=False)
    assert set(step._kinds(2)) == {INSTANCE}  # no reference: the selfies only


def test_files_of_two_saves_are_refused(tmp_path, ident, reference):
    import shutil

    from sameface.errors import ArtifactError
    from sameface.methods.words import load_embeddings

    base = tiny_base_model("sd1")
    a, b = (
        personalize(
            ident,
            base,
            cfg(ti_steps=1, lora_steps=1, seed=s),
            tmp_path / n,
            progress=False,
            style=reference,
        )
        for s, n in ((0, "a"), (1, "b"))
    )
    MagiCapturePipeline.from_artifact(a, base).close()  # one save: fine
    shutil.copy(b / "pytorch_lora_weights.safetensors", a / "pytorch_lora_weights.safetensors")
    with pytest.raises(ArtifactError, match="same save"):
        MagiCapturePipeline.from_artifact(a, base)
    shutil.copy(b / "learned_embeds.safetensors", a / "learned_embeds.safetensors")
    with pytest.raises(ArtifactError, match="same save"):
        load_embeddings(a)
    assert not any("lora" in n for n, _ in base.unet.named_modules())


@pytest.mark.parametrize("lr", [1.0, 2e-3])
def test_phase_one_pulls_the_words_to_the_init_words_norm(lr):
    """The code's `clip_ti_decay`: after an update each word's norm moves min(1, 100·lr) of the
    way to the norm of `init_word` in the same text encoder; the direction is kept."""
    from sameface.adapters.tokens import LearnedTokens
    from sameface.methods.magicapture.train import _norm_decay

    base = tiny_base_model("sdxl")  # two text encoders, each with its own word norms
    c = cfg(ti_learning_rate=lr, ti_steps=10)
    token = base.tokenizer(c.init_word, add_special_tokens=False)["input_ids"][:1]
    targets = [float(e.get_input_embeddings().weight[token].norm()) for e in base.text_encoders]
    g = torch.Generator().manual_seed(0)
    words = {
        "<id>": [
            LearnedTokens(torch.randn(1, e.get_input_embeddings().embedding_dim, generator=g), None)
            for e in base.text_encoders
        ]
    }
    before = [lt.v.detach().clone() for lt in words["<id>"]]
    with torch.no_grad():
        _norm_decay(c, base, words)(0)
    pull = min(1.0, 100 * lr)
    for lt, old, target in zip(words["<id>"], before, targets, strict=True):
        want = float(old.norm()) + pull * (target - float(old.norm()))
        assert float(lt.v.norm()) == pytest.approx(want, rel=1e-5)
        assert torch.allclose(lt.v / lt.v.norm(), old / old.norm(), atol=1e-6)
    assert targets[0] != pytest.approx(targets[1])


def test_style_word_starts_from_noise_or_from_a_word():
    from sameface.methods.magicapture.train import _initial_words

    base = tiny_base_model("sd1")
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    table = base.text_encoder.get_input_embeddings().weight
    noise = _initial_words(cfg(style_vectors=2), base, True, g())["<style>"][0].vectors()
    assert noise.shape == (2, table.shape[1]) and float(noise.std()) < 0.05
    word = base.tokenizer("photo", add_special_tokens=False)["input_ids"][0]
    start = _initial_words(cfg(style_vectors=2, style_init_word="photo"), base, True, g())
    assert torch.equal(start["<style>"][0].vectors(), table[[word, word]].float())
    with pytest.raises(ValueError, match="style_init_word"):
        cfg(style_init_word=" ")


@pytest.mark.parametrize("decay", [True, False])
def test_phase_one_runs_the_norm_pull_when_asked(tmp_path, ident, decay):
    """With λ = 1 (lr ≥ 0.01) phase 1 ends with [V1] at `init_word`'s norm; phase 2's word
    rate is tiny, so the artifact keeps it. Without the pull the norm wanders off."""
    base = tiny_base_model("sd1")
    settings = cfg(
        ti_steps=2, lora_steps=1, ti_learning_rate=1.0, word_learning_rate=1e-9, ti_norm_decay=decay
    )
    out = personalize(ident, base, settings, tmp_path, progress=False)
    learned = load_file(str(out / "learned_embeds.safetensors"))["<id>"]
    token = base.tokenizer("person", add_special_tokens=False)["input_ids"][0]
    target = float(base.text_encoder.get_input_embeddings().weight[token].norm())
    assert (float(learned.norm()) == pytest.approx(target, rel=1e-3)) is decay
