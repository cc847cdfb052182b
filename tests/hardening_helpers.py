"""Helpers for the hardening tests: crafted safetensors files and folder snapshots."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from sameface.cli import main


def snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of everything under `root` except under `skip`."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p == skip or skip in p.parents:
            continue
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_size if p.is_file() else 0, st.st_mtime_ns)
    return out


def run_refused(
    capsys, root: Path, out: Path, argv: list, code: int, *needles: str, one_line: bool = True
) -> str:
    """Run the CLI; check exit `code`, one `error:` line holding `needles`, no traceback, and
    nothing changed under `root` outside `out`. Returns the message.

    Progress bars the model libraries print on stderr are not messages and are skipped;
    `one_line=False` allows a message that goes on to list what to do (the needles may then
    be anywhere in it)."""
    capsys.readouterr()
    before = snapshot(root, out)
    got = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    lines = [ln for ln in err.strip().splitlines() if "it/s]" not in ln and "Loading" not in ln]
    assert got == code, err
    assert lines and lines[0].startswith("error: "), err
    assert len(lines) == 1 or not one_line, err
    lines = [" ".join(lines)]
    assert "Traceback" not in err and "internal error" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert snapshot(root, out) == before
    return lines[0]


def split(path: Path) -> tuple[int, dict, bytes]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return n, json.loads(data[8 : 8 + n]), data[8 + n :]


def join(header: dict | bytes, body: bytes, length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + body


def _first(header: dict) -> str:
    return sorted(k for k in header if k != "__metadata__")[0]


def _edit(fn):
    def craft(path: Path) -> None:
        _, header, body = split(path)
        result = fn(header, body)
        header, body = result if isinstance(result, tuple) else (header, body)
        path.write_bytes(join(header, body))

    return craft


def _set(key: str, value):
    def fn(header, body):
        header[_first(header)][key] = value

    return _edit(fn)


def _overlap(header, body):
    names = sorted((v["data_offsets"], k) for k, v in header.items() if k != "__metadata__")
    if len(names) > 1:  # the second tensor starts inside the first
        header[names[1][1]]["data_offsets"][0] -= 4
    else:
        header[names[0][1]]["data_offsets"] = [4, header[names[0][1]]["data_offsets"][1] + 4]


def _dtype_swap(header, body):
    h = header[_first(header)]
    h["dtype"] = "F64" if h["dtype"] != "F64" else "F32"


# name -> function(path) that damages a safetensors file in place.
CRAFTED = {
    "empty": lambda p: p.write_bytes(b""),
    "short": lambda p: p.write_bytes(b"\x01\x02\x03"),
    "header_len_huge": lambda p: p.write_bytes(struct.pack("<Q", 2**63) + p.read_bytes()[8:]),
    "header_len_past_end": lambda p: p.write_bytes(
        struct.pack("<Q", p.stat().st_size) + p.read_bytes()[8:]
    ),
    "header_len_zero": lambda p: p.write_bytes(struct.pack("<Q", 0) + p.read_bytes()[8:]),
    "header_not_json": lambda p: p.write_bytes(join(b"{not json!!", b"\0" * 64)),
    "header_not_utf8": lambda p: p.write_bytes(join(b"\xff\xfe\xfa\xfb", b"")),
    "header_a_list": lambda p: p.write_bytes(join(b"[1, 2, 3]", b"")),
    "metadata_not_text": _edit(lambda h, b: h.__setitem__("__metadata__", {"x": 1})),
    "entry_not_object": _edit(lambda h, b: h.__setitem__(_first(h), 5)),
    "unknown_dtype": _set("dtype", "F128"),
    "shape_negative": _set("shape", [-1, 4]),
    "shape_text": _set("shape", "big"),
    "shape_mismatch": _set("shape", [1]),
    "offsets_reversed": _edit(
        lambda h, b: h[_first(h)].__setitem__("data_offsets", h[_first(h)]["data_offsets"][::-1])
    ),
    "offsets_out_of_range": _edit(
        lambda h, b: h[_first(h)].__setitem__("data_offsets", [0, 10**12])
    ),
    "offsets_overlap": _edit(_overlap),
    "dtype_mismatch": _edit(_dtype_swap),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:-16]),
    "trailing": lambda p: p.write_bytes(p.read_bytes() + b"\0" * 8),
}
