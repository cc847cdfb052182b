"""Benchmark report: `report.md`, a self-contained `report.html`, a scatter plot and image grids.

Reads a run folder written by the benchmark runner (`results.jsonl` + `run.json`) and writes,
next to them (or into `out_dir`):

- `report.md` — protocol (suite, base model, the evaluator recogniser and CLIP model, the
  recogniser each method is conditioned on), a summary table per method with means and 95%
  intervals, per-prompt and per-identity tables, links to the figures;
- `scatter.png` — face similarity (misses = 0) against CLIP-T: one translucent dot per
  image, the method mean with 95% error bars — the fidelity/editability trade-off;
- `grid_<identity>.png` — rows = methods (the no-identity baseline first), first column
  = the reference face crops, then the first seed's image for each prompt;
- `report.html` — the same content in one file: inline CSS, images as base64 data URIs,
  nothing fetched from anywhere.

The no-identity baseline (method `none`) is listed first everywhere, so every number is
read against its floor; the optional baselines `known-by-name` (the base model given a person
it knows by name) and `copy-reference` (a reference photo as the image: the fidelity ceiling)
follow it, then the methods. Runs scored with a context classifier (the miniature world) get a
context-accuracy column.
"""

from .run import BASELINE, BASELINE_LABELS, RESULTS_FILE, RUN_FILE, RunData, load_run
from .write import write_report

__all__ = [
    "BASELINE",
    "BASELINE_LABELS",
    "RESULTS_FILE",
    "RUN_FILE",
    "RunData",
    "load_run",
    "write_report",
]
