"""Pseudo-words in a frozen text encoder (`sameface.adapters.tokens`) on tiny SD1 / SDXL
models: shared and per-sample vectors land exactly at the placeholder positions, several
placeholders at once, removal gives the base back, a second splice is refused."""

from __future__ import annotations

import pytest
import torch

from sameface.adapters.tokens import EncoderTokens, TokenSplice, placeholder_tokens
from sameface.errors import SamefaceError
from sameface.models import tiny_base_model
from sameface.models.text import encode_prompts, tokenize


def _embed(encoder, tokenizer, prompts):
    """The encoder's input embeddings for `prompts` (what the splice writes into)."""
    ids = tokenize(tokenizer, prompts)
    emb = encoder.get_input_embeddings()
    return ids, emb(ids)


@pytest.fixture(scope="module")
def sd1():
    return tiny_base_model("sd1")


def test_shared_and_per_sample_vectors_land_at_their_positions(sd1):
    enc, tok = sd1.text_encoders[0], sd1.tokenizers[0]
    dim = enc.get_input_embeddings().embedding_dim
    plain_ids, plain = _embed(enc, tok, ["a photo of a person", "a person in the style"])
    with EncoderTokens([tok], [enc], {"<id>": 2, "<style>": 3}) as tokens:
        g = torch.Generator().manual_seed(0)
        style = torch.randn(3, dim, generator=g)
        tokens.set("<style>", [style])
        tokens.set("<id>")  # per call
        per_sample = torch.randn(2, 2, dim, generator=g)
        prompts = [
            "a photo of <id> <id>_1 in the <style> <style>_1 <style>_2 style",
            "<id> <id>_1 , a painting",
        ]
        ids = tokenize(tokens.tokenizers[0], prompts)
        with tokens.given({"<id>": [per_sample]}):
            out = enc.get_input_embeddings()(ids)
        table = enc.get_input_embeddings().weight
        id_ids, style_ids = tokens.ids[0]["<id>"], tokens.ids[0]["<style>"]
        for b in range(2):
            for pos, tid in enumerate(ids[b].tolist()):
                if tid in id_ids:
                    want = per_sample[b, id_ids.index(tid)]
                elif tid in style_ids:
                    want = style[style_ids.index(tid)]
                else:
                    want = table[tid]
                assert torch.equal(out[b, pos], want), (b, pos, tid)
        # without the per-call vectors a prompt using <id> is an error; one without it is fine
        with pytest.raises(SamefaceError, match="no vectors were given"):
            enc.get_input_embeddings()(ids)
        enc.get_input_embeddings()(
            tokenize(tokens.tokenizers[0], ["a <style> <style>_1 <style>_2"])
        )
    ids_after, after = _embed(enc, tok, ["a photo of a person", "a person in the style"])
    assert torch.equal(ids_after, plain_ids) and torch.equal(after, plain)
    assert "<id>" not in tok.get_vocab()  # the base tokenizer is untouched


def test_removal_gives_the_base_conditioning_back(sd1):
    prompts = ["a photo of a person in a garden"]
    before, _ = encode_prompts(sd1, prompts)
    with EncoderTokens(sd1.tokenizers, sd1.text_encoders, {"<id>": 1}) as tokens:
        tokens.set("<id>", [torch.zeros(1, d) for d in tokens.dims])
        same, _ = encode_prompts(sd1, prompts, tokenizers=tokens.tokenizers)
        assert torch.equal(same, before)  # a prompt without the placeholder is untouched
    after, _ = encode_prompts(sd1, prompts)
    assert torch.equal(after, before)


def test_sdxl_two_encoders_of_different_widths():
    base = tiny_base_model("sdxl")
    with EncoderTokens(base.tokenizers, base.text_encoders, {"<id>": 2}) as tokens:
        assert len(tokens.dims) == 2 and tokens.dims[0] != tokens.dims[1]
        tokens.set("<id>")
        prompts = ["a photo of <id> <id>_1", "a photo of <id> <id>_1"]
        vecs = [torch.randn(2, 2, d) for d in tokens.dims]
        with tokens.given({"<id>": vecs}):
            a, _ = encode_prompts(base, prompts, tokenizers=tokens.tokenizers)
        assert not torch.equal(a[0], a[1])  # each sample its own pseudo-words
        with tokens.given({"<id>": [v[:1] for v in vecs]}):
            b, _ = encode_prompts(base, prompts, tokenizers=tokens.tokenizers)
        # one row broadcasts (rows of a batched matmul agree to float rounding only)
        assert torch.allclose(b[0], b[1], atol=1e-6) and torch.allclose(b[0], a[0], atol=1e-6)
        with (
            pytest.raises(ValueError, match="per-sample vectors"),
            tokens.given({"<id>": [torch.randn(3, 2, d) for d in tokens.dims]}),
        ):
            encode_prompts(base, prompts, tokenizers=tokens.tokenizers)


def test_a_second_splice_and_bad_placeholders_are_refused(sd1):
    enc, tok = sd1.text_encoders[0], sd1.tokenizers[0]
    first = TokenSplice(enc)
    with pytest.raises(SamefaceError, match="already attached"):
        TokenSplice(enc)
    first.remove()
    TokenSplice(enc).remove()  # free again
    with pytest.raises(ValueError, match="already a word"):
        EncoderTokens([tok], [enc], {"person": 1})
    with pytest.raises(ValueError, match="share token names"):
        EncoderTokens([tok], [enc], {"<a>": 2, "<a>_1": 1})
    assert not enc.get_input_embeddings()._forward_hooks  # a failed attach leaves nothing
    assert placeholder_tokens("<v>", 3) == ["<v>", "<v>_1", "<v>_2"]
