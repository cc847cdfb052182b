"""File helpers of the UI: content hashes (finding copies to delete), zips, pruning."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path


def sha256(path: Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def prune(folder: Path, stop: Path | None = None) -> None:
    """Remove empty folders from `folder` upwards (not `stop` itself), and empty children."""
    folder = Path(folder)
    if folder.is_dir():
        for d in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            if not any(d.iterdir()):
                d.rmdir()
    while folder.is_dir() and folder != stop and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
        if stop is None:
            break


def zip_folder(folder: Path, out: Path, prefix: str, skip: tuple[str, ...] = ()) -> Path:
    """`folder`'s files (links and top-level `skip` folders left out) zipped under `prefix/`,
    written atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.rglob("*")):
            rel = f.relative_to(folder)
            if f.is_file() and not f.is_symlink() and rel.parts[0] not in skip:
                z.write(f, f"{prefix}/{rel}")
    os.replace(tmp, out)
    return out


def gradio_cache() -> str:
    """gradio's file cache (where it keeps uploads and the copies of files it serves)."""
    from gradio.utils import get_upload_folder

    return get_upload_folder()


def purge_copies(roots: list[Path], hashes: set[str], max_bytes: float = 256e6) -> list[Path]:
    """Remove every file under `roots` whose content hash is in `hashes` (and the folders that
    leaves empty). Returns the removed files."""
    removed = []
    for root in map(Path, roots):
        files = [f for f in root.rglob("*") if f.is_file()] if root.is_dir() else []
        for f in files:
            if not f.is_symlink() and f.stat().st_size < max_bytes and sha256(f) in hashes:
                f.unlink()
                removed.append(f)
                prune(f.parent, stop=root)
    return removed


def served_copy(path: Path) -> str:
    """A copy of a session's file in gradio's cache, which the server may serve whatever the
    data dir (the session folders are never served); named by content, so deleting a person
    finds it."""
    import shutil

    digest = sha256(path)
    target = Path(gradio_cache()) / digest / Path(path).name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        shutil.copyfile(path, target)
    return str(target)
