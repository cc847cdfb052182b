"""The three initialisations of seed 001: "face", "rand2" and "id"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import SamefaceError

FACE_PHRASE = "human face"


@dataclass
class InitChoice:
    """Which vocabulary tokens the learned vectors start from, and why.

    Attributes:
        init: the init actually used ("face", "rand2" or "id").
        token_ids: vocabulary ids, one per learned vector.
        description: human-readable summary for logs and the sidecar.
        celebrity: for "id", the chosen celebrity's name.
        similarity: for "id", face similarity of the identity to that celebrity.
    """

    init: str
    token_ids: list[int]
    description: str
    celebrity: str | None = None
    similarity: float | None = None


def fit_to_count(ids: list[int], k: int) -> list[int]:
    """Exactly `k` ids: the first k when there are more, cycled when there are fewer.

    Only used when `num_tokens` is set explicitly; by default the vector count follows the init.
    """
    if not ids:
        raise ValueError("no token ids to initialise from")
    return [ids[i % len(ids)] for i in range(k)]


def word_ids(tokenizer: Any, text: str) -> list[int]:
    """Vocabulary ids of `text` without start/end/padding tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def choose_init(
    init: str,
    tokenizer: Any,
    num_tokens: int | None,
    *,
    identity: Any = None,
    bank: Any = None,
    seed: int = 0,
) -> InitChoice:
    """Pick the starting tokens for `init`.

    Args:
        init: "auto" ("id" with a bank, else "face"), "face", "rand2" or "id".
        tokenizer: the base model's (first) tokenizer.
        num_tokens: number of learned vectors; None = as many as the init gives (2 for "face"
            and "rand2", the celebrity name's token count for "id", as in the paper).
        identity: the `Identity` (for "id"; its recogniser must be the bank's).
        bank: a `CelebrityBank` (for "id" and "rand2").
        seed: RNG seed (for "rand2").

    Raises:
        SamefaceError: "id"/"rand2" without a bank, or a bank made with another recogniser.
    """
    if init == "auto":
        init = "id" if bank is not None and identity is not None else "face"
    if init == "face":
        ids = word_ids(tokenizer, FACE_PHRASE)
        ids = fit_to_count(ids, num_tokens or len(ids))
        return InitChoice("face", ids, f"tokens of {FACE_PHRASE!r}")
    if bank is None or len(bank) == 0:
        raise SamefaceError(
            f"init {init!r} needs a celebrity bank (--celeb-bank DIR); build one with "
            "`sameface celebs build --base MODEL --out DIR` or `--photos DIR`, or use --init face"
        )
    if init == "rand2":
        # Two (k) random vectors out of all celebrity-name tokens (seed 001, init 2).
        pool = sorted({t for ids in bank.token_ids for t in ids})
        rng = np.random.default_rng(seed)
        k = num_tokens or 2
        picked = rng.choice(pool, size=k, replace=len(pool) < k)
        return InitChoice(
            "rand2", [int(t) for t in picked], f"random celebrity-name tokens (seed {seed})"
        )
    if init == "id":
        if identity is None:
            raise SamefaceError("init 'id' needs the identity")
        if bank.embeddings.shape[1] != identity.embedding.shape[-1]:
            raise SamefaceError(
                f"the celebrity bank's embeddings ({bank.embeddings.shape[1]}-d) come from another "
                f"recogniser than the identity's ({identity.embedding.shape[-1]}-d); "
                "build the identity with the bank's recogniser"
            )
        name, sim = bank.nearest(identity, k=1)[0]  # also checks the recogniser's name
        ids = word_ids(tokenizer, name)
        ids = fit_to_count(ids, num_tokens or len(ids))
        return InitChoice(
            "id",
            ids,
            f"tokens of {name!r} (face similarity {sim:.3f})",
            celebrity=name,
            similarity=float(sim),
        )
    raise ValueError(f"unknown init {init!r}")
