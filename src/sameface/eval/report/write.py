"""`write_report`: load a run, compose its sections and figures, write markdown and HTML."""

from __future__ import annotations

import os
from pathlib import Path

from ...fileio import child_path, write_bytes_atomic
from ..stats import summarise
from .document import _Heading, _Image, _Para, _render_html, _render_md
from .figures import _draw_grid, _draw_scatter, _grid_filenames
from .provenance import license_blocks
from .run import load_run
from .sections import (
    _gain_blocks,
    _glance_blocks,
    _identity_blocks,
    _per_prompt_blocks,
    _protocol_blocks,
    _summary_blocks,
)
from .style import style_blocks


def write_report(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    cell_px: int = 128,
) -> tuple[Path, Path]:
    """Write `report.md`, `report.html`, `scatter.png` and `grid_<identity>.png` for a run.

    Args:
        run_dir: the run folder (`results.jsonl`, `run.json`, the images).
        out_dir: where to write; defaults to `run_dir`.
        cell_px: side of an image cell in the grids, in pixels.

    Returns:
        `(md_path, html_path)`.

    Raises:
        ArtifactError: missing or empty results (see `load_run`).
        OutputError: an output file cannot be written.
    """
    if cell_px < 32:
        raise ValueError(f"cell_px must be >= 32, got {cell_px}")
    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.run_dir
    summaries = {m: summarise(run.records, m) for m in run.methods}

    figures: dict[str, bytes] = {"scatter.png": _draw_scatter(run, summaries)}
    grids = _grid_filenames(run.identities)
    for ident in run.identities:
        figures[grids[ident]] = _draw_grid(run, ident, cell_px)

    suite = run.meta.get("suite") or run.run_dir.name
    title = f"sameface benchmark report: {suite}"
    blocks: list = [_Heading(1, title)]
    for note in run.notes:
        blocks.append(_Para([f"Note: {note}"]))
    # What a person looks for first (the pictures, the answer), then the evidence, then how.
    blocks += _glance_blocks(run, summaries, grids)
    blocks += _gain_blocks(run, summaries)
    blocks += style_blocks(run, summaries)
    blocks += _summary_blocks(run, summaries)
    blocks += [
        _Heading(2, "Fidelity vs editability"),
        _Para(
            [
                "Face similarity (misses = 0) against CLIP-T: one dot per image, one large "
                "marker per method mean with its 95% interval. Up is more like the person, "
                "right is more like the prompt."
            ]
        ),
        _Image("scatter.png", "face similarity against CLIP-T per method"),
    ]
    blocks += _per_prompt_blocks(run)
    blocks += _identity_blocks(run, grids)
    blocks += _protocol_blocks(run)
    blocks += license_blocks(run)

    for name, data in figures.items():
        write_bytes_atomic(child_path(out, name, what="figure name"), data)
    md_path, html_path = out / "report.md", out / "report.html"
    write_bytes_atomic(md_path, _render_md(blocks).encode("utf-8"))
    write_bytes_atomic(html_path, _render_html(blocks, title, figures).encode("utf-8"))
    return md_path, html_path
