"""Pseudo-words in a frozen text encoder: placeholder tokens whose input vectors we supply.

Textual inversion learns a few vectors for `<id>` (seed 001); MagiCapture learns `[V1]` for
the person and `[V2]` for a style (seed 003); DreamIdentity's encoder makes K vectors per
face, different for every image in a batch (seed 000). All of them need the same thing: the
text encoder reads our vectors wherever a placeholder token stands, and nothing else of the
base model changes.

- The placeholders are added to *copies* of the tokenizers (ids past the vocabulary).
- `TokenSplice` hooks one text encoder's input-embedding layer: a pre-hook maps the new ids
  to a valid id, a hook writes our vectors into those positions. The embedding table is never
  touched; gradients reach only our vectors. Removing the splice removes the hooks.
- Vectors come per placeholder: shared by every prompt (a `LearnedTokens` or a fixed (K, D)
  tensor) or given per call and per sample ((B, K, D), `EncoderTokens.given`).

One splice per text encoder holds every placeholder; a second splice on the same encoder is
refused (it would see the first one's remapped ids), detected from the encoder's live hooks.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import SamefaceError

__all__ = [
    "EncoderTokens",
    "LearnedTokens",
    "TokenSplice",
    "expand_placeholder",
    "placeholder_tokens",
    "tokenizer_with_placeholder",
    "tokenizer_with_placeholders",
]


def placeholder_tokens(placeholder: str, num_tokens: int) -> list[str]:
    """Token strings of a multi-vector placeholder, named as diffusers names them (`<id>`, `<id>_1`, ...)."""
    return [placeholder] + [f"{placeholder}_{i}" for i in range(1, num_tokens)]


def expand_placeholder(prompt: str, placeholder: str, num_tokens: int) -> str:
    """Replace each `placeholder` word in `prompt` by its token strings (as diffusers' `maybe_convert_prompt`)."""
    return prompt.replace(placeholder, " ".join(placeholder_tokens(placeholder, num_tokens)))


class LearnedTokens(nn.Module):
    """`k` learned vectors for one text encoder.

    With `base` set, each vector is reparameterised as v = a**n · d/‖d‖ (seed 001 eq. 1): a
    trainable direction `d` and log-norm `n` in base `a`. Its gradient in n is
    ∇_v L · d/‖d‖ · a**n · ln a (eq. 2), so a small base keeps the learned norms close to the
    vocabulary's. Without `base` the vectors are plain parameters.

    Args:
        init: (k, dim) starting vectors; `vectors()` returns exactly these before training.
        base: the base `a` (> 1), or None for no reparameterisation.
    """

    def __init__(self, init: torch.Tensor, base: float | None):
        super().__init__()
        init = init.detach().float().clone()
        self.base = base
        if base is None:
            self.v = nn.Parameter(init)
        else:
            norm = init.norm(dim=-1).clamp_min(1e-8)
            self.d = nn.Parameter(init.clone())
            self.n = nn.Parameter(torch.log(norm) / math.log(base))

    def vectors(self) -> torch.Tensor:
        """The current (k, dim) vectors."""
        if self.base is None:
            return self.v
        direction = self.d / self.d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return (self.base**self.n)[:, None] * direction


def tokenizer_with_placeholders(
    tokenizer: Any, placeholders: Mapping[str, int]
) -> tuple[Any, dict[str, list[int]]]:
    """A copy of `tokenizer` that knows every placeholder's tokens, and their ids.

    Args:
        tokenizer: the base tokenizer (left as it is).
        placeholders: placeholder -> number of vectors (tokens) it stands for.

    Raises:
        ValueError: a placeholder token is already a word of the vocabulary, or two
            placeholders share a token.
    """
    names = {p: placeholder_tokens(p, k) for p, k in placeholders.items()}
    flat = [n for ns in names.values() for n in ns]
    if len(set(flat)) != len(flat):
        raise ValueError(f"placeholders {', '.join(placeholders)} share token names")
    tok = copy.deepcopy(tokenizer)
    tok.add_tokens(flat)
    ids = {p: tok.convert_tokens_to_ids(ns) for p, ns in names.items()}
    # A placeholder that is already a vocabulary piece ("a", "face") keeps its old id: it
    # would splice into every prompt using that word.
    for p, pid in ids.items():
        if any(i < len(tokenizer) for i in pid):
            raise ValueError(
                f"placeholder {p!r} is already a word of the vocabulary; choose another, e.g. <id>"
            )
    return tok, ids


def tokenizer_with_placeholder(
    tokenizer: Any, placeholder: str, num_tokens: int
) -> tuple[Any, list[int]]:
    """`tokenizer_with_placeholders` for one placeholder: (tokenizer copy, its token ids)."""
    tok, ids = tokenizer_with_placeholders(tokenizer, {placeholder: num_tokens})
    return tok, ids[placeholder]


class TokenSplice:
    """Make a frozen text encoder read our vectors at placeholder token ids.

    Args:
        text_encoder: a transformers CLIP text model (its input-embedding layer gets hooks).

    Raises:
        SamefaceError: another splice is attached to this encoder (an open pipeline or a
            training run): close it first.
    """

    def __init__(self, text_encoder: Any):
        emb = text_encoder.get_input_embeddings()
        if any(
            isinstance(getattr(h, "__self__", None), TokenSplice)
            for h in emb._forward_hooks.values()
        ):
            raise SamefaceError(
                "another identity is already attached to this base model's text encoder (an open "
                "pipeline or a training run); close it first (`pipe.close()` or `with ... as pipe:`)"
            )
        self.dim = emb.embedding_dim
        self._vocab = emb.num_embeddings
        self._sources: dict[str, tuple[list[int], Any]] = {}
        self._given: dict[str, torch.Tensor] = {}
        self._ids: torch.Tensor | None = None
        self._handles = [
            emb.register_forward_pre_hook(self._pre),
            emb.register_forward_hook(self._post),
        ]

    def add(self, name: str, token_ids: Sequence[int], vectors: Any = None) -> None:
        """Splice vectors for placeholder `name` at `token_ids`.

        Args:
            name: the placeholder.
            token_ids: its token ids (from `tokenizer_with_placeholders`).
            vectors: a module with `.vectors()` (e.g. `LearnedTokens`, trained through the
                splice), a fixed (K, D) tensor, or None: given per call (`given`).
        """
        if name in self._sources:
            raise ValueError(f"placeholder {name!r} is already spliced")
        self._sources[name] = (list(token_ids), vectors)

    @contextlib.contextmanager
    def given(self, vectors: Mapping[str, torch.Tensor]) -> Iterator[None]:
        """Inside the block, placeholders without their own vectors read these: (K, D) for
        every prompt or (B, K, D), sample b of the encoder batch reading row b."""
        previous = self._given
        self._given = previous | dict(vectors)
        try:
            yield
        finally:
            self._given = previous

    def _pre(self, module: Any, args: tuple) -> tuple:
        ids = args[0]
        self._ids = ids
        return (ids.clamp_max(self._vocab - 1), *args[1:])

    def _post(self, module: Any, args: tuple, output: torch.Tensor) -> torch.Tensor:
        ids, self._ids = self._ids, None
        for name, (token_ids, source) in self._sources.items():
            present = [(j, ids == tid) for j, tid in enumerate(token_ids)]
            vecs = self._vectors(name, source)
            if vecs is None:
                if any(bool(hit.any()) for _, hit in present):
                    raise SamefaceError(f"the prompt uses {name} but no vectors were given for it")
                continue
            if vecs.shape[-2:] != (len(token_ids), self.dim):
                raise ValueError(
                    f"vectors for {name} are {tuple(vecs.shape)}; expected (..., {len(token_ids)}, {self.dim})"
                )
            vecs = vecs.to(output.dtype)
            per_sample = vecs.dim() == 3
            if per_sample and vecs.shape[0] not in (1, output.shape[0]):
                raise ValueError(
                    f"{vecs.shape[0]} per-sample vectors for {name} but {output.shape[0]} prompts"
                )
            for j, hit in present:
                # (B, 1, D): sample b's j-th vector on every position of prompt b; else (D,)
                v = vecs[:, j, None, :] if per_sample else vecs[j]
                output = torch.where(hit[..., None], v, output)
        return output

    def _vectors(self, name: str, source: Any) -> torch.Tensor | None:
        if source is None:
            return self._given.get(name)
        return source.vectors() if hasattr(source, "vectors") else source

    def remove(self) -> None:
        """Take the hooks off: the encoder computes exactly what it did before."""
        for h in self._handles:
            h.remove()
        self._handles = []


class EncoderTokens:
    """Placeholders on every text encoder of a base model (SDXL: two, each its own width).

    Args:
        tokenizers: the base model's tokenizers (copied, never changed).
        text_encoders: the matching text encoders (hooked until `remove`).
        placeholders: placeholder -> number of vectors it stands for.

    Attributes:
        tokenizers: the tokenizer copies that know the placeholders (pass these to
            `encode_prompts` or a diffusers pipeline).
        splices: one `TokenSplice` per encoder.
        ids: per encoder, placeholder -> token ids.
    """

    def __init__(
        self,
        tokenizers: Sequence[Any],
        text_encoders: Sequence[Any],
        placeholders: Mapping[str, int],
    ):
        self.placeholders = dict(placeholders)
        self.tokenizers: list[Any] = []
        self.splices: list[TokenSplice] = []
        self.ids: list[dict[str, list[int]]] = []
        try:
            for tok, enc in zip(tokenizers, text_encoders, strict=True):
                new_tok, ids = tokenizer_with_placeholders(tok, self.placeholders)
                self.splices.append(TokenSplice(enc))
                self.tokenizers.append(new_tok)
                self.ids.append(ids)
        except BaseException:
            self.remove()  # do not leave the first encoder's hooks behind when the second fails
            raise

    @property
    def dims(self) -> list[int]:
        """Embedding width of each encoder."""
        return [s.dim for s in self.splices]

    def set(self, name: str, vectors: Sequence[Any] | None = None) -> None:
        """Give placeholder `name` its vectors on every encoder: one source per encoder (a
        `LearnedTokens`, a fixed (K, D) tensor) or None for vectors given per call."""
        sources = list(vectors) if vectors is not None else [None] * len(self.splices)
        if len(sources) != len(self.splices):
            raise ValueError(f"{len(sources)} vector sources for {len(self.splices)} text encoders")
        for splice, ids, src in zip(self.splices, self.ids, sources, strict=True):
            splice.add(name, ids[name], src)

    @contextlib.contextmanager
    def given(self, vectors: Mapping[str, Sequence[torch.Tensor]]) -> Iterator[None]:
        """Per-call vectors: placeholder -> one (K, D) or (B, K, D) tensor per encoder."""
        with contextlib.ExitStack() as stack:
            for i, splice in enumerate(self.splices):
                stack.enter_context(splice.given({n: v[i] for n, v in vectors.items()}))
            yield

    def remove(self) -> None:
        for s in self.splices:
            s.remove()

    def __enter__(self) -> EncoderTokens:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()
