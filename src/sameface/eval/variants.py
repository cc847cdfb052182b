"""Method variants: one registered method run several times with its own settings, each a row
of every table.

A *label* names a row: a registered method (`textual-inversion`) or one of its variants
(`textual-inversion@id-e`). A suite gives a variant's settings under `methods:` with its
label as the key; they apply on top of the method's own entry there, so a suite can say
`textual-inversion: {steps: 400}` once and `textual-inversion@id-e: {init: id, reparam_base:
e}` per variant. Variants of different methods mix freely.

Training seeds (a suite's `training_seeds`) repeat an optimisation method's personalisation
with each seed in its config's `seed` (the paper trains every setting three times); the
report pools the images of all seeds and shows the spread between seeds beside the interval
over images. An encoder method's personalisation is one forward pass with nothing random,
so it runs once whatever the suite says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import SamefaceError

SEPARATOR = "@"
_VARIANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def split_label(label: str) -> tuple[str, str | None]:
    """(method, variant or None) of a row label: "textual-inversion@id-e" -> ("textual-inversion", "id-e")."""
    method, sep, variant = label.partition(SEPARATOR)
    return method, (variant if sep else None)


def method_of(label: str) -> str:
    """The registered method a row label runs."""
    return split_label(label)[0]


def check_label(label: Any, *, known: Sequence[str] | None = None) -> str:
    """Return `label` when it names a method (one of `known`, when given) or a variant of one.

    Raises:
        SamefaceError: not text, an unknown method, or a variant name other than letters,
            digits, `_` and `-` (up to 64; it becomes a folder name and a `--set` key).
    """
    if not isinstance(label, str) or not label:
        raise SamefaceError(f"method label {label!r} must be a non-empty name")
    method, variant = split_label(label)
    if known is not None and method not in known:
        raise SamefaceError(
            f"unknown method {method!r} in {label!r}; available: {', '.join(known)}"
        )
    if variant is not None and not _VARIANT.fullmatch(variant):
        raise SamefaceError(
            f"variant name {variant!r} in {label!r}: use letters, digits, '_' and '-' "
            "(at most 64, starting with a letter or digit)"
        )
    return label


@dataclass(frozen=True)
class MethodRun:
    """One row of a bench: a label, the method it runs and the settings that make it.

    Attributes:
        label: the row's name in records, folders and reports.
        method: the registered method.
        training_seeds: the config seeds to personalise with, one artifact each; (None,) =
            once, with the config's own seed.
    """

    label: str
    method: str
    training_seeds: tuple[int | None, ...] = (None,)

    @property
    def variant(self) -> str | None:
        return split_label(self.label)[1]


def method_runs(
    labels: Sequence[str],
    declared: Mapping[str, Any],
    *,
    training_seeds: Sequence[int] | None = None,
    optimises: Mapping[str, bool] | None = None,
) -> list[MethodRun]:
    """The rows `labels` ask for.

    Args:
        labels: what to run (method names and `method@variant` labels).
        declared: the suite's `methods:` mapping; a variant must be declared there (its
            settings are what makes it a variant).
        training_seeds: the suite's training seeds, or None.
        optimises: {method: whether its personalisation trains}; a method that does not gets
            one run whatever `training_seeds` says.

    Raises:
        SamefaceError: a label twice, or a variant the suite does not declare.
    """
    out, seen = [], set()
    for label in labels:
        if label in seen:
            raise SamefaceError(f"{label!r} is listed twice")
        seen.add(label)
        method, variant = split_label(label)
        if variant is not None and label not in declared:
            have = [k for k in declared if method_of(k) == method and k != method]
            raise SamefaceError(
                f"variant {label!r} is not declared in the suite's `methods:` "
                + (
                    f"(declared: {', '.join(have)})"
                    if have
                    else "(it declares none of this method)"
                )
            )
        seeds: tuple[int | None, ...] = (None,)
        if training_seeds and (optimises or {}).get(method, True):
            seeds = tuple(int(s) for s in training_seeds)
        out.append(MethodRun(label, method, seeds))
    return out


def run_settings(
    run: MethodRun,
    training_seed: int | None,
    *,
    defaults: Mapping[str, Mapping] | None = None,
    suite: Mapping[str, Mapping] | None = None,
    overrides: Mapping[str, Mapping] | None = None,
) -> dict:
    """A row's config values, lowest first: the method's defaults (e.g. its world settings),
    the suite's entry for the method, the suite's entry for the variant, the user's settings
    for the method, the user's settings for the label, and the training seed."""
    values: dict = {}
    for layer in (defaults, suite, overrides):
        layer = layer or {}
        values |= dict(layer.get(run.method) or {})
        if run.label != run.method:
            values |= dict(layer.get(run.label) or {})
    if training_seed is not None:
        values["seed"] = training_seed
    return values


@dataclass
class SeedSpread:
    """A metric's mean per training seed, and how far apart they are.

    Attributes:
        means: {training seed: mean over that seed's images}.
        sd: sample standard deviation of the per-seed means (NaN with fewer than two seeds).
    """

    means: dict = field(default_factory=dict)
    sd: float = float("nan")

    @property
    def range(self) -> float:
        """Largest minus smallest per-seed mean (NaN with fewer than two seeds)."""
        vals = list(self.means.values())
        return max(vals) - min(vals) if len(vals) > 1 else float("nan")


def training_seed_spread(records: Sequence[Mapping[str, Any]], label: str, key: str) -> SeedSpread:
    """Per-training-seed means of `key` over a row's image records, and their spread.

    Records without a `training_seed` (a row trained once) give an empty spread.
    """
    import math

    from .stats import mean_ci95

    by_seed: dict[int, list] = {}
    for r in records:
        if r.get("type") == "image" and r.get("method") == label:
            seed = r.get("training_seed")
            if isinstance(seed, int) and not isinstance(seed, bool):
                by_seed.setdefault(seed, []).append(r.get(key))
    means = {}
    for seed in sorted(by_seed):
        s = mean_ci95(by_seed[seed])
        if s.n:
            means[seed] = s.mean
    sd = float("nan")
    if len(means) > 1:
        vals = list(means.values())
        m = math.fsum(vals) / len(vals)
        sd = math.sqrt(math.fsum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return SeedSpread(means, sd)


__all__ = [
    "SEPARATOR",
    "MethodRun",
    "SeedSpread",
    "check_label",
    "method_of",
    "method_runs",
    "run_settings",
    "split_label",
    "training_seed_spread",
]
