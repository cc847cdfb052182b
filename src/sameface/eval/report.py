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

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import ArtifactError, SamefaceError
from ..fileio import child_path, write_bytes_atomic
from .stats import Summary, paired_gain, summarise

__all__ = ["BASELINE", "RunData", "load_run", "write_report"]

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

# (metric key, column label, number kind). Kinds pick the number format.
_SUMMARY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("detection_rate", "detection rate", "rate"),
    ("face_similarity", "face sim (detected only)", "score"),
    ("face_similarity_with_misses", "face sim (misses = 0)", "score"),
    ("clip_t", "CLIP-T", "score"),
    ("clip_i", "CLIP-I", "score"),
    ("face_clip_i", "face CLIP-I", "score"),
    ("id_norm", "id_norm", "score"),
    ("text_norm", "text_norm", "score"),
    ("aggregate", "aggregate", "score"),
    ("context_accuracy", "context acc.", "score"),
    ("personalize_time_s", "personalise s", "time"),
    ("gen_time_s", "s/image", "time"),
)
_MEMORY_COLUMN = ("personalize_peak_mem_mb", "personalise peak MB", "memory")

_DASH = "—"


def _label(method: str) -> str:
    """A method's name, with what its images are for a baseline."""
    what = BASELINE_LABELS.get(method)
    return f"{method} ({what})" if what else method


def _row_classes(methods: Sequence[str]) -> list[str]:
    return ["baseline" if m in BASELINE_LABELS else "" for m in methods]


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
            rec.get("image"),
        )
    if kind == "personalize":
        return ("personalize", method, identity) if isinstance(method, str) else None
    if kind == "reference":
        return ("reference", identity) if isinstance(identity, str) else None
    return ("other", id(rec))  # other record types are for other readers; not an error


def load_run(run_dir: str | os.PathLike) -> RunData:
    """Read `results.jsonl` and `run.json` from a run folder.

    Unparsable lines (a partially written last line of an interrupted run) are skipped and
    counted; a missing `run.json` is tolerated (the report says the protocol is unknown).

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
    meta: dict = {}
    meta_path = run_dir / RUN_FILE
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ArtifactError(f"{meta_path}: unreadable run metadata ({e})") from None
        if not isinstance(meta, dict):
            raise ArtifactError(f"{meta_path}: expected a JSON object")
    else:
        notes.append(f"{RUN_FILE} is missing: the protocol below is unknown.")

    images: list[dict] = []
    personalize: list[dict] = []
    references: dict[str, dict] = {}
    seen_keys: set = set()
    skipped = duplicates = 0
    any_text = False
    for source in sources:
        try:
            text = source.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise ArtifactError(f"{source}: cannot read ({e.strerror or e})") from None
        for line in text.splitlines():
            if not line.strip():
                continue
            any_text = True
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                skipped += 1
                continue
            key = _record_key(rec) if isinstance(rec, dict) else None
            if key is None:
                skipped += 1
                continue
            if key in seen_keys:  # as the runner's merge does: the first record of a key wins
                duplicates += 1
                continue
            seen_keys.add(key)
            kind = rec["type"]
            if kind == "image":
                images.append(rec)
            elif kind == "personalize":
                personalize.append(rec)
            elif kind == "reference":
                references[rec["identity"]] = rec
    if not images:
        what = "has no image records" if any_text else "is empty"
        raise ArtifactError(
            f"{results if results.is_file() else sources[0]} {what}: nothing to report "
            "(did the run generate images?)"
        )
    if duplicates:
        notes.append(f"{duplicates} duplicate record(s) were ignored (the first one counts).")
    if skipped:
        notes.append(
            f"{skipped} line(s) of {RESULTS_FILE} could not be read and were skipped "
            "(e.g. a partially written last line of an interrupted run)."
        )

    seen = []
    for r in images:
        if r["method"] not in seen:
            seen.append(r["method"])
    order = [m for m in _method_names(meta.get("methods")) if m in seen]
    order += [m for m in seen if m not in order]
    order = [m for m in BASELINE_LABELS if m in order] + [
        m for m in order if m not in BASELINE_LABELS
    ]
    if BASELINE not in order:
        notes.append(
            f"The no-identity baseline (method '{BASELINE}') is missing from this run, "
            "so the numbers below have no floor to be read against."
        )

    identities: list[str] = []
    prompts: dict[int, str] = {}
    for r in images:
        if r["identity"] not in identities:
            identities.append(r["identity"])
        idx = r.get("prompt_index")
        if isinstance(idx, int) and not isinstance(idx, bool) and idx not in prompts:
            prompts[idx] = str(r.get("prompt", ""))
    return RunData(
        run_dir=run_dir,
        meta=meta,
        images=images,
        personalize=personalize,
        references=references,
        skipped_lines=skipped,
        methods=order,
        identities=identities,
        prompts=sorted(prompts.items()),
        notes=notes,
    )


# ---- number formatting --------------------------------------------------------------


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _decimals(kind: str, value: float) -> int:
    if kind == "score":
        return 3
    if kind == "rate":
        return 2
    if kind == "memory":
        return 0
    a = abs(value)  # times
    return 0 if a >= 100 else 1 if a >= 10 else 2


def _fmt_interval(s: Summary, kind: str) -> str:
    """`mean ± half-width`, `mean [low, high]` when asymmetric, `mean` when n = 1, `—` when n = 0."""
    if s.n == 0 or not _finite(s.mean):
        return _DASH
    d = _decimals(kind, s.mean)
    mean = f"{s.mean:.{d}f}"
    if not (_finite(s.low) and _finite(s.high)):
        return mean
    below, above = s.mean - s.low, s.high - s.mean
    if abs(below - above) <= 1e-9 * max(1.0, abs(s.mean)):
        return f"{mean} ± {(s.high - s.low) / 2:.{d}f}"
    return f"{mean} [{s.low:.{d}f}, {s.high:.{d}f}]"


def _fmt_scalar(v: Any) -> str:
    if v is None:
        return _DASH
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt_scalar(x) for x in v) if v else _DASH
    if isinstance(v, Mapping):
        return ", ".join(f"{k} {_fmt_scalar(x)}" for k, x in v.items()) if v else _DASH
    return str(v)


def _fmt_model(spec: Any) -> str:
    """A recogniser / CLIP description: `name (version v, k v…)` from a dict or a string."""
    if spec is None:
        return _DASH
    if not isinstance(spec, Mapping):
        return str(spec)
    name = spec.get("name") or spec.get("model")
    rest = {k: v for k, v in spec.items() if k not in ("name", "model") and v is not None}
    if name is None:
        return _fmt_scalar(rest)
    return f"{name} ({_fmt_scalar(rest)})" if rest else str(name)


def _model_name(spec: Any) -> str | None:
    if isinstance(spec, Mapping):
        spec = spec.get("name") or spec.get("model")
    return str(spec) if spec is not None else None


# ---- a tiny document model rendered twice (markdown and HTML) -----------------------


@dataclass
class _Code:
    text: str


@dataclass
class _N:
    """A sample count next to a number: `(n=12)` in markdown, small grey in HTML."""

    n: int


@dataclass
class _Para:
    parts: list  # str | _Code


@dataclass
class _Heading:
    level: int
    text: str


@dataclass
class _Table:
    header: list[str]
    rows: list[list]  # cells: str | _Code
    row_classes: list[str] = field(default_factory=list)
    numeric_from: int = 1  # columns from this index are right-aligned


@dataclass
class _Image:
    filename: str
    alt: str
    scale: bool = True  # False: keep pixel size (grid text stays legible), scroll instead


@dataclass
class _Bullets:
    items: list[list]  # each item a list of str | _Code


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def _md_text(s: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", s)


def _md_inline(part: Any, in_table: bool = False) -> str:
    if isinstance(part, list):
        return "".join(_md_inline(p, in_table) for p in part)
    if isinstance(part, _N):
        return f" (n={part.n})"
    if isinstance(part, _Code):
        t = part.text.replace("\n", " ")
        fence = "``" if "`" in t else "`"
        t = f"{fence} {t} {fence}" if fence == "``" else f"{fence}{t}{fence}"
        return t.replace("|", r"\|") if in_table else t
    return _md_text(str(part).replace("\n", " "))


def _render_md(blocks: list) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, _Heading):
            out.append(f"{'#' * b.level} {_md_text(b.text)}")
        elif isinstance(b, _Para):
            out.append(_md_inline(b.parts))
        elif isinstance(b, _Bullets):
            out.append("\n".join(f"- {_md_inline(item)}" for item in b.items))
        elif isinstance(b, _Table):
            lines = ["| " + " | ".join(_md_inline(h, True) for h in b.header) + " |"]
            aligns = [":---" if i < b.numeric_from else "---:" for i in range(len(b.header))]
            lines.append("| " + " | ".join(aligns) + " |")
            for row in b.rows:
                lines.append("| " + " | ".join(_md_inline(c, True) for c in row) + " |")
            out.append("\n".join(lines))
        elif isinstance(b, _Image):
            out.append(f"![{_md_text(b.alt)}]({b.filename})")
    return "\n\n".join(out) + "\n"


def _html_inline(part: Any) -> str:
    if isinstance(part, list):
        return "".join(_html_inline(p) for p in part)
    if isinstance(part, _N):
        return f' <span class="n">n={part.n}</span>'
    if isinstance(part, _Code):
        return f"<code>{html.escape(part.text)}</code>"
    return html.escape(str(part))


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1400px;padding:0 1rem;color:#1a1a1a;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
h3{font-size:1.05rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.88rem;margin:.5rem 0}
th,td{border:1px solid #d5d5d5;padding:.25rem .5rem;vertical-align:top}
th{background:#f3f3f3;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.baseline td{background:#f7f7f2;font-style:italic}
code{background:#f2f2f2;padding:0 .2rem;border-radius:3px;font-size:.9em}
img{max-width:100%;height:auto;border:1px solid #e2e2e2}
img.full{max-width:none}
.n{color:#777;font-size:.8em}
ul{padding-left:1.2rem}
"""


def _render_html(blocks: list, title: str, images: Mapping[str, bytes]) -> str:
    body: list[str] = []
    for b in blocks:
        if isinstance(b, _Heading):
            body.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, _Para):
            body.append(f"<p>{_html_inline(b.parts)}</p>")
        elif isinstance(b, _Bullets):
            items = "".join(f"<li>{_html_inline(i)}</li>" for i in b.items)
            body.append(f"<ul>{items}</ul>")
        elif isinstance(b, _Table):
            head = "".join(f"<th>{_html_inline(h)}</th>" for h in b.header)
            rows = []
            for r, row in enumerate(b.rows):
                cls = b.row_classes[r] if r < len(b.row_classes) else ""
                cells = "".join(
                    f'<td class="num">{_html_inline(c)}</td>'
                    if i >= b.numeric_from
                    else f"<td>{_html_inline(c)}</td>"
                    for i, c in enumerate(row)
                )
                rows.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
            body.append(
                f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
                f"<tbody>{''.join(rows)}</tbody></table></div>"
            )
        elif isinstance(b, _Image):
            data = images.get(b.filename)
            if data is None:
                body.append(f"<p>({html.escape(b.alt)}: not drawn)</p>")
            else:
                uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
                alt = html.escape(b.alt)
                if b.scale:
                    body.append(f'<p><img src="{uri}" alt="{alt}"></p>')
                else:
                    body.append(
                        f'<div class="scroll"><img class="full" src="{uri}" alt="{alt}"></div>'
                    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


# ---- writing ------------------------------------------------------------------------


def _slug(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "identity"
    return s[:80]


def _grid_filenames(identities: Sequence[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    used: set[str] = set()
    for ident in identities:
        base = f"grid_{_slug(ident)}"
        name, k = f"{base}.png", 2
        while name.lower() in used:  # case-insensitive file systems
            name, k = f"{base}_{k}.png", k + 1
        used.add(name.lower())
        names[ident] = name
    return names


# ---- figures ------------------------------------------------------------------------


def _png_bytes_from_figure(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _method_colours(methods: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    colours: dict[str, Any] = {}
    k = 0
    greys = {BASELINE: (0.45, 0.45, 0.45), "known-by-name": (0.7, 0.55, 0.3)}
    greys["copy-reference"] = (0.15, 0.15, 0.15)
    for m in methods:
        if m in greys:
            colours[m] = greys[m]
        else:
            colours[m] = palette[k % len(palette)]
            k += 1
    return colours


def _draw_scatter(run: RunData, summaries: Mapping[str, Mapping[str, Summary]]) -> bytes:
    from matplotlib.figure import Figure

    recognizer = (
        _model_name(run.meta.get("evaluator", {}).get("recognizer")) or "recogniser not recorded"
    )
    clip = _model_name(run.meta.get("evaluator", {}).get("clip")) or "CLIP not recorded"
    colours = _method_colours(run.methods)
    fig = Figure(figsize=(8.5, 5.5), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    drawn = False
    for m in run.methods:
        pts = [
            (r.get("clip_t"), r.get("face_similarity_with_misses"))
            for r in run.images
            if r["method"] == m
        ]
        pts = [(x, y) for x, y in pts if _finite(x) and _finite(y)]
        if pts:
            drawn = True
            ax.scatter(
                [p[0] for p in pts],
                [p[1] for p in pts],
                s=12,
                alpha=0.3,
                color=colours[m],
                linewidths=0,
            )
        sx, sy = summaries[m]["clip_t"], summaries[m]["face_similarity_with_misses"]
        if sx.n == 0 or sy.n == 0:
            continue
        drawn = True

        def err(s: Summary) -> list[list[float]] | None:
            if not (_finite(s.low) and _finite(s.high)):
                return None
            return [[s.mean - s.low], [s.high - s.mean]]

        label = _label(m)
        ax.errorbar(
            [sx.mean],
            [sy.mean],
            xerr=err(sx),
            yerr=err(sy),
            fmt="s" if m in BASELINE_LABELS else "o",
            markersize=10,
            markeredgecolor="black",
            markeredgewidth=0.8,
            color=colours[m],
            ecolor=colours[m],
            elinewidth=1.6,
            capsize=4,
            label=f"{label}  (n={min(sx.n, sy.n)})",
            zorder=3,
        )
    if not drawn:
        ax.text(
            0.5, 0.5, "no image has both scores", ha="center", va="center", transform=ax.transAxes
        )
    ax.axhline(0.0, color="0.8", linewidth=0.8, zorder=0)
    ax.set_xlabel(f"CLIP-T: image–prompt similarity ({clip})  →  editability")
    ax.set_ylabel(f"face similarity, misses = 0 ({recognizer})  →  fidelity")
    suite = run.meta.get("suite") or run.run_dir.name
    ax.set_title(
        f"Fidelity vs editability — {suite}\nmethod means with 95% intervals; dots = images"
    )
    ax.grid(True, color="0.92")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    return _png_bytes_from_figure(fig)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # old Pillow or no FreeType: bitmap font
        return ImageFont.load_default()


def _wrap(draw, text: str, font, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap to `width` pixels; long words are cut; the last line gets an ellipsis."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width:
            line = trial
            continue
        if line:
            lines.append(line)
        while draw.textlength(word, font=font) > width and len(word) > 1:
            cut = len(word)
            while cut > 1 and draw.textlength(word[:cut], font=font) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and draw.textlength(last + "…", font=font) > width:
            last = last[:-1]
        lines[-1] = last + "…"
    return lines


def _load_cell(path: Path, cell: int):
    """The image at `path` padded to a square cell, or None when it cannot be read."""
    from PIL import Image, ImageOps

    from ..imageio import load_image

    try:
        rgb = load_image(path)
    except SamefaceError:
        return None
    im = Image.fromarray(rgb)
    return ImageOps.pad(im, (cell, cell), method=Image.Resampling.LANCZOS, color=(255, 255, 255))


def _first_images(run: RunData, identity: str) -> dict[tuple[str, int], dict]:
    """(method, prompt_index) -> the image record with the lowest seed."""
    best: dict[tuple[str, int], dict] = {}
    for r in run.images:
        if r["identity"] != identity or not isinstance(r.get("prompt_index"), int):
            continue
        key = (r["method"], r["prompt_index"])
        seed = r.get("seed") if _finite(r.get("seed")) else math.inf
        cur = best.get(key)
        if cur is None or seed < (cur.get("seed") if _finite(cur.get("seed")) else math.inf):
            best[key] = r
    return best


def _draw_grid(run: RunData, identity: str, cell: int) -> bytes:
    from PIL import Image, ImageDraw

    font = _font(12)
    small = _font(11)
    pad, gap, line_h, caption_h = 8, 4, 15, 16
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max(90, min(170, 12 + max(int(probe.textlength(m, font=font)) for m in run.methods)))

    ref = run.references.get(identity, {})
    ref_paths = [p for p in ref.get("images") or [] if isinstance(p, str)]
    self_sim = ref.get("self_similarity")
    headers = [["reference", f"self-sim {self_sim:.2f}" if _finite(self_sim) else ""]]
    for idx, prompt in run.prompts:
        headers.append(_wrap(probe, f"p{idx}: {prompt}", small, cell - 4, 4))
    header_h = line_h * max(len(h) for h in headers) + 6
    title_h = 22

    cols, rows = 1 + len(run.prompts), len(run.methods)
    row_h = cell + caption_h
    width = pad * 2 + label_w + cols * (cell + gap)
    height = pad * 2 + title_h + header_h + rows * (row_h + gap)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    ink, grey, red = (20, 20, 20), (110, 110, 110), (175, 30, 30)
    draw.text(
        (pad, pad), f"{identity}: reference | first seed per prompt", fill=ink, font=_font(14)
    )

    x0, y0 = pad + label_w, pad + title_h
    for c, lines in enumerate(headers):
        for k, text in enumerate(lines):
            draw.text((x0 + c * (cell + gap) + 2, y0 + k * line_h), text, fill=ink, font=small)

    def placeholder(x: int, y: int, text: str) -> None:
        draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(236, 236, 236))
        w = draw.textlength(text, font=small)
        draw.text((x + (cell - w) / 2, y + cell / 2 - 6), text, fill=grey, font=small)

    first = _first_images(run, identity)
    top = y0 + header_h
    for r, method in enumerate(run.methods):
        y = top + r * (row_h + gap)
        label = _wrap(probe, method, font, label_w - 10, 3)
        if method in BASELINE_LABELS:
            label += _wrap(probe, f"({BASELINE_LABELS[method]})", small, label_w - 10, 2)
        for k, text in enumerate(label):
            draw.text((pad, y + cell / 2 - 8 * len(label) + k * line_h), text, fill=ink, font=font)
        # reference column: the crops stacked down the rows
        x = x0
        if r < len(ref_paths):
            im = _load_cell(run.run_dir / ref_paths[r], cell)
            if im is None:
                placeholder(x, y, "unreadable")
            else:
                canvas.paste(im, (x, y))
                draw.text(
                    (x + 2, y + cell + 2), f"ref {r + 1}/{len(ref_paths)}", fill=grey, font=small
                )
        elif r == 0:
            placeholder(x, y, "no reference")
        for c, (idx, _prompt) in enumerate(run.prompts, start=1):
            x = x0 + c * (cell + gap)
            rec = first.get((method, idx))
            if rec is None:
                placeholder(x, y, "no image")
                continue
            im = _load_cell(run.run_dir / str(rec.get("image", "")), cell)
            if im is None:
                placeholder(x, y, "missing file")
            else:
                canvas.paste(im, (x, y))
            fs, ct = rec.get("face_similarity"), rec.get("clip_t")
            t = f"T {ct:.2f}" if _finite(ct) else "T —"
            if rec.get("face_detected") is False:
                draw.text((x + 2, y + cell + 2), "no face", fill=red, font=small)
                draw.text((x + 52, y + cell + 2), t, fill=grey, font=small)
            else:
                idt = f"ID {fs:.2f}" if _finite(fs) else "ID —"
                draw.text((x + 2, y + cell + 2), f"{idt}   {t}", fill=grey, font=small)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


# ---- report content -----------------------------------------------------------------


def _protocol_blocks(run: RunData) -> list:
    meta = run.meta
    evaluator = meta.get("evaluator") if isinstance(meta.get("evaluator"), Mapping) else {}
    recognizer = evaluator.get("recognizer")
    rows: list[list] = []
    suite = meta.get("suite")
    suite_cell: list = [str(suite) if suite else _DASH]
    if meta.get("suite_file"):
        suite_cell += [" (", _Code(str(meta["suite_file"])), ")"]
    rows.append(["suite", suite_cell])
    rows.append(["base model", _Code(str(meta["base"])) if meta.get("base") else _DASH])
    rows.append(["face-similarity evaluator (recogniser)", _fmt_model(recognizer)])
    rows.append(["CLIP evaluator (CLIP-T, CLIP-I, face CLIP-I)", _fmt_model(evaluator.get("clip"))])
    protocol = meta.get("protocol") if isinstance(meta.get("protocol"), Mapping) else {}
    # (key, label, shown when the value is None). Suite lists (identities, prompts) are
    # shown from the records; per-method settings get a row each.
    known = (
        ("resolution", "resolution (px)", "the base model's default"),
        ("num_inference_steps", "sampling steps", _DASH),
        ("steps", "sampling steps", _DASH),
        ("guidance_scale", "guidance scale", "the pipeline's default"),
        ("guidance", "guidance scale", "the pipeline's default"),
        ("seeds", "seeds", _DASH),
        ("negative_prompt", "negative prompt", "none"),
        ("placeholder", "placeholder", _DASH),
    )
    hidden = {"name", "identities", "prompts", "description", "methods", "method_settings"}
    for key, label, if_none in known:
        if key in protocol:
            value = protocol[key]
            rows.append([label, if_none if value is None else _fmt_scalar(value)])
    for key, value in protocol.items():
        if key in hidden or any(key == k for k, _, _ in known):
            continue
        if isinstance(value, (str, int, float, bool)) or value is None:
            rows.append([key.replace("_", " "), _fmt_scalar(value)])
    settings: dict[str, dict] = {}
    for source in (protocol.get("methods"), protocol.get("method_settings")):
        if isinstance(source, Mapping):
            for m, conf in source.items():
                if isinstance(conf, Mapping) and conf:
                    settings.setdefault(str(m), {}).update(conf)
    for m, conf in settings.items():
        rows.append([f"settings: {m}", _fmt_scalar(conf)])
    rows.append(["identities", f"{len(run.identities)}: {', '.join(run.identities)}"])
    rows.append(["prompts", str(len(run.prompts))])
    rows.append(["images", str(len(run.images))])
    if meta.get("created"):
        rows.append(["created", str(meta["created"])])
    if meta.get("sameface_version"):
        rows.append(["sameface version", str(meta["sameface_version"])])
    blocks: list = [_Heading(2, "Protocol")]
    description = meta.get("description") or protocol.get("description")
    if isinstance(description, str) and description.strip():
        blocks.append(_Para([description.strip()]))
    blocks.append(_Table(["setting", "value"], rows, numeric_from=99))

    eval_name = _model_name(recognizer)
    cond = meta.get("conditioning_recognizers")
    cond = cond if isinstance(cond, Mapping) else {}
    crow: list[list] = []
    for m in run.methods:
        if m in BASELINE_LABELS:
            used = f"— ({BASELINE_LABELS[m]}: no identity input)"
        elif m not in cond:
            used = "not recorded"
        elif cond[m] is None:
            used = "— (conditioned on no face recogniser)"
        else:
            used = _fmt_model(cond[m])
        warn = ""
        cname = _model_name(cond.get(m)) if m not in BASELINE_LABELS else None
        if cname and eval_name and cname.lower() == eval_name.lower():
            warn = "⚠ same recogniser conditions and evaluates: face similarity likely inflated"
        crow.append([m, used, _fmt_model(recognizer), warn])
    blocks += [
        _Heading(3, "Face recognisers per method"),
        _Para(
            [
                "A method conditioned on (or trained against) the evaluator's own recogniser "
                "is graded by the judge it was coached by; compare such numbers with care."
            ]
        ),
        _Table(
            ["method", "conditioned on", "evaluated with", "note"],
            crow,
            row_classes=_row_classes(run.methods),
            numeric_from=99,
        ),
    ]
    return blocks


def _summary_blocks(run: RunData, summaries: Mapping[str, Mapping[str, Summary]]) -> list:
    has_context = any(summaries[m]["context_accuracy"].n for m in run.methods)
    columns = [c for c in _SUMMARY_COLUMNS if has_context or c[0] != "context_accuracy"]
    if any(summaries[m]["personalize_peak_mem_mb"].n for m in run.methods):
        columns.append(_MEMORY_COLUMN)
    header = ["method", *[label for _, label, _ in columns]]
    rows = []
    for m in run.methods:
        s = summaries[m]
        row = [_label(m)]
        for key, _, kind in columns:
            v = _fmt_interval(s[key], kind)
            row.append(v if v == _DASH else [v, _N(s[key].n)])
        rows.append(row)
    return [
        _Heading(2, "Summary"),
        _Para(
            [
                "Means with 95% intervals: ± is the half-width of the Student-t interval over "
                "images; detection rate shows its Wilson interval [low, high]; n counts the "
                "values behind each number. Images are pooled over identities, prompts and "
                "seeds and treated as independent, so the intervals are on the optimistic side."
            ]
        ),
        _Table(header, rows, row_classes=_row_classes(run.methods)),
        _Bullets(
            [
                [
                    "face sim (detected only) averages over images where a face was found; "
                    "face sim (misses = 0) counts a missed face as 0. Rank methods by the "
                    "latter: a method that breaks faces otherwise looks better than it is."
                ],
                [
                    "CLIP-T: CLIP similarity of the image to the prompt with the person "
                    "written as 'a person' (editability). CLIP-I: CLIP similarity to the "
                    "baseline's image for the same prompt and seed (how little the identity "
                    "disturbs the base model). Face CLIP-I: the generated face crop against "
                    "the reference face crops."
                ],
                [
                    "id_norm: face similarity rescaled so that 0 is the baseline's and 1 the "
                    "reference photos' self-similarity; text_norm: CLIP-T rescaled so that 0 "
                    "is the reference photos' and 1 the baseline's (FeedFace). Aggregate = "
                    "(1 + CLIP-T)(1 + face sim, misses = 0) (textual-inversion paper, eq. 4)."
                ],
                [
                    "The ",
                    _Code(BASELINE),
                    " row is the base model given the prompt without "
                    "the identity: the floor every other number is read against.",
                ],
                *_extra_bullets(run, has_context),
            ]
        ),
    ]


_GAIN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("face_similarity_with_misses", "Δ face sim (misses = 0)"),
    ("clip_t", "Δ CLIP-T"),
    ("context_accuracy", "Δ context acc."),
)


def _gain_blocks(run: RunData) -> list:
    """Each method minus the no-identity baseline, paired by identity, prompt and seed.

    `known-by-name` is left out: its face similarity is against another person's photos.
    """
    others = [m for m in run.methods if m not in (BASELINE, "known-by-name")]
    if BASELINE not in run.methods or not others:
        return []
    columns = [
        (k, label)
        for k, label in _GAIN_COLUMNS
        if any(_finite(r.get(k)) for r in run.images if r["method"] == BASELINE)
    ]
    header = ["method", *[label for _, label in columns], "identities with higher face sim"]
    rows = []
    for m in others:
        row: list = [_label(m)]
        for key, _ in columns:
            g = paired_gain(run.images, m, key, baseline=BASELINE)
            v = _fmt_interval(g, "score")
            row.append(v if v == _DASH else [v, _N(g.n)])
        per_identity = [
            paired_gain(run.images, m, "face_similarity_with_misses", identity=i)
            for i in run.identities
        ]
        scored = [g for g in per_identity if g.n]
        row.append(f"{sum(g.mean > 0 for g in scored)} of {len(scored)}" if scored else _DASH)
        rows.append(row)
    return [
        _Heading(2, "Gain over the no-identity baseline"),
        _Para(
            [
                "Each method's image minus the ",
                _Code(BASELINE),
                " image for the same identity, prompt and seed, averaged with a 95% Student-t "
                "interval over those pairs. An interval that excludes 0 is a measurable gain "
                "(or loss); pairs within one identity are correlated, so also read the last "
                "column: in how many identities the mean face similarity rose.",
            ]
        ),
        _Table(header, rows, row_classes=_row_classes(others)),
    ]


def _extra_bullets(run: RunData, has_context: bool) -> list:
    """Notes on the optional baselines and the context accuracy, when the run has them."""
    out: list = []
    if "known-by-name" in run.methods:
        out.append(
            [
                _Code("known-by-name"),
                ": the base model given the name of a person it was trained on (identity i "
                "paired with known person i) instead of the placeholder; its face similarity "
                "is against that person's reference photos: what the model does for someone "
                "it knows.",
            ]
        )
    if "copy-reference" in run.methods:
        out.append(
            [
                _Code("copy-reference"),
                ": a reference photo (number seed mod photos) as the image, scored like the "
                "others: the fidelity ceiling and the editability floor.",
            ]
        )
    if has_context:
        out.append(
            [
                "context acc.: the fraction of the attributes the prompt asks for (background, "
                "pattern, style, framing, accessories) that the context classifier reads off "
                "the image; prompts that ask for none are left out."
            ]
        )
    return out


def _per_prompt_blocks(run: RunData) -> list:
    blocks: list = [_Heading(2, "Per prompt")]
    metrics = [
        ("face_similarity_with_misses", "Face similarity (misses = 0)"),
        ("clip_t", "CLIP-T"),
    ]
    if any(_finite(r.get("context_accuracy")) for r in run.images):
        metrics.append(("context_accuracy", "Context accuracy"))
    for key, title in metrics:
        rows = []
        for idx, prompt in run.prompts:
            row: list = [str(idx), _Code(prompt)]
            for m in run.methods:
                s = summarise(run.images, m, prompt_index=idx)[key]
                v = _fmt_interval(s, "score")
                row.append(v if v == _DASH else [v, _N(s.n)])
            rows.append(row)
        blocks += [_Heading(3, title), _Table(["#", "prompt", *run.methods], rows, numeric_from=2)]
    return blocks


def _identity_blocks(run: RunData, grids: Mapping[str, str]) -> list:
    rows = []
    for ident in run.identities:
        ref = run.references.get(ident)
        n_ref = len(ref.get("images") or []) if ref else 0
        self_sim = ref.get("self_similarity") if ref else None
        row: list = [
            ident,
            str(n_ref) if ref else "no record",
            f"{self_sim:.3f}" if _finite(self_sim) else _DASH,
        ]
        for m in run.methods:
            s = summarise(run.images, m, identity=ident)["face_similarity_with_misses"]
            row.append(_fmt_interval(s, "score"))
        rows.append(row)
    blocks: list = [
        _Heading(2, "Per identity"),
        _Para(
            [
                "Face similarity (misses = 0) per identity. Reference self-similarity is the "
                "mean similarity between an identity's own reference photos: the ceiling, as "
                "the ",
                _Code(BASELINE),
                " column is the floor.",
            ]
        ),
        _Table(
            ["identity", "reference crops", "reference self-similarity", *run.methods],
            rows,
            numeric_from=1,
        ),
        _Heading(2, "Image grids"),
        _Para(
            [
                "Rows: methods; first column: the reference face crops; then the first seed's "
                "image for each prompt, captioned with its face similarity (ID) and CLIP-T (T)."
            ]
        ),
    ]
    for ident in run.identities:
        blocks += [_Heading(3, ident), _Image(grids[ident], f"grid {ident}", scale=False)]
    return blocks


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
    blocks += _protocol_blocks(run)
    blocks += _summary_blocks(run, summaries)
    blocks += _gain_blocks(run)
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

    for name, data in figures.items():
        write_bytes_atomic(child_path(out, name, what="figure name"), data)
    md_path, html_path = out / "report.md", out / "report.html"
    write_bytes_atomic(md_path, _render_md(blocks).encode("utf-8"))
    write_bytes_atomic(html_path, _render_html(blocks, title, figures).encode("utf-8"))
    return md_path, html_path
