"""The report's licence table: what produced each row, and under which terms
(`run.json`'s `licenses`, written by `sameface.eval.provenance`)."""

from __future__ import annotations

from collections.abc import Mapping

from ...licenses import FIELD_LABELS, UNKNOWN
from .document import _Code, _Heading, _Para, _Table
from .run import RunData

_ROLES = {**FIELD_LABELS, "clip": "CLIP", "context": "context classifier"}


def _cells(entry: Mapping) -> list:
    lic = entry.get("license")
    if not isinstance(lic, Mapping):
        return [_Code(str(entry.get("model"))), UNKNOWN, "?"]
    return [
        _Code(str(entry.get("model"))),
        str(lic.get("name")),
        "yes" if lic.get("commercial") else "no",
    ]


def license_blocks(run: RunData) -> list:
    """The table, for a run whose `run.json` records licences (older runs: nothing)."""
    info = run.meta.get("licenses")
    if not isinstance(info, Mapping):
        return []
    rows: list = []
    if isinstance(info.get("base"), Mapping):
        rows.append(["every row", "base model", *_cells(info["base"])])
    if isinstance(info.get("identities"), Mapping):
        rows.append(["identities", "recogniser", *_cells(info["identities"])])
    for role, entry in (info.get("scoring") or {}).items():
        if isinstance(entry, Mapping):
            rows.append(["scoring", _ROLES.get(role, role), *_cells(entry)])
    for label, fields in (info.get("rows") or {}).items():
        for name, entry in (fields or {}).items():
            if isinstance(entry, Mapping):
                rows.append([label, _ROLES.get(name, name), *_cells(entry)])
    if not rows:
        return []
    return [
        _Heading(2, "Licences"),
        _Para(
            [
                "The models behind each row and the terms their publishers state "
                "(sameface.licenses; a pointer to their terms, not legal advice). A row whose "
                "models do not all allow commercial use is for research only."
            ]
        ),
        _Table(["row", "part", "model", "licence", "commercial use"], rows, numeric_from=99),
    ]


__all__ = ["license_blocks"]
