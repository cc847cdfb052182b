"""The report's style-reference section (`sameface.eval.style`): how much of the reference's
context each method carries, attribute by attribute, and how much of the reference's face
leaks into the person."""

from __future__ import annotations

from collections.abc import Mapping

from ..stats import Summary, mean_ci95, paired_gain
from .document import _N, _Bullets, _Code, _Heading, _Para, _Table
from .format import _DASH, _finite, _fmt_interval, _label, _row_classes
from .run import BASELINE, RunData

ATTRIBUTES: tuple[str, ...] = (
    "style",
    "framing",
    "background",
    "pattern",
    "hat",
    "glasses",
    "scarf",
)
"""The context attributes a reference's words can state, in the order reported."""


def attribute_accuracy(run: RunData, method: str, attribute: str) -> Summary:
    """The fraction of the method's images whose context classifier reading of `attribute`
    matches what the style reference states (images whose reference does not state it left out)."""
    hits = []
    for r in run.images:
        asked, seen = r.get("context_asked") or {}, r.get("context_predicted") or {}
        if r["method"] == method and attribute in asked and attribute in seen:
            hits.append(float(seen[attribute] == asked[attribute]))
    return mean_ci95(hits)


def style_blocks(run: RunData, summaries: Mapping[str, Mapping[str, Summary]]) -> list:
    """The section, for a run whose records carry `leak_similarity` (else nothing)."""
    if not any(_finite(r.get("leak_similarity")) for r in run.images):
        return []
    methods = [m for m in run.methods if m != "copy-reference"]
    rows = []
    for m in methods:
        row: list = [_label(m)]
        for key in ("context_accuracy", "leak_similarity"):
            s = summaries[m][key]
            v = _fmt_interval(s, "score")
            row.append(v if v == _DASH else [v, _N(s.n)])
            g = paired_gain(run.images, m, key, baseline=BASELINE) if m != BASELINE else None
            v = _DASH if g is None else _fmt_interval(g, "score")
            row.append(v if v == _DASH else [v, _N(g.n)])
        rows.append(row)
    attrs = [a for a in ATTRIBUTES if any(attribute_accuracy(run, m, a).n for m in methods)]
    by_attr = []
    for m in methods:
        row = [_label(m)]
        for a in attrs:
            s = attribute_accuracy(run, m, a)
            v = _fmt_interval(s, "score")
            row.append(v if v == _DASH else [v, _N(s.n)])
        by_attr.append(row)
    return [
        _Heading(2, "Style reference"),
        _Para(
            [
                "Each identity came with a style reference: a portrait of someone else. A method "
                "that learns from it got the portrait and the prompt naming ",
                _Code("<style>"),
                "; every other row got the reference described in words. Context accuracy is "
                "against the attributes those words state; leakage is the face's similarity to "
                "the reference's face (misses = 0), which should stay at the ",
                _Code(BASELINE),
                " row's. Δ: paired with the no-identity image (95% intervals).",
            ]
        ),
        _Table(
            ["method", "context acc.", "Δ context acc.", "leakage", "Δ leakage"],
            rows,
            row_classes=_row_classes(methods),
        ),
        _Heading(3, "The reference's context, attribute by attribute"),
        _Table(["method", *attrs], by_attr, row_classes=_row_classes(methods)),
        _Bullets(
            [
                [
                    "Each cell: the fraction of images where the context classifier reads the "
                    "attribute as the reference shows it, over the images whose reference's "
                    "words state it."
                ]
            ]
        ),
    ]


__all__ = ["ATTRIBUTES", "attribute_accuracy", "style_blocks"]
