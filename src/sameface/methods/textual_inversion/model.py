"""The trainable part: a few token vectors per text encoder, spliced into the frozen encoder."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from ...errors import SamefaceError


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


class TokenSplice:
    """Make a frozen text encoder read learned vectors for added token ids.

    The tokenizer gets the placeholder tokens (ids past the vocabulary); the encoder's
    embedding table is left untouched: a pre-hook maps the new ids to a valid id and a hook
    swaps the learned vectors into those positions. So the base weights never change and
    gradients reach only the learned vectors.
    """

    def __init__(self, text_encoder: Any, token_ids: list[int], learned: LearnedTokens):
        self.token_ids = list(token_ids)
        self.learned = learned
        emb = text_encoder.get_input_embeddings()
        # Every tokenizer copy hands out the same new ids, so two identities on one encoder
        # would silently overwrite each other: allow one at a time.
        if getattr(emb, "_sameface_splice", None) is not None:
            raise SamefaceError(
                "another identity is already attached to this base model's text encoder (an open "
                "pipeline or a training run); close it first (`pipe.close()` or `with ... as pipe:`)"
            )
        emb._sameface_splice = self
        self._emb = emb
        self._vocab = emb.num_embeddings
        self._handles = [
            emb.register_forward_pre_hook(self._pre),
            emb.register_forward_hook(self._post),
        ]

    def _pre(self, module, args):
        ids = args[0]
        self._ids = ids
        return (ids.clamp_max(self._vocab - 1), *args[1:])

    def _post(self, module, args, output):
        ids = self._ids
        vecs = self.learned.vectors().to(output.dtype)
        for j, tid in enumerate(self.token_ids):
            output = torch.where((ids == tid)[..., None], vecs[j], output)
        return output

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        if getattr(self._emb, "_sameface_splice", None) is self:
            self._emb._sameface_splice = None


def tokenizer_with_placeholder(
    tokenizer: Any, placeholder: str, num_tokens: int
) -> tuple[Any, list[int]]:
    """A copy of `tokenizer` that knows the placeholder tokens, and their ids.

    Raises:
        ValueError: a placeholder token is already a word of the vocabulary.
    """
    tok = copy.deepcopy(tokenizer)
    names = placeholder_tokens(placeholder, num_tokens)
    tok.add_tokens(names)
    ids = tok.convert_tokens_to_ids(names)
    # A placeholder that is already a vocabulary piece ("a", "face") keeps its old id: it
    # would splice into every prompt using that word.
    if any(i < len(tokenizer) for i in ids):
        raise ValueError(
            f"placeholder {placeholder!r} is already a word of the vocabulary; choose another, e.g. <id>"
        )
    return tok, ids
