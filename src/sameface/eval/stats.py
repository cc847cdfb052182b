"""Summary statistics for benchmark results: means with Student-t 95% intervals.

Pure functions on plain Python values (no numpy, no scipy). Missing values (`None`, NaN,
±inf) are ignored everywhere, so a metric that is undefined for some images (face
similarity when no face was detected, CLIP-I for the no-identity baseline) is averaged over
the images where it is defined and its `n` says how many those were.

The intervals treat every image as an independent sample (seeds, prompts and identities
pooled). Images of one identity or one prompt are correlated, so the intervals are on the
optimistic side; they are for telling noise from signal at a glance, not for a paper. A row
personalised once per training seed has one image per seed for each (identity, prompt,
seed) cell; those are averaged into one value per cell first, so retraining does not count
as more samples (the spread between training seeds is reported on its own).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from statistics import NormalDist
from typing import Any, NamedTuple

__all__ = [
    "IMAGE_METRICS",
    "METRICS",
    "Summary",
    "mean_ci95",
    "paired_gain",
    "proportion_ci95",
    "summarise",
    "t_cdf",
    "t_ppf",
]

IMAGE_METRICS: tuple[str, ...] = (
    "face_similarity",
    "face_similarity_with_misses",
    "clip_t",
    "clip_i",
    "face_clip_i",
    "id_norm",
    "text_norm",
    "aggregate",
    "context_accuracy",
    "leak_similarity",
    "gen_time_s",
)
"""Per-image numeric fields of a `"type": "image"` record that `summarise` averages."""

METRICS: tuple[str, ...] = (
    "detection_rate",
    *IMAGE_METRICS,
    "personalize_time_s",
    "personalize_peak_mem_mb",
)
"""Every key of the dict `summarise` returns, in display order."""


class Summary(NamedTuple):
    """A mean with its 95% confidence interval `[low, high]` over `n` values.

    `n == 0` gives NaN everywhere; `n == 1` gives the value with NaN bounds (no spread).
    """

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        """Half the interval width (NaN when the interval is undefined)."""
        return (self.high - self.low) / 2.0


_NAN = float("nan")
_EMPTY = Summary(_NAN, _NAN, _NAN, 0)


def _finite(values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        if v is None or isinstance(v, bool):
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x):
            out.append(x)
    return out


# ---- Student t distribution ---------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Cumulative distribution function of Student's t with `df` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if t == 0.0:
        return 0.5
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def _t_pdf(t: float, df: float) -> float:
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1) / 2 * math.log1p(t * t / df))


def _cornish_fisher(z: float, df: float) -> float:
    """Asymptotic expansion of the t quantile around the normal one (Abramowitz–Stegun 26.7.5)."""
    z2 = z * z
    g1 = (z2 + 1) * z / 4
    g2 = ((5 * z2 + 16) * z2 + 3) * z / 96
    g3 = (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / 384
    g4 = ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) * z / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def t_ppf(p: float, df: float) -> float:
    """Quantile function (inverse CDF) of Student's t with `df` degrees of freedom.

    Exact closed forms for df 1 and 2; otherwise Newton iterations on the CDF (regularised
    incomplete beta) from the Cornish–Fisher start, accurate to ~1e-10; for df > 1000 the
    expansion alone (error < 1e-12). `t_ppf(0.975, 10) == 2.2281…`.

    Args:
        p: probability in (0, 1).
        df: degrees of freedom, > 0.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {p}")
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    t = _cornish_fisher(NormalDist().inv_cdf(p), df)
    if df > 1000:
        return t
    # Bracketed Newton: the CDF is increasing, the root lies in (0, hi).
    lo, hi = 0.0, max(2.0 * t, 1.0)
    while t_cdf(hi, df) < p:
        lo, hi = hi, 2.0 * hi
    t = min(max(t, lo), hi)
    for _ in range(100):
        f = t_cdf(t, df) - p
        if f > 0:
            hi = t
        else:
            lo = t
        step = f / _t_pdf(t, df)
        nxt = t - step
        if not lo < nxt < hi:
            nxt = (lo + hi) / 2.0
        if abs(nxt - t) <= 1e-12 * max(1.0, abs(t)):
            return nxt
        t = nxt
    return t


# ---- summaries ------------------------------------------------------------------------


def mean_ci95(values: Iterable[Any]) -> Summary:
    """Mean and two-sided 95% Student-t confidence interval of the finite values.

    `None`, NaN, ±inf, booleans and non-numbers are ignored.

    Args:
        values: numbers (any iterable).

    Returns:
        `Summary(mean, low, high, n)` — a tuple; `n == 0` gives NaNs, `n == 1` NaN bounds.
    """
    xs = _finite(values)
    n = len(xs)
    if n == 0:
        return _EMPTY
    mean = math.fsum(xs) / n
    if n == 1:
        return Summary(mean, _NAN, _NAN, 1)
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    half = t_ppf(0.975, n - 1) * math.sqrt(var / n)
    return Summary(mean, mean - half, mean + half, n)


def proportion_ci95(successes: int, n: int) -> Summary:
    """A proportion with its 95% Wilson score interval (Wilson 1927).

    Unlike mean ± t·s/√n on 0/1 values, the interval does not collapse to zero width when
    every trial succeeds (12 faces detected out of 12 is not a certainty of 1.0); it is
    asymmetric near 0 and 1.
    """
    if n <= 0:
        return _EMPTY
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    z = NormalDist().inv_cdf(0.975)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Summary(p, low, high, n)


def _proportion(flags: list[bool]) -> Summary:
    return proportion_ci95(sum(1 for f in flags if f), len(flags))


def summarise(
    records: Iterable[Mapping[str, Any]],
    method: str,
    *,
    identity: str | None = None,
    prompt_index: int | None = None,
) -> dict[str, Summary]:
    """Per-metric means with 95% intervals for one method.

    Args:
        records: parsed `results.jsonl` lines of every type; image records (`"type":
            "image"`) give the per-image metrics, `"type": "personalize"` records the
            personalisation time and peak memory.
        method: the method name (`"none"` for the no-identity baseline).
        identity: only this identity (optional).
        prompt_index: only this prompt (optional; does not filter personalisation records).

    Returns:
        `{metric: Summary}` for every key of `METRICS`: `detection_rate` (fraction of images
        with a detected face, Wilson interval), the fields of `IMAGE_METRICS`, `personalize_time_s` and
        `personalize_peak_mem_mb`. Metrics with no value have `n == 0` and NaNs.
    """
    images: list[Mapping[str, Any]] = []
    personalize: list[Mapping[str, Any]] = []
    for r in records:
        if r.get("method") != method:
            continue
        if identity is not None and r.get("identity") != identity:
            continue
        kind = r.get("type")
        if kind == "image":
            if prompt_index is not None and r.get("prompt_index") != prompt_index:
                continue
            images.append(r)
        elif kind == "personalize":
            personalize.append(r)
    out: dict[str, Summary] = {
        "detection_rate": _proportion(
            [r["face_detected"] for r in images if isinstance(r.get("face_detected"), bool)]
        )
    }
    for key in IMAGE_METRICS:
        out[key] = mean_ci95(_per_cell(images, key).values())
    out["personalize_time_s"] = mean_ci95(r.get("time_s") for r in personalize)
    out["personalize_peak_mem_mb"] = mean_ci95(r.get("peak_mem_mb") for r in personalize)
    return out


def paired_gain(
    records: Iterable[Mapping[str, Any]],
    method: str,
    key: str,
    *,
    baseline: str = "none",
    identity: str | None = None,
) -> Summary:
    """Mean of `method − baseline` for one metric over images paired by identity, prompt and
    seed, with its 95% Student-t interval.

    Pairing removes what the two share (the prompt, the seed's layout, how hard the identity
    is), so a gain shows up with far fewer images than comparing two unpaired means. Pairs
    where either value is missing are left out.
    """

    floor: dict[tuple, list] = {}
    mine: list[Mapping[str, Any]] = []
    for r in records:
        if r.get("type") != "image" or (identity is not None and r.get("identity") != identity):
            continue
        if r.get("method") == baseline:  # a baseline row trained with seeds: their mean
            floor.setdefault(_cell(r), []).append(r.get(key))
        elif r.get("method") == method:
            mine.append(r)
    diffs = []
    for cell, value in _per_cell(mine, key).items():
        b = _finite(floor.get(cell[-3:], []))
        if b:
            diffs.append(value - math.fsum(b) / len(b))
    return mean_ci95(diffs)


def _cell(r: Mapping[str, Any]) -> tuple:
    """An image's (identity, prompt, seed): what pairs it with the baseline's image."""
    return (r.get("identity"), r.get("prompt_index"), r.get("seed"))


def _per_cell(images: Iterable[Mapping[str, Any]], key: str) -> dict[tuple, float]:
    """{cell: mean of `key` over the cell's finite values}: one value per image, except for a
    row trained with several seeds, whose images of one cell (one per seed) are averaged."""
    cells: dict[tuple, list] = {}
    for i, r in enumerate(images):
        # Only a training seed's image shares its cell; any other image is its own sample.
        cell = _cell(r) if r.get("training_seed") is not None else ("image", i, *_cell(r))
        cells.setdefault(cell, []).append(r.get(key))
    out = {}
    for cell, values in cells.items():
        xs = _finite(values)
        if xs:
            out[cell] = math.fsum(xs) / len(xs)
    return out
