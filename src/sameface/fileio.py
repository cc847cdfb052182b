"""Atomic file writes: a temporary file in the same folder, then `os.replace`.

A reader (or a run killed half-way) sees the old file or the whole new one, never half a file.
Every failure becomes an `OutputError` naming the path.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import OutputError


def umask() -> int:
    """The process's file-creation mask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Atomically create `path` with `writer(temporary_path)` (for libraries that write files)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=".sf-tmp-", dir=path.parent
        )  # short: long names stay legal
        os.close(fd)
        tmp = Path(name)
        writer(tmp)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; give the user's usual permissions
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write bytes."""
    return write_with(path, lambda p: p.write_bytes(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, data: Any, **kwargs: Any) -> Path:
    """Atomically write JSON (indent 2 and a final newline unless told otherwise)."""
    kwargs.setdefault("indent", 2)
    return write_text_atomic(path, json.dumps(data, **kwargs) + "\n")


def append_jsonl(path: str | os.PathLike, record: Any, *, sync: bool = True, **kwargs: Any) -> None:
    """Append one JSON line, flushed (and fsynced with `sync`): a killed run loses at most this line.

    A previous run killed mid-line left no newline at the end; one is added first so this
    record stays readable.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+b") as f:
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write((json.dumps(record, **kwargs) + "\n").encode("utf-8"))
            f.flush()
            if sync:
                os.fsync(f.fileno())
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The JSON-object lines of a file ([] when absent); damaged lines (a killed writer) are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def write_folder_atomic(folder: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Write a folder via `writer(tmp)` and rename it into place (replacing an older one):
    readers see the old folder or the new one, never a half-written one."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        writer(tmp)
        _readable(tmp)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _readable(folder: Path) -> None:
    """Give a `mkdtemp` folder (0700) and its files the user's usual permissions."""
    mask = umask()
    os.chmod(folder, 0o777 & ~mask)
    for p in folder.rglob("*"):
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


MAX_NAME_BYTES = 200
"""Longest name `safe_name` accepts (file systems stop at 255 bytes; suffixes are added)."""
_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in range(10)}


def safe_name(name: object, *, what: str = "name") -> str:
    """Check that `name` can be one path component inside a folder; return it.

    Refuses non-strings, empty names, `.` / `..`, `~`, separators (`/`, `\\`), NUL and other
    control characters, a leading dot (the tool's own hidden files), surrounding spaces,
    Windows-reserved device names and names over `MAX_NAME_BYTES` UTF-8 bytes.

    Args:
        name: the candidate (a suite, identity, variant or prompt name).
        what: what the name is, for the message.

    Raises:
        OutputError: the name could escape or clash with its folder.
    """
    import unicodedata

    if not isinstance(name, str):
        raise OutputError(f"{what} {name!r} must be a string")
    shown = repr(name) if len(name) <= 40 else repr(name[:37]) + "..."  # repr escapes controls
    why = None
    if not name.strip():
        why = "is empty"
    elif name in (".", "..") or name.startswith("~"):
        why = "is not a plain name"
    elif any(c in name for c in ("/", "\\")) or os.sep in name or (os.altsep or "/") in name:
        why = "contains a path separator"
    elif any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        why = "contains control or invisible characters"
    elif name[0] == "." or name != name.strip():  # hidden names are the tool's own (locks, temps)
        why = "starts with '.' or has surrounding spaces"
    elif name.split(".")[0].upper() in _RESERVED:
        why = "is a reserved device name"
    elif len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        why = f"is longer than {MAX_NAME_BYTES} bytes"
    elif any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        why = "is not valid text"
    if why:
        raise OutputError(f"{what} {shown} {why}; use letters, digits, '-', '_' or '.'")
    return name


def child_path(parent: str | os.PathLike, *names: str, what: str = "name") -> Path:
    """`parent / name / ...` after checking each name with `safe_name` and that the result,
    symlinks resolved, stays inside `parent` (a symlinked sub-folder could lead elsewhere).

    Args:
        parent: the folder the path must stay in.
        names: path components (each one plain name).
        what: what the names are, for the message.

    Raises:
        OutputError: a bad name, or a path that resolves outside `parent`.
    """
    parent = Path(parent)
    path = parent.joinpath(*(safe_name(n, what=what) for n in names))
    root = parent.resolve()
    real = path.resolve()
    if real != root and root not in real.parents:
        raise OutputError(f"{path}: leads outside {parent} (through a symbolic link)")
    return path
