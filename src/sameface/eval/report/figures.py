"""The report's figures: the fidelity/editability scatter and one image grid per identity."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import SamefaceError
from ..stats import Summary
from .format import _finite, _label, _model_name
from .run import BASELINE, BASELINE_LABELS, RunData

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

    from ...imageio import load_image

    try:
        rgb = load_image(path)
    except SamefaceError:
        return None
    im = Image.fromarray(rgb)
    return ImageOps.pad(im, (cell, cell), method=Image.Resampling.LANCZOS, color=(255, 255, 255))


def _first_images(run: RunData, identity: str) -> dict[tuple[str, int], dict]:
    """(method, prompt_index) -> the image record with the lowest seed (and, for a row
    trained with several seeds, the lowest training seed)."""

    def order(r: dict) -> tuple[float, float]:
        return tuple(r.get(k) if _finite(r.get(k)) else math.inf for k in ("seed", "training_seed"))

    best: dict[tuple[str, int], dict] = {}
    for r in run.images:
        if r["identity"] != identity or not isinstance(r.get("prompt_index"), int):
            continue
        key = (r["method"], r["prompt_index"])
        cur = best.get(key)
        if cur is None or order(r) < order(cur):
            best[key] = r
    return best


_INK, _GREY, _RED = (20, 20, 20), (110, 110, 110), (175, 30, 30)


def _placeholder(draw, xy: tuple[int, int], cell: int, text: str, font) -> None:
    """A grey cell with `text` centred, where an image is absent or unreadable."""
    x, y = xy
    draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(236, 236, 236))
    w = draw.textlength(text, font=font)
    draw.text((x + (cell - w) / 2, y + cell / 2 - 6), text, fill=_GREY, font=font)


def _draw_reference_cell(
    canvas, draw, run: RunData, ref_paths: Sequence[str], r: int, xy, cell: int, font
) -> None:
    """Reference crop `r` (the crops run down the first column), captioned `ref r/n`."""
    x, y = xy
    im = _load_cell(run.run_dir / ref_paths[r], cell)
    if im is None:
        _placeholder(draw, xy, cell, "unreadable", font)
        return
    canvas.paste(im, (x, y))
    draw.text((x + 2, y + cell + 2), f"ref {r + 1}/{len(ref_paths)}", fill=_GREY, font=font)


def _draw_image_cell(canvas, draw, run: RunData, rec: dict, xy, cell: int, font) -> None:
    """One generated image captioned with its face similarity (or "no face") and CLIP-T."""
    x, y = xy
    im = _load_cell(run.run_dir / str(rec.get("image", "")), cell)
    if im is None:
        _placeholder(draw, xy, cell, "missing file", font)
    else:
        canvas.paste(im, (x, y))
    fs, ct = rec.get("face_similarity"), rec.get("clip_t")
    t = f"T {ct:.2f}" if _finite(ct) else "T —"
    if rec.get("face_detected") is False:
        draw.text((x + 2, y + cell + 2), "no face", fill=_RED, font=font)
        draw.text((x + 52, y + cell + 2), t, fill=_GREY, font=font)
    else:
        idt = f"ID {fs:.2f}" if _finite(fs) else "ID —"
        draw.text((x + 2, y + cell + 2), f"{idt}   {t}", fill=_GREY, font=font)


def _grid_headers(run: RunData, self_sim: Any, probe, font, cell: int) -> list[list[str]]:
    """Column headers, as lines: the reference column (with its self-similarity), then one
    wrapped `p<index>: <prompt>` per prompt."""
    headers = [["reference", f"self-sim {self_sim:.2f}" if _finite(self_sim) else ""]]
    for idx, prompt in run.prompts:
        headers.append(_wrap(probe, f"p{idx}: {prompt}", font, cell - 4, 4))
    return headers


def _draw_grid(run: RunData, identity: str, cell: int) -> bytes:
    from PIL import Image, ImageDraw

    font = _font(12)
    small = _font(11)
    pad, gap, line_h, caption_h = 8, 4, 15, 16
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max(90, min(170, 12 + max(int(probe.textlength(m, font=font)) for m in run.methods)))

    ref = run.references.get(identity, {})
    ref_paths = [p for p in ref.get("images") or [] if isinstance(p, str)]
    headers = _grid_headers(run, ref.get("self_similarity"), probe, small, cell)
    header_h = line_h * max(len(h) for h in headers) + 6
    title_h = 22

    cols, rows = 1 + len(run.prompts), len(run.methods)
    row_h = cell + caption_h
    width = pad * 2 + label_w + cols * (cell + gap)
    height = pad * 2 + title_h + header_h + rows * (row_h + gap)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text(
        (pad, pad), f"{identity}: reference | first seed per prompt", fill=_INK, font=_font(14)
    )

    x0, y0 = pad + label_w, pad + title_h
    for c, lines in enumerate(headers):
        for k, text in enumerate(lines):
            draw.text((x0 + c * (cell + gap) + 2, y0 + k * line_h), text, fill=_INK, font=small)

    first = _first_images(run, identity)
    top = y0 + header_h
    for r, method in enumerate(run.methods):
        y = top + r * (row_h + gap)
        label = _wrap(probe, method, font, label_w - 10, 3)
        if method in BASELINE_LABELS:
            label += _wrap(probe, f"({BASELINE_LABELS[method]})", small, label_w - 10, 2)
        for k, text in enumerate(label):
            draw.text((pad, y + cell / 2 - 8 * len(label) + k * line_h), text, fill=_INK, font=font)
        # reference column: the crops stacked down the rows
        if r < len(ref_paths):
            _draw_reference_cell(canvas, draw, run, ref_paths, r, (x0, y), cell, small)
        elif r == 0:
            _placeholder(draw, (x0, y), cell, "no reference", small)
        for c, (idx, _prompt) in enumerate(run.prompts, start=1):
            xy = (x0 + c * (cell + gap), y)
            rec = first.get((method, idx))
            if rec is None:
                _placeholder(draw, xy, cell, "no image", small)
            else:
                _draw_image_cell(canvas, draw, run, rec, xy, cell, small)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
