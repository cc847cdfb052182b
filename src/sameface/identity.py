"""Identity: one person from 1..N photos, as crops, masks and embeddings.

An identity is saved as a folder holding `identity.safetensors` (every array) and
`identity.json` (metadata: sources with hashes, recogniser, settings, per-photo quality).
Nothing is pickled; loading gives back exactly what was saved.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ArtifactError
from .imageio import ImageInput, array_sha256, describe_source, file_sha256

FORMAT_VERSION = 1
TENSORS_FILE = "identity.safetensors"
META_FILE = "identity.json"
CROPS_DIR = "crops"
TENSOR_NAMES = ("aligned", "squares", "masks", "embeddings", "embedding", "bboxes", "landmarks")
TENSOR_DTYPES = {"aligned": "U8", "squares": "U8", "masks": "U8"} | {
    k: "F32" for k in ("embeddings", "embedding", "bboxes", "landmarks")
}


@dataclass
class Identity:
    """A person described by one or more photos.

    Attributes:
        aligned: (N, 112, 112, 3) uint8 ArcFace-aligned crops, one per photo.
        squares: (N, S, S, 3) uint8 FeedFace square crops (box expanded 1.1×, or the whole
            image's centre square; `meta["square_expand"]` says which).
        masks: (N, S, S) uint8 face masks matching `squares` (255 = face).
        embeddings: (N, D) float32 unit embeddings, one per photo.
        embedding: (D,) float32 unit mean embedding.
        bboxes: (N, 4) float32 face boxes in source-image pixels.
        landmarks: (N, 5, 2) float32 landmarks in source-image pixels.
        meta: JSON-ready metadata (sources, recogniser, settings, outliers, quality).
    """

    aligned: np.ndarray
    squares: np.ndarray
    masks: np.ndarray
    embeddings: np.ndarray
    embedding: np.ndarray
    bboxes: np.ndarray
    landmarks: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def num_photos(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def raw_embeddings(self) -> np.ndarray:
        """(N, D) the recogniser's embeddings before normalisation: `embeddings` scaled by the
        lengths recorded when the identity was built (unit for identities built before they
        were recorded, and for recognisers whose output is unit anyway)."""
        norms = self.meta.get("embedding_norms")
        if not isinstance(norms, list) or len(norms) != self.num_photos:
            return self.embeddings
        return (self.embeddings * np.asarray(norms, np.float32)[:, None]).astype(np.float32)

    @property
    def outliers(self) -> list[int]:
        """Indices of photos whose face disagrees with the others (probably someone else)."""
        out = self.meta.get("outliers")
        return [i for i in out if isinstance(i, int)] if isinstance(out, list) else []

    def face_squares(self, expand: float = 1.1) -> np.ndarray:
        """Square crops of each photo's face box expanded `expand`× (FeedFace's face view).

        The same as `squares` when they were cut that way; otherwise (e.g. whole-image squares)
        cut out of `squares` around the face box, resized to the squares' side. Identities
        saved before the square's box was recorded give `squares` unchanged.

        Returns:
            (N, S, S, 3) uint8.
        """
        from .faces.align import square_crop

        if self.meta.get("square_expand") == expand:
            return self.squares
        side = self.squares.shape[1]
        photos = self.meta.get("photos", [])
        boxes_known = len(photos) == len(self.squares) and all(
            isinstance(p.get("square_box"), list)
            and len(p["square_box"]) == 4
            and p["square_box"][2] > p["square_box"][0]
            for p in photos
        )
        if not boxes_known:
            import warnings

            warnings.warn(
                "this identity records no square boxes (saved by an older sameface): its "
                "squares are used as the face squares; rebuild it for exact face crops",
                stacklevel=2,
            )
            return self.squares
        out = []
        for square, bbox, photo in zip(self.squares, self.bboxes, photos, strict=True):
            sq_box = photo["square_box"]
            scale = side / (sq_box[2] - sq_box[0])
            box = (np.asarray(bbox, np.float64).reshape(2, 2) - sq_box[:2]).ravel() * scale
            out.append(square_crop(square, tuple(box), expand=expand, size=side)[0])
        return np.stack(out)

    @classmethod
    def from_images(
        cls,
        images: ImageInput | Sequence[ImageInput],
        *,
        recognizer="sface",
        face_policy="largest",
        square_size: int = 512,
        square_expand: float | None = 1.1,
        mask_method: str = "auto",
        min_face_size: float = 32.0,
        drop_outliers: bool = False,
        analyzer=None,
        progress: bool = False,
        face_choices: Sequence[int | str | None] | None = None,
    ) -> Identity:
        """Build an identity from photos of one person.

        Args:
            images: one or more paths, PIL images or RGB arrays.
            recognizer: recogniser name or instance for the embeddings.
            face_policy: which face to use in photos with several ('largest', 'central',
                'single' or an index).
            square_size: side of the stored FeedFace square crops and masks.
            square_expand: the square crop is the face box expanded by this factor (FeedFace:
                1.1); None makes it the whole image (its centre square), for photos that are
                already portraits framed as the model draws them (e.g. the miniature world's).
            mask_method: 'auto', 'mediapipe' or 'landmarks' (see `sameface.faces.masks`).
            min_face_size: faces smaller than this (pixels) are not used.
            drop_outliers: leave photos that disagree with the others out of the mean embedding.
            analyzer: a ready `FaceAnalyzer` (overrides recognizer/face_policy/min_face_size).
            progress: show a progress bar.
            face_choices: per photo, the face to use (an index into its detections, largest
                first, or a policy name) where it differs from `face_policy`; None entries
                keep the policy (e.g. the face a person picked in a group photo).

        Raises:
            ImageLoadError: a photo cannot be read.
            FaceNotFoundError: a photo has no usable face.
        """
        from .faces import FaceAnalyzer, FaceMasker, align_face, square_crop

        sources = list(images) if isinstance(images, (list, tuple)) else [images]
        if not sources:
            raise ValueError("an identity needs at least one photo")
        if square_size < 16:
            raise ValueError(f"square_size must be at least 16, got {square_size}")
        if square_expand is not None and not square_expand > 0:
            raise ValueError(f"square_expand must be > 0 or None, got {square_expand}")
        if analyzer is None:
            analyzer = FaceAnalyzer(
                recognizer, face_policy=face_policy, min_face_size=min_face_size
            )
        choices = list(face_choices) if face_choices is not None else [None] * len(sources)
        if len(choices) != len(sources):
            raise ValueError(f"face_choices has {len(choices)} entries for {len(sources)} photos")
        masker = FaceMasker(mask_method)
        rec = analyzer.recognizer
        aligned, squares, masks, embs, boxes, lms, photos = [], [], [], [], [], [], []
        norms: list[float] = []
        iterator = list(zip(sources, choices, strict=True))
        if progress and len(sources) > 1:
            from tqdm.auto import tqdm

            iterator = tqdm(
                iterator, desc="faces", unit="photo", disable=None
            )  # None: only on a terminal
        for src, choice in iterator:
            res = analyzer.analyze(src, strict=True, face_policy=choice)
            face = res.face
            # The whole image is the centre square cut "around" a box of that square, unexpanded.
            crop_box = face.bbox if square_expand is not None else _centre_square(res.image)
            expand = square_expand if square_expand is not None else 1.0
            square, box = square_crop(res.image, crop_box, expand=expand, size=square_size)
            full_mask, mask_used = masker.mask_with_method(res.image, face)
            mask, _ = square_crop(full_mask, crop_box, expand=expand, size=square_size, pad_value=0)
            mask = np.where(mask >= 128, 255, 0).astype(np.uint8)  # resizing softened the edge
            # Store the standard ArcFace crop whatever the recogniser aligns to (dlib uses its own).
            aligned.append(align_face(res.image, face.landmarks, 112))
            squares.append(square)
            masks.append(mask)
            embs.append(res.embedding)
            norms.append(1.0 if res.embedding_norm is None else float(res.embedding_norm))
            boxes.append(np.asarray(face.bbox, np.float32))
            lms.append(np.asarray(face.landmarks, np.float32))
            photos.append(
                {
                    "source": res.name
                    if isinstance(src, (str, os.PathLike))
                    else describe_source(src),
                    "sha256": file_sha256(src)
                    if isinstance(src, (str, os.PathLike))
                    else array_sha256(res.image),
                    "size": [int(res.image.shape[1]), int(res.image.shape[0])],
                    "faces_found": len(res.faces),
                    "face_index": res.chosen,
                    "square_box": [int(v) for v in box],
                    "mask_method": mask_used,
                    "quality": face.quality.to_dict() if face.quality else None,
                }
            )
        embeddings = np.stack(embs).astype(np.float32)
        outliers, agreement = find_outliers(embeddings, rec.same_person_threshold)
        keep = [i for i in range(len(embs)) if not (drop_outliers and i in outliers)] or list(
            range(len(embs))
        )
        mean = embeddings[keep].mean(0)
        mean = (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32)
        for i, p in enumerate(photos):
            p["agreement"] = None if agreement[i] is None else round(float(agreement[i]), 4)
        meta = {
            "format_version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "recognizer": rec.describe() | {"same_person_threshold": rec.same_person_threshold},
            "detector": {
                "name": getattr(analyzer.detector, "name", type(analyzer.detector).__name__),
                "version": getattr(analyzer.detector, "version", ""),
            },
            "face_policy": str(analyzer.face_policy),
            "square_size": square_size,
            "square_expand": square_expand,
            "mask_method": masker.method,
            "photos": photos,
            "outliers": outliers,
            "outliers_dropped": bool(drop_outliers and outliers),
            # The raw embeddings' lengths (1 for recognisers with unit outputs): what a model
            # trained on raw embeddings (the released PuLID) needs back (`raw_embeddings`).
            "embedding_norms": [round(n, 6) for n in norms],
        }
        masker.close()
        return cls(
            aligned=np.stack(aligned),
            squares=np.stack(squares),
            masks=np.stack(masks),
            embeddings=embeddings,
            embedding=mean,
            bboxes=np.stack(boxes),
            landmarks=np.stack(lms),
            meta=meta,
        )

    # ---- persistence -------------------------------------------------------------------

    def _tensors(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in TENSOR_NAMES}

    def save(
        self, folder: str | os.PathLike, *, overwrite: bool = False, save_crops: bool = True
    ) -> Path:
        """Write the identity to `folder` atomically.

        Files are written into a temporary sibling folder and moved into place only when
        complete, so an interrupted save leaves no half-written identity.

        Args:
            folder: destination; must not exist, be empty, or (with `overwrite`) hold an identity.
            overwrite: replace an identity already saved there.
            save_crops: also write the crops as PNGs under `crops/` for people to look at.

        Raises:
            ArtifactError: the destination is unusable or cannot be written.
        """
        from .imageio import save_image_atomic
        from .tensorfile import save_safetensors

        folder = check_destination(folder, overwrite=overwrite)
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(folder.parent)
            # The pid in the name lets a later save tell a killed run's leftover from live work.
            tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=folder.parent))
        except OSError as e:
            raise ArtifactError(f"{folder}: cannot write here ({e.strerror or e})") from None
        try:
            files = [TENSORS_FILE]
            save_safetensors(
                {k: np.ascontiguousarray(v) for k, v in self._tensors().items()},
                tmp / TENSORS_FILE,
            )
            if save_crops:
                for i in range(self.num_photos):
                    for kind, arr in (
                        ("aligned", self.aligned[i]),
                        ("square", self.squares[i]),
                        ("mask", self.masks[i]),
                    ):
                        rel = f"{CROPS_DIR}/{i:02d}_{kind}.png"
                        save_image_atomic(arr, tmp / rel)
                        files.append(rel)
            files.append(META_FILE)
            (tmp / META_FILE).write_text(
                json.dumps(self.meta | {"files": files}, indent=2, sort_keys=True) + "\n"
            )
            _apply_umask(tmp)
            if folder.exists():
                # Move the old folder aside, move the new one in, then drop the old one.
                old = tmp.with_name(tmp.name + "-old")
                os.replace(folder, old)
                os.replace(tmp, folder)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, folder)
        except OSError as e:
            raise ArtifactError(
                f"{folder}: cannot write the identity ({e.strerror or e})"
            ) from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Identity:
        """Load an identity saved with `save`.

        Raises:
            ArtifactError: the folder is missing, incomplete or not an identity.
        """
        from .tensorfile import read_safetensors

        folder = Path(folder)
        meta = _read_meta(folder)
        if not _is_file(folder / TENSORS_FILE):
            raise ArtifactError(f"{folder}: identity is incomplete ({TENSORS_FILE} missing)")
        version = meta.get("format_version", 0)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ArtifactError(
                f"{folder / META_FILE}: corrupt metadata (format_version {version!r})"
            )
        if version > FORMAT_VERSION:
            raise ArtifactError(
                f"{folder}: identity format {version} is newer than this sameface understands "
                f"({FORMAT_VERSION}); upgrade sameface"
            )
        t, _ = read_safetensors(folder / TENSORS_FILE, framework="np", dtypes=TENSOR_DTYPES)
        missing = set(TENSOR_NAMES) - set(t)
        if missing:
            raise ArtifactError(f"{folder / TENSORS_FILE}: missing tensors {sorted(missing)}")
        _check_tensors(folder / TENSORS_FILE, t, meta)
        meta.pop("files", None)  # bookkeeping of the folder, not of the identity
        return cls(meta=meta, **{k: t[k] for k in TENSOR_NAMES})

    @staticmethod
    def delete(folder: str | os.PathLike) -> None:
        """Remove every file an identity wrote in `folder`, and the folder if that leaves it empty.

        Files the identity did not write are left alone.
        """
        folder = Path(folder)
        if folder.is_symlink():
            raise ArtifactError(
                f"{folder}: is a symbolic link; delete the identity folder it points to "
                f"({os.path.realpath(folder)}) or remove the link"
            )
        if not _is_file(folder / META_FILE):
            raise ArtifactError(f"{folder}: not an identity folder (no {META_FILE})")
        try:
            files = _written_files(_read_meta(folder))
        except ArtifactError:
            files = None
        if files is None:  # unreadable bookkeeping: fall back to the layout `save` writes
            files = [TENSORS_FILE, META_FILE] + [
                str(p.relative_to(folder)) for p in (folder / CROPS_DIR).glob("[0-9][0-9]_*.png")
            ]
        root = folder.resolve()
        for rel in files:
            p = folder / rel
            # Never touch a path outside the identity folder; a link inside is removed, its
            # target left alone.
            where = p.parent.resolve()
            if (root == where or root in where.parents) and (p.is_symlink() or p.is_file()):
                p.unlink(missing_ok=True)
        (folder / META_FILE).unlink(missing_ok=True)
        # Remove the sub-folders we created, deepest first, only if now empty.
        for d in sorted(
            {(folder / rel).parent.resolve() for rel in files},
            key=lambda p: len(p.parts),
            reverse=True,
        ):
            if root in d.parents and d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()

    def summary(self) -> str:
        """A few human-readable lines about the identity."""
        rec = self.meta.get("recognizer")
        name = rec.get("name", "?") if isinstance(rec, dict) else "?"
        lines = [f"identity: {self.num_photos} photo(s), recogniser {name}"]
        for i, p in enumerate(self.meta.get("photos") or []):
            if not isinstance(p, dict):
                continue
            flag = "  <- disagrees with the others" if i in self.outliers else ""
            lines.append(f"  [{i}] {p.get('source', '?')}  agreement={p.get('agreement')}{flag}")
        return "\n".join(lines)


def find_outliers(embeddings: np.ndarray, threshold: float) -> tuple[list[int], list[float | None]]:
    """Photos whose embedding disagrees with the rest.

    Each photo's agreement is the cosine between its embedding and the normalised mean of
    the *other* photos; below `threshold` (the recogniser's same-person threshold) it is an
    outlier. With one photo there is nothing to compare, so no outliers.
    """
    n = embeddings.shape[0]
    if n < 2:
        return [], [None] * n
    total = embeddings.sum(0)
    agreement: list[float | None] = []
    for i in range(n):
        rest = total - embeddings[i]
        rest = rest / max(float(np.linalg.norm(rest)), 1e-12)
        agreement.append(float(embeddings[i] @ rest))
    return [i for i, a in enumerate(agreement) if a is not None and a < threshold], agreement


def _centre_square(image: np.ndarray) -> tuple[float, float, float, float]:
    """The largest centred square of an image, as a box (x0, y0, x1, y1)."""
    h, w = image.shape[:2]
    side = min(h, w)
    x0, y0 = (w - side) // 2, (h - side) // 2
    return (float(x0), float(y0), float(x0 + side), float(y0 + side))


TEMP_PREFIX = ".sf-tmp-"
"""Temporary sibling folders of a save are named `.sf-tmp-<pid>-<random>`."""


def remove_stale_temps(parent: str | os.PathLike) -> list[Path]:
    """Remove temporary folders that killed saves left in `parent`; returns what was removed.

    Only folders named by a save of this version (`.sf-tmp-<pid>-...`) whose process no
    longer runs are removed; live saves and anything else are left alone.
    """
    removed = []
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = re.match(re.escape(TEMP_PREFIX) + r"(\d+)-", p.name)
        if not m or p.is_symlink() or not p.is_dir() or _alive(int(m.group(1))):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # someone else's process; or a nonsense pid
        return True
    return True


def check_destination(folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check that an identity may be saved at `folder` (call it before slow work). Returns the absolute path.

    Raises:
        ArtifactError: the path is a file, under a file, the current folder, a non-empty
            folder without an identity, an identity without `overwrite`, or an identity
            folder that also holds other files (they would be lost).
    """
    folder = Path(folder).absolute()
    try:
        if folder == Path.cwd():
            raise ArtifactError(f"{folder}: cannot save into the current folder; name a new folder")
        for parent in folder.parents:
            if parent.exists() and not parent.is_dir():
                raise ArtifactError(f"{folder}: {parent} is a file, not a folder")
        if not folder.exists():
            return folder
        if not folder.is_dir():
            raise ArtifactError(f"{folder}: exists and is not a folder")
        existing = sorted(p.name for p in folder.iterdir())
    except OSError as e:
        raise ArtifactError(f"{folder}: unusable path ({e.strerror or e})") from None
    if not existing:
        return folder
    if META_FILE not in existing:
        raise ArtifactError(
            f"{folder}: folder is not empty and holds no identity; choose another path"
        )
    if not overwrite:
        raise ArtifactError(
            f"{folder}: an identity is already saved there (pass overwrite=True / --force)"
        )
    try:
        ours = {Path(f).parts[0] for f in _written_files(_read_meta(folder)) or []}
    except ArtifactError:
        ours = set()
    others = [n for n in existing if n not in ours | {META_FILE, TENSORS_FILE, CROPS_DIR}]
    if others:
        raise ArtifactError(
            f"{folder}: besides the identity it holds {', '.join(others[:3])}"
            f"{' ...' if len(others) > 3 else ''}; replacing it would lose them: move them or choose another path"
        )
    return folder


def _check_tensors(path: Path, t: dict[str, np.ndarray], meta: dict) -> None:
    """Refuse tensors whose shapes disagree with each other or with the metadata."""
    n = t["embeddings"].shape[0] if t["embeddings"].ndim == 2 else -1
    photos = meta.get("photos")
    side = meta.get("square_size", t["squares"].shape[1] if t["squares"].ndim == 4 else -1)
    want = {
        "aligned": (n, 112, 112, 3),
        "squares": (n, side, side, 3),
        "masks": (n, side, side),
        "embeddings": (n, t["embedding"].shape[-1] if t["embedding"].ndim == 1 else -1),
        "embedding": (t["embedding"].shape[-1] if t["embedding"].ndim == 1 else -1,),
        "bboxes": (n, 4),
        "landmarks": (n, 5, 2),
    }
    if n < 1 or t["embedding"].ndim != 1 or t["embedding"].shape[0] < 1:
        raise ArtifactError(f"{path}: embeddings must be (photos, width) and embedding (width,)")
    for name, shape in want.items():
        if tuple(t[name].shape) != shape:
            raise ArtifactError(
                f"{path}: {name} has shape {tuple(t[name].shape)}, the metadata says {shape}"
            )
    if not isinstance(photos, list) or len(photos) != n:
        count = len(photos) if isinstance(photos, list) else "no"
        raise ArtifactError(f"{path}: holds {n} photos but the metadata lists {count}")
    norms = np.linalg.norm(t["embeddings"], axis=1)
    if not np.all(np.abs(norms - 1) < 1e-2):
        raise ArtifactError(f"{path}: embeddings are not unit vectors (tampered or corrupt)")
    raw = meta.get("embedding_norms")
    if raw is not None and (
        not isinstance(raw, list)
        or len(raw) != n
        or not all(isinstance(x, (int, float)) and 0 < x < 1e6 for x in raw)
    ):
        raise ArtifactError(f"{path}: embedding_norms must be {n} positive numbers, one a photo")


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a name too long for the file system
        return False


def _read_meta(folder: Path) -> dict:
    """The identity's metadata dict, or ArtifactError."""
    path = folder / META_FILE
    if not _is_file(path):
        raise ArtifactError(f"{folder}: not an identity folder (no {META_FILE})")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: corrupt metadata ({e})") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path}: corrupt metadata (not a JSON object)")
    return meta


def _written_files(meta: dict) -> list[str] | None:
    """The relative paths an identity recorded writing, or None when that record is unusable."""
    files = meta.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    safe = [f for f in files if f and not Path(f).is_absolute() and ".." not in Path(f).parts]
    return safe if len(safe) == len(files) else None


def _apply_umask(folder: Path) -> None:
    """Give a `mkdtemp` folder (0700) and the files in it the permissions the user's umask asks for."""
    from .fileio import umask

    mask = umask()
    for p in [folder, *folder.rglob("*")]:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


__all__ = ["Identity", "check_destination", "find_outliers"]
