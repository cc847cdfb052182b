"""Loading a run folder: `results.jsonl` (merged or in shards) and `run.json`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ...errors import ArtifactError

BASELINE = "none"
"""Method name of the no-identity baseline (the prompt with "a person", no identity)."""

BASELINE_LABELS: Mapping[str, str] = MappingProxyType(
    {
        BASELINE: "no identity",
        "known-by-name": "a known person, by name",
        "copy-reference": "a reference photo",
    }
)
"""Every baseline the runner can record, in report order, with what its images are."""

RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"
# ---- loading ------------------------------------------------------------------------


@dataclass
class RunData:
    """A parsed run folder.

    Attributes:
        run_dir: the folder.
        meta: `run.json` (empty when the file is missing).
        images: `"type": "image"` records.
        personalize: `"type": "personalize"` records.
        references: identity -> its `"type": "reference"` record.
        skipped_lines: lines of `results.jsonl` that could not be used (e.g. a partially
            written last line).
        methods: method names, the baselines first (`BASELINE_LABELS` order), then in
            `run.json` order.
        identities: identity names in order of appearance.
        prompts: `(prompt_index, prompt)` sorted by index.
        notes: problems worth telling the reader (missing run.json, missing baseline).
    """

    run_dir: Path
    meta: dict
    images: list[dict]
    personalize: list[dict]
    references: dict[str, dict]
    skipped_lines: int
    methods: list[str]
    identities: list[str]
    prompts: list[tuple[int, str]]
    notes: list[str] = field(default_factory=list)

    @property
    def records(self) -> list[dict]:
        """Image and personalisation records together (what `summarise` takes)."""
        return [*self.images, *self.personalize]


def _method_names(listed: Any) -> list[str]:
    names = []
    for m in listed if isinstance(listed, list) else []:
        if isinstance(m, Mapping):
            m = m.get("name") or m.get("method")
        if isinstance(m, str) and m not in names:
            names.append(m)
    return names


def _record_key(rec: dict) -> tuple | None:
    """What makes a record unique (as the runner sees it); None for an unusable record."""
    kind = rec.get("type")
    method, identity = rec.get("method"), rec.get("identity")
    if kind == "image":
        if not (isinstance(method, str) and isinstance(identity, str)):
            return None
        return (
            "image",
            method,
            identity,
            rec.get("prompt_index"),
            rec.get("seed"),
            rec.get("training_seed"),
            rec.get("image"),
        )
    if kind == "personalize":
        if not isinstance(method, str):
            return None
        return ("personalize", method, identity, rec.get("training_seed"))
    if kind == "reference":
        return ("reference", identity) if isinstance(identity, str) else None
    return ("other", id(rec))  # other record types are for other readers; not an error


def _read_meta(run_dir: Path) -> dict | None:
    """`run.json` as a dict, or None when the run has none."""
    meta_path = run_dir / RUN_FILE
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{meta_path}: unreadable run metadata ({e})") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{meta_path}: expected a JSON object")
    return meta


@dataclass
class _Records:
    """The records of a run's result files, by kind, with what was dropped on the way."""

    images: list[dict] = field(default_factory=list)
    personalize: list[dict] = field(default_factory=list)
    references: dict[str, dict] = field(default_factory=dict)
    skipped: int = 0
    duplicates: int = 0
    any_text: bool = False


def _parse_record(line: str) -> tuple[Any, tuple | None]:
    """A result line's record and its key; the key is None for a line that is not a record."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return None, None
    return rec, _record_key(rec) if isinstance(rec, dict) else None


def _read_records(sources: Sequence[Path]) -> _Records:
    """Parse the result files in order; the first record of a key wins, as in the runner's
    merge, and unparsable lines are counted, not fatal."""
    out = _Records()
    seen_keys: set = set()
    for source in sources:
        try:
            text = source.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise ArtifactError(f"{source}: cannot read ({e.strerror or e})") from None
        for line in text.splitlines():
            if not line.strip():
                continue
            out.any_text = True
            rec, key = _parse_record(line)
            if key is None:
                out.skipped += 1
                continue
            if key in seen_keys:
                out.duplicates += 1
                continue
            seen_keys.add(key)
            kind = rec["type"]
            if kind == "image":
                out.images.append(rec)
            elif kind == "personalize":
                out.personalize.append(rec)
            elif kind == "reference":
                out.references[rec["identity"]] = rec
    return out


def _method_order(images: Sequence[dict], meta: dict) -> list[str]:
    """Methods with images: baselines first (in `BASELINE_LABELS` order), then the rest in
    `run.json`'s order, then any the metadata does not list, in order of appearance; the
    variants of a method (`method@variant`) together, where the method first appears."""
    from ..variants import method_of

    seen = []
    for r in images:
        if r["method"] not in seen:
            seen.append(r["method"])
    order = [m for m in _method_names(meta.get("methods")) if m in seen]
    order += [m for m in seen if m not in order]
    rows = [m for m in order if m not in BASELINE_LABELS]
    families = list(dict.fromkeys(method_of(m) for m in rows))
    rows.sort(key=lambda m: families.index(method_of(m)))  # stable: keeps order within one
    return [m for m in BASELINE_LABELS if m in order] + rows


def _identities_and_prompts(images: Sequence[dict]) -> tuple[list[str], list[tuple[int, str]]]:
    """Identities in order of appearance, and (prompt index, prompt) sorted by index."""
    identities: list[str] = []
    prompts: dict[int, str] = {}
    for r in images:
        if r["identity"] not in identities:
            identities.append(r["identity"])
        idx = r.get("prompt_index")
        if isinstance(idx, int) and not isinstance(idx, bool) and idx not in prompts:
            prompts[idx] = str(r.get("prompt", ""))
    return identities, sorted(prompts.items())


def load_run(run_dir: str | os.PathLike) -> RunData:
    """Read `results.jsonl` and `run.json` from a run folder.

    Unparsable lines (a partially written last line of an interrupted run) are skipped and
    counted; a missing `run.json` is tolerated (the report says the protocol is unknown).

    Args:
        run_dir: the run folder the benchmark runner wrote.

    Raises:
        ArtifactError: the folder or `results.jsonl` is missing, `run.json` is corrupt, or
            there is no image record to report on.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArtifactError(f"{run_dir}: run folder not found")
    results = run_dir / RESULTS_FILE
    parts = sorted(run_dir.glob("results.part*.jsonl"))  # shards of a run not merged yet
    sources = ([results] if results.is_file() else []) + parts
    if not sources:
        raise ArtifactError(
            f"{results}: not found — is {run_dir} a benchmark run folder? "
            "(the benchmark runner writes results.jsonl)"
        )
    notes: list[str] = []
    if parts:
        notes.append(
            f"{len(parts)} unmerged shard file(s) (results.part*.jsonl) were read too: "
            "the run is still going or was interrupted."
        )
    meta = _read_meta(run_dir)
    if meta is None:
        meta = {}
        notes.append(f"{RUN_FILE} is missing: the protocol below is unknown.")

    recs = _read_records(sources)
    if not recs.images:
        what = "has no image records" if recs.any_text else "is empty"
        raise ArtifactError(
            f"{results if results.is_file() else sources[0]} {what}: nothing to report "
            "(did the run generate images?)"
        )
    if recs.duplicates:
        notes.append(f"{recs.duplicates} duplicate record(s) were ignored (the first one counts).")
    if recs.skipped:
        notes.append(
            f"{recs.skipped} line(s) of {RESULTS_FILE} could not be read and were skipped "
            "(e.g. a partially written last line of an interrupted run)."
        )

    order = _method_order(recs.images, meta)
    if BASELINE not in order:
        notes.append(
            f"The no-identity baseline (method '{BASELINE}') is missing from this run, "
            "so the numbers below have no floor to be read against."
        )
    identities, prompts = _identities_and_prompts(recs.images)
    # The suite's own wording: records of a style-reference suite hold each identity's words.
    protocol = meta.get("protocol")
    written = protocol.get("prompts") if isinstance(protocol, Mapping) else None
    if isinstance(written, list):
        prompts = [
            (i, str(written[i]) if i < len(written) and "<style>" in str(written[i]) else p)
            for i, p in prompts
        ]
    return RunData(
        run_dir=run_dir,
        meta=meta,
        images=recs.images,
        personalize=recs.personalize,
        references=recs.references,
        skipped_lines=recs.skipped,
        methods=order,
        identities=identities,
        prompts=prompts,
        notes=notes,
    )
