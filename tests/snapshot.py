"""Folder snapshots for tests that promise "nothing changed outside the output folder"."""

from __future__ import annotations

import os
from pathlib import Path


def snapshot(root: str | os.PathLike) -> dict[str, tuple]:
    """{relative path: (kind, size, mtime_ns, link target)} of everything under `root`.

    Symbolic links are recorded, not followed, so a link loop or a link out of `root` is fine.
    """
    root = Path(root)
    out: dict[str, tuple] = {}
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            link = os.readlink(p) if p.is_symlink() else None
            kind = "link" if link is not None else ("dir" if p.is_dir() else "file")
            size = 0 if kind == "dir" else st.st_size  # a folder's size changes with its entries
            out[str(p.relative_to(root))] = (kind, size, st.st_mtime_ns, link)
    return out


def changes_outside(before: dict, after: dict, *inside: str) -> list[str]:
    """Paths added, removed or changed between two snapshots, except under the `inside` paths
    (relative to the snapshot's root) and those folders' own entries."""

    def allowed(rel: str) -> bool:
        return any(rel == i or rel.startswith(i.rstrip("/") + "/") for i in inside)

    changed = []
    for rel in sorted(set(before) | set(after)):
        if allowed(rel):
            continue
        b, a = before.get(rel), after.get(rel)
        if (
            b is None
            or a is None
            or b[:2] != a[:2]
            or b[3] != a[3]
            or (b[0] != "dir" and b[2] != a[2])
        ):
            changed.append(rel)
    return changed
