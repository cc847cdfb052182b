"""Building a bank from real photos, one folder per person."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import SamefaceError
from ...imageio import IMAGE_SUFFIXES
from .bank import (
    FORMAT_VERSION,
    CelebrityBank,
    _assemble_bank,
    _default_tokenizer,
    _now,
    _tokenize,
    _tokenizer_info,
)
from .face_stats import _embed_faces, _summarise_faces, _verdict
from .names import _normalise_name

# ---- building from photos -----------------------------------------------------------------


def _person_folders(root: Path) -> tuple[dict[str, tuple[str, list[Path]]], list[str]]:
    """People found in `root`'s sub-folders, by case-folded name: (name, image files); and
    the names of plain files found beside the folders (ignored)."""
    people: dict[str, tuple[str, list[Path]]] = {}
    ignored = []
    for d in sorted(root.iterdir()):
        if d.name.startswith("."):
            continue
        if not d.is_dir():
            ignored.append(d.name)
            continue
        name = _normalise_name(d.name.replace("_", " "))
        files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        # "Barack_Obama" and "barack obama" are one person: merge their photos.
        people.setdefault(name.casefold(), (name, []))[1].extend(files)
    return people, ignored


def build_bank_from_photos(
    photos_dir: str | os.PathLike,
    analyzer: Any,
    *,
    tokenizer: Any = None,
    min_faces: int = 1,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> CelebrityBank:
    """Build a bank from real photos: one sub-folder per person, named after them.

    `photos_dir/Barack_Obama/*.jpg` becomes "Barack Obama" (underscores become spaces).
    Photos that cannot be read or show no usable face are skipped and listed in
    `meta["photo_errors"]`; people left with fewer than `min_faces` faces are rejected.

    Args:
        photos_dir: folder of per-person folders of photos.
        analyzer: a `FaceAnalyzer` (its recogniser defines the embedding space).
        tokenizer: tokenizer for the names' token ids; default the CLIP tokenizer every SD
            family shares.
        min_faces: people with fewer usable faces are left out.
        out: also save the bank to this folder.
        overwrite: replace a bank already saved in `out`.
        progress: show a progress bar (on a terminal only).

    Raises:
        SamefaceError: `photos_dir` is not a folder or holds no person folders.
    """
    if min_faces < 1:
        raise ValueError(f"min_faces must be at least 1, got {min_faces}")
    root = Path(photos_dir)
    if not root.is_dir():
        raise SamefaceError(f"{root}: not a folder (expected one sub-folder of photos per person)")
    people, ignored = _person_folders(root)
    if not people:
        raise SamefaceError(
            f"{root}: no person folders (expected one sub-folder of photos per person)"
        )
    tokenizer = tokenizer if tokenizer is not None else _default_tokenizer()
    rec = analyzer.recognizer
    dim = int(rec.dim)
    names, embs, cons, counts, toks = [], [], [], [], []
    rejected: dict[str, str] = {}
    photo_errors: dict[str, list[str]] = {}
    entries = list(people.values())
    if progress:
        from tqdm.auto import tqdm

        entries = tqdm(entries, desc="celebrities", unit="person", disable=None)
    for name, files in entries:
        face_embs, errors = _embed_faces(analyzer, files, name)
        if errors:
            photo_errors[name] = errors
        mean, consistency, n = _summarise_faces(face_embs, dim)
        reason = _verdict(n, consistency, min_faces=min_faces, threshold=None)
        if reason is not None:
            rejected[name] = reason if files else "no image files"
            continue
        names.append(name)
        embs.append(mean)
        cons.append(consistency)
        counts.append(n)
        toks.append(_tokenize(tokenizer, name))
    meta = {
        "format_version": FORMAT_VERSION,
        "created": _now(),
        "source": f"photos:{root}",
        "recognizer": rec.describe() | {"same_person_threshold": rec.same_person_threshold},
        "tokenizer": _tokenizer_info(tokenizer),
        "min_faces": min_faces,
        "threshold": None,
        "rejected": rejected,
        "photo_errors": photo_errors,
        "ignored_files": ignored,
    }
    bank = _assemble_bank(names, embs, cons, counts, toks, meta, dim)
    if out is not None:
        bank.save(out, overwrite=overwrite)
    return bank
