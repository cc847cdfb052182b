"""Dataset preparation for the encoder methods (FeedFace, PuLID, DreamIdentity).

FeedFace's recipe (seed 002, §data): drop images with several faces, caption, detect the
face, expand the box 1.1×, square-crop, make a face mask. Each kept image becomes a sample:

    out/index.jsonl                  one JSON line per sample (file names, caption, source,
                                     landmarks in the crop, detector score)
    out/crops/NNNNNNN.png            the square training image at `resolution`
    out/aligned/NNNNNNN.png          the 112×112 ArcFace-aligned face (ID encoders, ID loss)
    out/masks/NNNNNNN.png            the face mask in the crop's frame (255 = face)
    out/embeddings/NNNNNNN.safetensors  the face embedding of the preparing recogniser
    out/prepare.json                 settings and counts (kept, and why others were dropped)

Captions come from a sidecar `<image stem>.txt`, else a `captions.jsonl` in the source
folder ({"file": ..., "caption": ...}), else `default_caption`. Preparation is resumable:
a sample is written completely (its index line last) before the next starts, and a rerun
skips sources already in the index.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError, SamefaceError
from ..fileio import append_jsonl, read_jsonl, write_json_atomic, write_with
from ..imageio import IMAGE_SUFFIXES
from ..locks import FolderLock

INDEX = "index.jsonl"


@dataclass
class PrepareSettings:
    """How samples are cut.

    Attributes:
        resolution: side of the square training crop in pixels.
        expand: box expansion before squaring (FeedFace: 1.1; portrait datasets with more
            context use 1.5-2.5).
        min_face_size: smaller faces are dropped (pixels, shorter box side).
        min_score: faces the detector is less sure of are dropped.
        default_caption: caption when no sidecar or captions.jsonl gives one.
    """

    resolution: int = 512
    expand: float = 1.1
    min_face_size: float = 64.0
    min_score: float = 0.8
    default_caption: str = "a photo of a person"

    def __post_init__(self) -> None:
        if self.resolution < 64 or self.resolution % 8:
            raise ValueError(
                f"resolution must be a multiple of 8 and at least 64, got {self.resolution}"
            )
        if not self.expand >= 1.0:
            raise ValueError(f"expand must be >= 1, got {self.expand}")


def list_images(src: Path, *, skip: Path | None = None) -> list[Path]:
    """Image files under `src`, recursively, in a stable order.

    Symlinked folders are followed once each (a link loop ends there), and the folder `skip`
    (a dataset written inside its own source) is left out.
    """
    seen: set[tuple[int, int]] = set()
    skip_real = os.path.realpath(skip) if skip is not None else None
    found = []
    for root, dirs, files in os.walk(src, followlinks=True):
        try:
            st = os.stat(root)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen or os.path.realpath(root) == skip_real:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        for name in files:
            p = Path(root) / name
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
                found.append(p)
    return sorted(found)


def load_captions(src: Path) -> dict[str, str]:
    """Captions from `captions.jsonl` in the source folder (relative file -> caption)."""
    return {
        r["file"]: r["caption"]
        for r in read_jsonl(src / "captions.jsonl")
        if isinstance(r.get("file"), str) and isinstance(r.get("caption"), str)
    }


def caption_for(image: Path, src: Path, captions: dict[str, str], default: str) -> str:
    side = image.with_suffix(".txt")
    if side.is_file():
        text = side.read_text(encoding="utf-8", errors="replace").strip()
        if text:
            return text
    return captions.get(str(image.relative_to(src)), captions.get(image.name, default))


def read_index(out: Path) -> list[dict]:
    """The prepared samples (a line cut short by a killed run is ignored)."""
    return [r for r in read_jsonl(Path(out) / INDEX) if "id" in r]


def prepare_face_dataset(
    src: str | os.PathLike,
    out: str | os.PathLike,
    analyzer: Any,
    settings: PrepareSettings | None = None,
    *,
    progress: bool = True,
) -> dict:
    """Prepare every image under `src` into training samples in `out`.

    Args:
        src: folder of images (searched recursively), with optional captions.
        out: dataset folder (created; a rerun continues where it stopped, with the same
            settings only; a folder inside `src` is left out of the sources).
        analyzer: `FaceAnalyzer` (its recogniser makes the stored embeddings).
        settings: cutting settings.
        progress: show a progress bar.

    Returns:
        Counts: kept, and dropped per reason.

    Raises:
        SamefaceError: `src` is no folder or has no images, no image gave a sample, `out`
            holds samples cut with other settings; `OutputError` when `out` is unusable or
            another run is preparing into it.
    """
    cfg = settings or PrepareSettings()
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise SamefaceError(f"{src}: not a folder of images")
    if os.path.realpath(src) == os.path.realpath(out):
        raise OutputError(f"{out}: the dataset folder cannot be its source folder; name another")
    _check_output(out)
    images = list_images(src, skip=out)
    if not images:
        raise SamefaceError(f"{src}: no image files found ({', '.join(IMAGE_SUFFIXES)})")
    with FolderLock(out, "sameface data prepare"):
        return _prepare(src, out, images, analyzer, cfg, progress)


def _check_output(out: Path) -> None:
    """Refuse an output path that is a file, under a file, or not writable (before any work)."""
    for p in (out, *out.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                raise OutputError(f"{out}: {p} is not a folder")
            if p == out and not os.access(p, os.W_OK | os.X_OK):
                raise OutputError(f"{out}: folder is not writable")
            break


def _prepare(
    src: Path, out: Path, images: list[Path], analyzer: Any, cfg: PrepareSettings, progress: bool
) -> dict:
    from tqdm.auto import tqdm

    from ..faces import align_face, landmark_mask, square_crop

    recognizer = json.loads(json.dumps(analyzer.recognizer.describe()))
    _check_same_settings(out, cfg, recognizer)
    started = {"settings": cfg.__dict__, "recognizer": recognizer}
    write_json_atomic(out / "prepare.json", started | {"samples": len(read_index(out))})
    done = {rec["source"] for rec in read_index(out)}
    dropped_log = out / "dropped.jsonl"
    done |= {rec["source"] for rec in read_jsonl(dropped_log) if "source" in rec}
    captions = load_captions(src)
    counts: Counter = Counter()
    next_id = len(read_index(out))
    for path in tqdm(images, desc="prepare", unit="image", disable=None if progress else True):
        rel = str(path.relative_to(src))
        if rel in done:
            continue
        reason, res = _check(analyzer, path, cfg)
        if reason:
            counts[reason] += 1
            append_jsonl(dropped_log, {"source": rel, "reason": reason})
            continue
        face = res.faces[0]
        crop, box = square_crop(res.image, face.bbox, expand=cfg.expand, size=cfg.resolution)
        scale = cfg.resolution / (box[2] - box[0])
        lm_crop = (np.asarray(face.landmarks) - np.array(box[:2])) * scale
        full_mask = landmark_mask(res.image.shape[:2], face)
        mask, _ = square_crop(
            full_mask, face.bbox, expand=cfg.expand, size=cfg.resolution, pad_value=0
        )
        write_sample(
            out,
            next_id,
            crop=crop,
            aligned=align_face(res.image, face.landmarks, 112),
            mask=mask,
            embedding=res.embedding,
            source=rel,
            caption=caption_for(path, src, captions, cfg.default_caption),
            landmarks=lm_crop,
            score=face.score,
            box=(np.asarray(face.bbox, np.float64).reshape(2, 2) - box[:2]).ravel() * scale,
        )
        next_id += 1
        counts["kept"] += 1
    summary = started | {"samples": len(read_index(out)), "this_run": dict(counts)}
    write_json_atomic(out / "prepare.json", summary)
    if not summary["samples"]:
        raise SamefaceError(
            f"{src}: none of {len(images)} image(s) has exactly one usable face; no samples"
        )
    return summary


def _check_same_settings(out: Path, cfg: PrepareSettings, recognizer: Any) -> None:
    """A rerun continues only with the settings the folder's samples were cut with."""
    path = out / "prepare.json"
    if not path.is_file():
        return
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SamefaceError(f"{path}: unreadable; cannot tell how the samples were made") from None
    now = json.loads(json.dumps(cfg.__dict__))
    old = before.get("settings") if isinstance(before, dict) else None
    if not isinstance(old, dict):
        raise SamefaceError(f"{path}: no settings recorded; cannot tell how the samples were made")
    changed = sorted(k for k in set(old) | set(now) if old.get(k) != now.get(k))
    if before.get("recognizer") != recognizer:
        changed.append("recognizer")
    if changed:
        raise SamefaceError(
            f"{out}: was prepared with other settings ({', '.join(changed)}); "
            "use those settings or a new --out folder"
        )


def write_sample(
    out: Path,
    index: int,
    *,
    crop: np.ndarray,
    aligned: np.ndarray,
    mask: np.ndarray,
    embedding: np.ndarray,
    source: str,
    caption: str,
    landmarks: np.ndarray,
    score: float,
    box: Any = None,
) -> str:
    """Write one sample's files, then its index line (last, so a killed run leaves no half sample).

    Args:
        out: the dataset folder.
        index: the sample's number (its id is the zero-padded number).
        crop: square RGB uint8 training image.
        aligned: 112×112 ArcFace-aligned RGB uint8 face.
        mask: face mask in the crop's frame (uint8, >= 128 = face).
        embedding: the preparing recogniser's face embedding.
        source: where the sample came from (reruns skip sources already written).
        caption: the training caption.
        landmarks: (5, 2) face landmarks in the crop's pixels.
        score: detector confidence.
        box: the face box (x0, y0, x1, y1) in the crop's pixels (FeedFace cuts its face view
            around it); datasets written before it existed have none.

    Returns:
        The sample id.
    """
    from ..imageio import save_image_atomic

    sid = f"{index:07d}"
    save_image_atomic(crop, out / "crops" / f"{sid}.png")
    save_image_atomic(aligned, out / "aligned" / f"{sid}.png")
    save_image_atomic(np.where(mask >= 128, 255, 0).astype(np.uint8), out / "masks" / f"{sid}.png")
    _save_embedding(out / "embeddings" / f"{sid}.safetensors", embedding)
    append_jsonl(
        out / INDEX,
        {
            "id": sid,
            "source": source,
            "caption": caption,
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in landmarks],
            "score": round(float(score), 4),
        }
        | ({} if box is None else {"box": [round(float(v), 2) for v in box]}),
    )
    return sid


def _check(analyzer: Any, path: Path, cfg: PrepareSettings) -> tuple[str | None, Any]:
    """Why an image is dropped (None if kept), and its analysis."""
    try:
        res = analyzer.analyze(path)
    except SamefaceError:
        return "unreadable", None
    if not res.faces:
        return "no face", res
    if len(res.faces) > 1:
        return "several faces", res  # FeedFace drops multi-face images
    face = res.faces[0]
    if min(face.width, face.height) < cfg.min_face_size or res.embedding is None:
        return "face too small", res
    if face.score < cfg.min_score:
        return "uncertain face", res
    return None, res


def _save_embedding(path: Path, emb: np.ndarray) -> None:
    from safetensors.numpy import save_file

    tensors = {"embedding": np.ascontiguousarray(emb, np.float32)}
    write_with(path, lambda p: save_file(tensors, str(p)))


def check_data_recognizer(data_dir: str | os.PathLike, recognizer: str) -> None:
    """Refuse a dataset whose embeddings (`prepare.json`) come from another recogniser than
    the one a trainer conditions on (a dataset without the record passes: the encoder's
    shape check still catches other widths).

    Raises:
        SamefaceError: another recogniser's embeddings.
    """
    try:
        name = json.loads((Path(data_dir) / "prepare.json").read_text())["recognizer"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if name != recognizer:
        raise SamefaceError(
            f"{data_dir} holds {name} embeddings but recognizer is {recognizer}; prepare the "
            f"data with the {recognizer} recogniser or set recognizer: {name}"
        )


class FaceDataset:
    """Prepared samples as arrays: crop (R,R,3) uint8, aligned (112,112,3), mask (R,R), embedding, caption.

    A plain sequence (`len`, indexing), so it works as a `torch.utils.data.Dataset`.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.samples = read_index(self.folder)
        if not self.samples:
            raise SamefaceError(
                f"{self.folder}: no prepared samples (run `sameface data prepare` first)"
            )

    def __len__(self) -> int:
        return len(self.samples)

    def empty_masks(self) -> list[str]:
        """Ids of the samples whose face mask has no face pixel (a mask loss would give their
        face nothing to learn from)."""
        from ..imageio import load_image

        return [
            rec["id"]
            for rec in self.samples
            if not (load_image(self.folder / "masks" / f"{rec['id']}.png")[:, :, 0] >= 128).any()
        ]

    def __getitem__(self, i: int) -> dict:
        from safetensors.numpy import load_file

        from ..imageio import load_image

        rec = self.samples[i]
        sid = rec["id"]
        mask = load_image(self.folder / "masks" / f"{sid}.png")[:, :, 0]
        return {
            "crop": load_image(self.folder / "crops" / f"{sid}.png"),
            "aligned": load_image(self.folder / "aligned" / f"{sid}.png"),
            "mask": mask,
            "embedding": load_file(str(self.folder / "embeddings" / f"{sid}.safetensors"))[
                "embedding"
            ],
            "caption": rec["caption"],
            "landmarks": np.asarray(rec["landmarks"], np.float32),
            "box": None if rec.get("box") is None else np.asarray(rec["box"], np.float32),
        }
