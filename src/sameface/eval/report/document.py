"""A tiny document model (headings, paragraphs, tables, images) rendered as markdown and HTML."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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


# Nothing is wider than the window (a laptop's included): tables wrap their cells (the n
# of a number on its own line, long text anywhere) and images scale down.
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1400px;padding:0 1rem;color:#1a1a1a;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
h3{font-size:1.05rem}
table{border-collapse:collapse;font-size:.88rem;margin:.5rem 0;max-width:100%}
th,td{border:1px solid #d5d5d5;padding:.25rem .5rem;vertical-align:top;overflow-wrap:anywhere}
th{background:#f3f3f3;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.baseline td{background:#f7f7f2;font-style:italic}
code{background:#f2f2f2;padding:0 .2rem;border-radius:3px;font-size:.9em}
img{max-width:100%;height:auto;border:1px solid #e2e2e2}
.n{display:block;color:#777;font-size:.8em}
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
                f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            )
        elif isinstance(b, _Image):
            data = images.get(b.filename)
            if data is None:
                body.append(f"<p>({html.escape(b.alt)}: not drawn)</p>")
            else:
                uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
                body.append(f'<p><img src="{uri}" alt="{html.escape(b.alt)}"></p>')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
