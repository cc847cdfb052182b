"""Uploaded photos: checked against the server's limits before anything is decoded, brought
into a session's folder, and looked at by the face stack (every face boxed, the chosen one's
warnings, photos that look like someone else)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError


@dataclass
class PhotoReport:
    """One uploaded photo as the face stack sees it.

    Attributes:
        name: the file's name.
        boxed: the photo with every face boxed and numbered (the chosen one green).
        faces: how many faces were found.
        chosen: the face used (index, largest first), or None.
        warnings: quality warnings of the chosen face.
        error: why the photo cannot be used, or None.
        embedding: the chosen face's embedding (for the look-alike check).
    """

    name: str
    boxed: np.ndarray
    faces: int
    chosen: int | None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    embedding: np.ndarray | None = None


def bring_in(
    paths: list[str | os.PathLike],
    dest: Path,
    limits: Any,
    *,
    move: bool = True,
    root: Path | None = None,
) -> list[Path]:
    """Check uploads against `limits` (count, size, pixels from the header) and move or copy
    them into `dest`, numbered, with their names kept; refused uploads are removed and every
    problem named in one `UsageError`.

    Args:
        root: where the server keeps uploads (gradio's cache). Given, a path that is not a
            plain file inside it is refused and left alone: a client names uploads by path,
            and must not name the server's other files.
    """
    from PIL import Image

    paths = [Path(p) for p in paths or []]
    if not paths:
        raise UsageError("upload at least one photo")
    if len(paths) > limits.max_photos:
        raise UsageError(f"at most {limits.max_photos} photos, got {len(paths)}")
    if root is not None:
        inside = Path(root).resolve()
        foreign = [
            p for p in paths
            if p.is_symlink() or inside not in p.resolve().parents or not p.is_file()
        ]  # fmt: skip
        if foreign:
            raise UsageError(f"{foreign[0].name}: not an upload of this server (upload it again)")
    problems = []
    for p in paths:
        if not p.is_file():
            problems.append(f"{p.name}: the upload is gone (remove it and upload it again)")
            continue
        size_mb = p.stat().st_size / 1e6
        if size_mb > limits.max_upload_mb:
            problems.append(f"{p.name}: {size_mb:.1f} MB (limit {limits.max_upload_mb:g} MB)")
            continue
        try:
            with Image.open(p) as im:  # the header only: nothing is decoded yet
                w, h = im.size
        except Exception:
            problems.append(f"{p.name}: not an image this tool can read")
            continue
        if w * h > limits.max_pixels:
            problems.append(
                f"{p.name}: {w}×{h} pixels (limit {limits.max_pixels / 1e6:g} megapixels)"
            )
    if problems:
        for p in paths:
            remove(p)
        raise UsageError("; ".join(problems))
    dest.mkdir(parents=True)
    moved = []
    for i, p in enumerate(paths):
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", p.stem)[:40] or "photo"
        target = dest / f"{i:02d}-{stem}{p.suffix.lower()[:8] or '.img'}"
        (shutil.move if move else shutil.copyfile)(str(p), target)
        moved.append(target)
    return moved


def inspect_photos(
    analyzer: Any, photos: list[Path], choices: list[int | None] | None = None
) -> tuple[list[PhotoReport], list[int]]:
    """Each photo's report, and the indices of photos that look like someone else."""
    from ..identity import find_outliers

    choices = choices or [None] * len(photos)
    reports = [_inspect_one(analyzer, p, c) for p, c in zip(photos, choices, strict=True)]
    usable = [i for i, r in enumerate(reports) if r.embedding is not None]
    outliers: list[int] = []
    if len(usable) > 1:
        embs = np.stack([reports[i].embedding for i in usable])
        found, _ = find_outliers(embs, analyzer.recognizer.same_person_threshold)
        outliers = [usable[i] for i in found]
    return reports, outliers


def _inspect_one(analyzer: Any, photo: Path, choice: int | None) -> PhotoReport:
    from ..errors import FaceNotFoundError, ImageLoadError

    name = upload_name(photo)

    def readable(message: str | None) -> str | None:  # no server paths in messages
        return None if message is None else message.replace(str(photo), name)

    try:
        res = analyzer.analyze(str(photo), strict=False, face_policy=choice)
    except (ImageLoadError, FaceNotFoundError, ValueError) as e:
        blank = np.full((64, 64, 3), 230, np.uint8)
        return PhotoReport(name, blank, 0, None, error=readable(str(e)))
    face = res.face
    warnings = list(face.quality.warnings) if face is not None and face.quality else []
    return PhotoReport(
        name,
        _boxed(res.image, res.faces, res.chosen),
        len(res.faces),
        res.chosen,
        warnings,
        readable(res.error),
        res.embedding,
    )


def upload_name(photo: Path) -> str:
    """The name a photo was uploaded with (`take_uploads` numbers them)."""
    return re.sub(r"^\d\d-", "", Path(photo).name)


def _boxed(image: np.ndarray, faces: list, chosen: int | None) -> np.ndarray:
    """The photo with each face's box and index drawn (the chosen face green, others red)."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(image)
    draw = ImageDraw.Draw(im)
    width = max(1, round(max(im.size) / 200))
    for i, f in enumerate(faces):
        colour = (40, 200, 60) if i == chosen else (220, 50, 50)
        x0, y0, x1, y1 = (float(v) for v in f.bbox)
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=width)
        draw.text((x0 + 2, y0 + 1), str(i), fill=colour)
    return np.asarray(im)


def remove(path: Path) -> None:
    """Remove a file if it is there (an upload the server may have swept already)."""
    with contextlib.suppress(OSError):
        Path(path).unlink(missing_ok=True)
