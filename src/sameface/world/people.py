"""The population of the miniature world: invented names and mutually distant identities."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from sameface.world.captions import CAPTION_WORDS
from sameface.world.render import IDENTITY_DIM

_ONSETS = (
    "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "j", "y",
    "b", "d", "k", "l", "m", "n", "r", "s", "t", "v", "br", "dr", "kr", "tr", "st", "th", "sh",
)  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "a", "e", "ai", "ei")
_MEDIAL = ("l", "n", "r", "s", "m")
_FINAL = ("n", "l", "r", "s", "th", "nd", "x", "m", "k", "v")
MIN_IDENTITY_DISTANCE = 0.55
"""Minimum L2 distance between any two identities of `sample_identities` (D = 17)."""


def _word(rng: np.random.Generator, n_syll: int) -> str:
    parts = []
    for k in range(n_syll):
        onset = "" if k == 0 and rng.random() < 0.15 else _ONSETS[rng.integers(len(_ONSETS))]
        vowel = _VOWELS[rng.integers(len(_VOWELS))]
        if k < n_syll - 1:
            coda = _MEDIAL[rng.integers(len(_MEDIAL))] if rng.random() < 0.3 else ""
        else:
            coda = _FINAL[rng.integers(len(_FINAL))] if rng.random() < 0.55 else ""
        if k > 0 and len(onset) > 1 and parts[-1][-1] not in "aeiou":
            onset = onset[0]  # no triple consonant clusters
        parts.append(onset + vowel + coda)
    return "".join(parts).capitalize()


def make_names(n: int, rng: np.random.Generator, exclude: object = ()) -> list[str]:
    """`n` unique invented "First Last" names (2-3 syllables each).

    No word of a name equals a caption vocabulary word, and no name equals (case-insensitively)
    any name in `exclude` or another returned name.
    """
    taken = {str(x).lower() for x in exclude}  # type: ignore[attr-defined]
    banned = {w.lower() for w in CAPTION_WORDS}
    out: list[str] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 100 * n + 1000:
            raise RuntimeError(f"could not invent {n} distinct names")
        first = _word(rng, int(rng.integers(2, 4)))
        last = _word(rng, int(rng.integers(2, 4)))
        if not (4 <= len(first) <= 9 and 4 <= len(last) <= 10):
            continue
        if first.lower() in banned or last.lower() in banned or first == last:
            continue
        name = f"{first} {last}"
        if name.lower() in taken:
            continue
        taken.add(name.lower())
        out.append(name)
    return out


def sample_identities(
    n: int,
    rng: np.random.Generator,
    *,
    min_distance: float = MIN_IDENTITY_DISTANCE,
    avoid: np.ndarray | None = None,
) -> np.ndarray:
    """(n, D) float32 identities in [0, 1], pairwise (and to `avoid`) at least `min_distance` apart."""
    dim = IDENTITY_DIM
    kept = np.zeros((0, dim), np.float32) if avoid is None else np.asarray(avoid, np.float32)
    n_avoid = kept.shape[0]
    d2 = min_distance**2
    rounds = 0
    while kept.shape[0] - n_avoid < n:
        rounds += 1
        if rounds > 1000:
            raise RuntimeError(f"could not place {n} identities {min_distance} apart")
        cand = rng.random((min(4096, 2 * (n - kept.shape[0] + n_avoid) + 16), dim), np.float32)
        if kept.shape[0]:
            dist = (cand**2).sum(1)[:, None] - 2 * cand @ kept.T + (kept**2).sum(1)[None, :]
            cand = cand[(dist >= d2).all(1)]
        # greedy within the batch
        inner = (cand**2).sum(1)[:, None] - 2 * cand @ cand.T + (cand**2).sum(1)[None, :]
        close = np.triu(inner < d2, k=1)
        ok = np.ones(len(cand), bool)
        for i in range(len(cand)):
            if ok[i]:
                ok[i + 1 :] &= ~close[i, i + 1 :]
        need = n - (kept.shape[0] - n_avoid)
        kept = np.concatenate([kept, cand[ok][:need]])
    return kept[n_avoid:].copy()


@dataclass
class People:
    """A set of people of the world.

    Attributes:
        names: one unique name per person.
        params: (n, D) float32 identity vectors (`sameface.world.render.IDENTITY_FIELDS`).
        kind: 'known' (seen in training) or 'new' (held out).
    """

    names: list[str]
    params: np.ndarray
    kind: Literal["known", "new"] = "known"

    def __post_init__(self) -> None:
        self.params = np.asarray(self.params, np.float32).reshape(len(self.names), IDENTITY_DIM)

    def __len__(self) -> int:
        return len(self.names)

    def to_json(self) -> str:
        return json.dumps(
            {"kind": self.kind, "names": self.names, "params": self.params.round(6).tolist()}
        )

    @staticmethod
    def load(path: str | Path) -> tuple[People, People]:
        """(known, new) from a file written by `save_people`."""
        return load_people(path)

    @classmethod
    def from_json(cls, text: str) -> People:
        d = json.loads(text)
        return cls(names=list(d["names"]), params=np.asarray(d["params"], np.float32),
                   kind=d.get("kind", "known"))  # fmt: skip


def save_people(path: str | Path, known: People, new: People) -> None:
    """Write both sets to one JSON file ({"known": ..., "new": ...})."""
    text = json.dumps({"known": json.loads(known.to_json()), "new": json.loads(new.to_json())})
    Path(path).write_text(text + "\n")


def load_people(path: str | Path) -> tuple[People, People]:
    """(known, new) from a file written by `save_people`."""
    d = json.loads(Path(path).read_text())
    return People.from_json(json.dumps(d["known"])), People.from_json(json.dumps(d["new"]))


def make_people(n_known: int, n_new: int, seed: int) -> tuple[People, People]:
    """Known and new people, deterministic from `seed`; names disjoint, identities mutually distant."""
    rng = np.random.default_rng(seed)
    names = make_names(n_known + n_new, rng)
    params = sample_identities(n_known + n_new, rng)
    known = People(names[:n_known], params[:n_known], "known")
    new = People(names[n_known:], params[n_known:], "new")
    return known, new
