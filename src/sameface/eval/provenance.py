"""What produced each row of a run, with its licence (`sameface.licenses`): the base model,
the scoring models, the recogniser the identities were built with, and each row's own models
(a recogniser, a CLIP tower, trained or imported weights). The runner writes it into
`run.json`; the report prints it."""

from __future__ import annotations

from typing import Any

from ..licenses import base_license, config_licenses, license_of


def _entry(model: Any, lic: Any) -> dict:
    return {"model": str(model), "license": None if lic is None else lic.to_dict()}


def run_licenses(settings: Any, evaluator: Any, runs: list, specs: dict, suite: Any):
    """{"base": entry, "scoring": {role: entry}, "identities": entry, "rows": {label: {field:
    entry}}}, an entry being {"model", "license" (None when unknown)}."""
    from ..errors import SamefaceError

    scoring = {"recognizer": evaluator.analyzer.recognizer.name, "clip": evaluator.clip.name}
    context = getattr(evaluator, "context", None)
    if context is not None:
        scoring["context"] = "world"  # only the proving ground has a context classifier
    rows = {}
    for run in runs:
        try:
            config = specs[run.method].config_cls(**settings.row_values(run, None, suite))
        except (TypeError, ValueError, SamefaceError):
            continue  # the row itself reports a bad setting when it runs
        rows[run.label] = config_licenses(config)
    return {
        "base": _entry(settings.base_spec, base_license(settings.base_spec)),
        "scoring": {k: _entry(v, license_of(v)) for k, v in scoring.items()},
        "identities": _entry(
            settings.identity_recognizer, license_of(settings.identity_recognizer)
        ),
        "rows": rows,
    }


__all__ = ["run_licenses"]
