"""Celebrity bank: names a base model knows, with their face embeddings and token ids.

Modified textual inversion (seeds/001, Livshits 2023) initialises the identity's token
embeddings from celebrity names: "id" takes the name tokens of the celebrity whose face is
most similar to the identity's, "rand2" two random vectors from the vectorised celebrity
names. The paper built its list by generating each celebrity with the model and keeping the
ones face recognition confirms. `build_bank_from_model` does that (resumable, shardable
across processes); `build_bank_from_photos` embeds real photos instead (one folder per
person) and can serve as the reference the generated faces are checked against.
DreamIdentity's self-augmented data starts from the same names.

A bank is a folder holding `bank.safetensors` (embeddings, consistency, face counts) and
`bank.json` (names, token ids, metadata). Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, ImageLoadError, SamefaceError
from ..fileio import write_with
from ..training.distributed import DistributedContext, distributed_context

FORMAT_VERSION = 1
TENSORS_FILE = "bank.safetensors"
META_FILE = "bank.json"
PARTS_DIR = "parts"
IMAGES_DIR = "images"
NAMES_FILE = "celebrities.txt"
TENSOR_NAMES = ("embeddings", "consistency", "num_faces")
DEFAULT_PROMPT = "a photo of {name}, portrait, face, high quality"
DEFAULT_NEGATIVE_PROMPT = "cartoon, drawing, blurry, multiple people"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


# ---- names ------------------------------------------------------------------------------


def _normalise_name(name: str) -> str:
    return " ".join(name.split())


def parse_names(lines: Iterable[str]) -> list[str]:
    """Names from text lines: stripped, blank lines and `#` comments skipped, duplicates
    (ignoring case and spacing) dropped, first spelling kept."""
    out, seen = [], set()
    for line in lines:
        # A comment may follow a name ("Pele  # footballer"); names never contain " #".
        name = _normalise_name(line.split(" #", 1)[0] if not line.lstrip().startswith("#") else "")
        if not name or name.casefold() in seen:
            continue
        seen.add(name.casefold())
        out.append(name)
    return out


def load_celebrity_names(path: str | os.PathLike | None = None) -> list[str]:
    """Load a list of celebrity names, one per line.

    Args:
        path: a UTF-8 text file; default the list shipped with sameface (about 300 actors,
            musicians, athletes, politicians, scientists and historical figures).

    Raises:
        SamefaceError: the file is missing or not UTF-8 text.
    """
    if path is None:
        from importlib.resources import files

        text = files("sameface.data").joinpath(NAMES_FILE).read_text(encoding="utf-8")
    else:
        p = Path(path)
        if not p.is_file():
            raise SamefaceError(f"{p}: names file not found")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise SamefaceError(f"{p}: not a UTF-8 text file of names") from None
    return parse_names(text.splitlines())


def name_seed(name: str, seed: int = 0) -> int:
    """Generation seed for one name: `seed` plus a stable hash of the name.

    Python's `hash()` is salted per process, so a hash of the UTF-8 bytes is used: every
    process, shard and rerun draws the same latents for the same name.
    """
    h = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")
    return (int(seed) + h) % (2**63)


def _part_stem(name: str) -> str:
    # Readable and filesystem-safe; the hash keeps "Beyoncé" and "Beyonce" apart.
    slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")[:60] or "name"
    return f"{slug}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:10]}"


def _tokenize(tokenizer: Any, name: str) -> list[int]:
    return [int(t) for t in tokenizer(name, add_special_tokens=False).input_ids]


def _tokenizer_info(tokenizer: Any) -> dict:
    return {
        "class": type(tokenizer).__name__,
        "name_or_path": str(getattr(tokenizer, "name_or_path", "")),
        "vocab_size": len(tokenizer),
    }


def _default_tokenizer() -> Any:
    # SD1.x, SD2.x and SDXL share CLIP's BPE vocabulary, so these ids fit every family.
    from ..models import clip_tokenizer

    return clip_tokenizer()


# ---- face statistics ----------------------------------------------------------------------


def _summarise_faces(embeddings: np.ndarray, dim: int) -> tuple[np.ndarray, float, int]:
    """(unit mean embedding, consistency, number of faces) of one person's face embeddings.

    Consistency is the mean pairwise cosine between the faces: how much they look like one
    person. NaN with fewer than two faces; the mean is a zero vector with none.
    """
    e = np.asarray(embeddings, dtype=np.float32).reshape(-1, dim)
    n = int(e.shape[0])
    if n == 0:
        return np.zeros(dim, np.float32), math.nan, 0
    mean = e.astype(np.float64).sum(0)
    mean = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
    if n < 2:
        return mean, math.nan, n
    sims = e.astype(np.float64) @ e.astype(np.float64).T
    consistency = float(sims[np.triu_indices(n, 1)].mean())
    return mean, consistency, n


def _verdict(
    num_faces: int,
    consistency: float,
    *,
    min_faces: int,
    threshold: float | None,
    reference_similarity: float | None = None,
    reference_used: bool = False,
) -> str | None:
    """Why a name is rejected, or None to keep it."""
    if num_faces < min_faces:
        return f"{num_faces} usable face(s), need {min_faces}"
    if threshold is not None and not math.isnan(consistency) and consistency < threshold:
        return f"faces disagree: consistency {consistency:.3f} < {threshold:.3f}"
    if reference_used:
        if reference_similarity is None:
            return "not in the reference bank"
        if threshold is not None and reference_similarity < threshold:
            return (
                f"generated faces unlike the reference photos: similarity "
                f"{reference_similarity:.3f} < {threshold:.3f}"
            )
    return None


def _embed_faces(
    analyzer: Any, images: Sequence[Any], name: str = ""
) -> tuple[np.ndarray, list[str]]:
    """Embed the chosen face of each image.

    Args:
        analyzer: a `FaceAnalyzer`.
        images: RGB arrays, PIL images or paths.
        name: who the images show (for messages).

    Returns:
        (n, D) float32 embeddings of the images where a usable face was found, and one
        message per image that gave none (unreadable, no face, only tiny faces).
    """
    dim = int(analyzer.recognizer.dim)
    embs, errors = [], []
    for i, img in enumerate(images):
        label = str(img) if isinstance(img, (str, os.PathLike)) else f"{name} image {i}".strip()
        try:
            res = analyzer.analyze(
                np.asarray(img) if not isinstance(img, (str, os.PathLike)) else img
            )
        except ImageLoadError as e:
            errors.append(str(e))
            continue
        if res.embedding is None:
            reason = (res.error or "no face found").removeprefix(f"{res.name}: ")
            errors.append(f"{label}: {reason}")
            continue
        embs.append(np.asarray(res.embedding, np.float32).reshape(dim))
    arr = np.stack(embs).astype(np.float32) if embs else np.zeros((0, dim), np.float32)
    return arr, errors


def _json_safe(obj: Any) -> Any:
    # JSON has no NaN; an undefined statistic is written as null.
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    return obj


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---- the bank -------------------------------------------------------------------------------


@dataclass
class CelebrityBank:
    """Celebrities the base model knows, with face embeddings and name token ids.

    Attributes:
        names: the people, in bank order.
        embeddings: (N, D) float32 unit mean face embeddings.
        consistency: (N,) float32 mean pairwise cosine of each person's faces (NaN with one face).
        num_faces: (N,) int64 faces each entry was built from.
        token_ids: each name tokenised with the base model's first tokenizer (no BOS/EOS/padding).
        meta: JSON-ready metadata: recognizer, source, prompts, settings, threshold,
            created, rejected names with reasons.
    """

    names: list[str]
    embeddings: np.ndarray
    consistency: np.ndarray
    num_faces: np.ndarray
    token_ids: list[list[int]]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.names = [str(n) for n in self.names]
        self.token_ids = [[int(t) for t in ids] for ids in self.token_ids]
        n = len(self.names)
        emb = np.asarray(self.embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != n:
            raise ValueError(f"embeddings must be ({n}, D), got {emb.shape}")
        self.embeddings = emb
        self.consistency = np.asarray(self.consistency, dtype=np.float32).reshape(-1)
        self.num_faces = np.asarray(self.num_faces, dtype=np.int64).reshape(-1)
        for label, size in (
            ("consistency", self.consistency.shape[0]),
            ("num_faces", self.num_faces.shape[0]),
            ("token_ids", len(self.token_ids)),
        ):
            if size != n:
                raise ValueError(f"{label} has {size} entries for {n} names")
        if len({name.casefold() for name in self.names}) != n:
            raise ValueError("names must be unique")

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(name) is not None

    @property
    def dim(self) -> int:
        """Length of the face embeddings."""
        return int(self.embeddings.shape[1])

    def _find(self, name: str) -> int | None:
        key = _normalise_name(name).casefold()
        for i, n in enumerate(self.names):
            if n.casefold() == key:
                return i
        return None

    def index(self, name: str) -> int:
        """Position of `name` in the bank (case and spacing ignored); KeyError if absent."""
        i = self._find(name)
        if i is None:
            raise KeyError(f"{name!r} is not in the celebrity bank")
        return i

    def nearest(self, embedding: Any, k: int = 1) -> list[tuple[str, float]]:
        """The `k` celebrities whose faces are most similar, by cosine, most similar first.

        Args:
            embedding: a (D,) face embedding from the bank's recogniser, or an `Identity`
                (its mean embedding is used; its recogniser must be the bank's).
            k: how many to return (fewer if the bank is smaller).

        Raises:
            ArtifactError: the identity was embedded with a different recogniser.
            ValueError: the embedding's length does not match the bank's.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if hasattr(embedding, "embedding") and hasattr(embedding, "meta"):  # an Identity
            self.check_recognizer(embedding.meta.get("recognizer", {}), what="identity")
            embedding = embedding.embedding
        q = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise ValueError(
                f"embedding has {q.shape[0]} values but this bank's recogniser "
                f"({self.recognizer_name or '?'}) gives {self.dim}"
            )
        norm = float(np.linalg.norm(q))
        if not norm > 0:
            raise ValueError("embedding is zero or not finite")
        sims = self.embeddings @ (q / norm)
        order = np.argsort(-sims, kind="stable")[:k]
        return [(self.names[i], float(sims[i])) for i in order]

    @property
    def recognizer_name(self) -> str:
        return str(self.meta.get("recognizer", {}).get("name", ""))

    def check_recognizer(self, recognizer: dict, *, what: str = "embedding") -> None:
        """Raise `ArtifactError` if `recognizer` (a `describe()` dict) is not the bank's."""
        mine = self.meta.get("recognizer", {})
        for key in ("name", "dim"):
            a, b = recognizer.get(key), mine.get(key)
            if a is not None and b is not None and a != b:
                raise ArtifactError(
                    f"the {what} was embedded with recogniser {recognizer.get('name')!r} "
                    f"(dim {recognizer.get('dim')}) but the celebrity bank with "
                    f"{mine.get('name')!r} (dim {mine.get('dim')}); rebuild one with the other's recogniser"
                )

    def name_token_ids(self, name: str, tokenizer: Any = None) -> list[int]:
        """Token ids of a name (no BOS/EOS/padding).

        Args:
            name: a bank entry (its stored ids are returned), or any name when `tokenizer` is given.
            tokenizer: tokenise `name` with this instead of looking it up.
        """
        if tokenizer is not None:
            return _tokenize(tokenizer, _normalise_name(name))
        return list(self.token_ids[self.index(name)])

    def token_vectors(self, embedding_weight: Any, name: str) -> Any:
        """Rows of a text encoder's token-embedding matrix for a name's tokens ("id" init).

        Args:
            embedding_weight: (vocab, width) torch tensor or numpy array, e.g.
                `text_encoder.get_input_embeddings().weight`.
            name: a bank entry.

        Returns:
            (tokens, width) copy, detached from autograd for torch tensors.
        """
        ids = self.name_token_ids(name)
        rows = embedding_weight[ids]
        return rows.detach().clone() if hasattr(rows, "detach") else np.array(rows)

    def sample_token_ids(self, n: int = 2, seed: int = 0) -> list[int]:
        """`n` distinct token ids drawn at random from all the bank's name tokens ("rand2" init).

        Args:
            n: how many ids.
            seed: RNG seed; the same seed and bank give the same ids.
        """
        pool = sorted({t for ids in self.token_ids for t in ids})
        if n > len(pool):
            raise ValueError(f"the bank's names hold {len(pool)} distinct tokens, fewer than {n}")
        rng = np.random.default_rng(seed)
        return [int(pool[i]) for i in rng.choice(len(pool), size=n, replace=False)]

    def summary(self, limit: int = 10) -> str:
        """A few human-readable lines about the bank."""
        rejected = self.meta.get("rejected", {})
        lines = [
            f"celebrity bank: {len(self)} name(s) kept, {len(rejected)} rejected; recogniser "
            f"{self.recognizer_name or '?'}; source {self.meta.get('source', '?')}"
        ]
        for i in range(min(limit, len(self))):
            c = float(self.consistency[i])
            cs = "—" if math.isnan(c) else f"{c:.2f}"
            lines.append(f"  {self.names[i]}: {int(self.num_faces[i])} face(s), consistency {cs}")
        if len(self) > limit:
            lines.append(f"  ... {len(self) - limit} more")
        return "\n".join(lines)

    # ---- persistence -------------------------------------------------------------------

    def save(self, folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write `bank.safetensors` and `bank.json` into `folder` atomically.

        Both files are written into a temporary folder and moved into place only when
        complete. Other files in `folder` (a build's `parts/`) are left alone.

        Args:
            folder: destination (created if needed).
            overwrite: replace a bank already saved there.
        """
        from safetensors.numpy import save_file

        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise ArtifactError(f"{folder}: exists and is not a folder")
        if (folder / META_FILE).exists() and not overwrite:
            raise ArtifactError(
                f"{folder}: a celebrity bank is already saved there (pass overwrite=True / --force)"
            )
        folder.mkdir(parents=True, exist_ok=True)
        # Both files carry the same id, so tensors and names from two different saves (a
        # crash between the two renames) are detected at load instead of silently mixed.
        save_id = secrets.token_hex(8)
        meta = dict(self.meta) | {"format_version": FORMAT_VERSION}
        doc = {
            "format_version": FORMAT_VERSION,
            "save_id": save_id,
            "names": self.names,
            "token_ids": self.token_ids,
            "meta": meta,
        }
        tmp = Path(tempfile.mkdtemp(prefix=".bank.tmp-", dir=folder))
        try:
            save_file(
                {
                    "embeddings": np.ascontiguousarray(self.embeddings, np.float32),
                    "consistency": np.ascontiguousarray(self.consistency, np.float32),
                    "num_faces": np.ascontiguousarray(self.num_faces, np.int64),
                },
                str(tmp / TENSORS_FILE),
                metadata={"save_id": save_id, "format": "sameface-celebrity-bank"},
            )
            (tmp / META_FILE).write_text(
                json.dumps(_json_safe(doc), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
            )
            os.replace(tmp / TENSORS_FILE, folder / TENSORS_FILE)
            os.replace(tmp / META_FILE, folder / META_FILE)  # last: marks the save complete
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.meta = meta
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> CelebrityBank:
        """Load a bank saved with `save`.

        Raises:
            ArtifactError: the folder is missing, incomplete, corrupt or not a celebrity bank.
        """
        from safetensors import SafetensorError, safe_open
        from safetensors.numpy import load_file

        folder = Path(folder)
        meta_path, tensors_path = folder / META_FILE, folder / TENSORS_FILE
        if not meta_path.is_file():
            raise ArtifactError(f"{folder}: not a celebrity bank (no {META_FILE})")
        if not tensors_path.is_file():
            raise ArtifactError(f"{folder}: celebrity bank is incomplete ({TENSORS_FILE} missing)")
        try:
            doc = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ArtifactError(f"{meta_path}: corrupt metadata ({e})") from None
        if not isinstance(doc, dict) or "names" not in doc or "token_ids" not in doc:
            raise ArtifactError(f"{meta_path}: not a celebrity bank's metadata")
        if doc.get("format_version", 0) > FORMAT_VERSION:
            raise ArtifactError(
                f"{folder}: celebrity bank format {doc.get('format_version')} is newer than this "
                f"sameface understands ({FORMAT_VERSION}); upgrade sameface"
            )
        try:
            t = load_file(str(tensors_path))
            with safe_open(str(tensors_path), framework="numpy") as f:
                file_meta = f.metadata() or {}
        except (SafetensorError, OSError) as e:
            raise ArtifactError(f"{tensors_path}: corrupt tensor file ({e})") from None
        missing = set(TENSOR_NAMES) - set(t)
        if missing:
            raise ArtifactError(f"{tensors_path}: missing tensors {sorted(missing)}")
        if file_meta.get("save_id") != doc.get("save_id"):
            raise ArtifactError(
                f"{folder}: {TENSORS_FILE} and {META_FILE} come from different saves "
                "(an interrupted save?); rebuild the bank"
            )
        try:
            return cls(
                names=doc["names"],
                token_ids=doc["token_ids"],
                meta=doc.get("meta", {}),
                **{k: t[k] for k in TENSOR_NAMES},
            )
        except (ValueError, TypeError) as e:
            raise ArtifactError(f"{folder}: inconsistent celebrity bank ({e})") from None


# ---- building from photos -----------------------------------------------------------------


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


# ---- building from the base model ---------------------------------------------------------


def _make_pipeline(base_model: Any) -> Any:
    """The base model's diffusers pipeline with a DDIM scheduler (deterministic, eta 0)."""
    from diffusers import DDIMScheduler

    pipe = base_model.as_pipeline(scheduler=DDIMScheduler.from_config(base_model.scheduler.config))
    pipe.set_progress_bar_config(disable=True)  # one bar over the names, not one per name
    return pipe


def _generate_name_images(
    pipe: Any,
    name: str,
    *,
    images_per_name: int,
    num_inference_steps: int,
    guidance_scale: float,
    height: int,
    width: int,
    prompt_template: str,
    negative_prompt: str | None,
    seed: int,
) -> np.ndarray:
    """Generate `images_per_name` images of `name` in one batch: (n, H, W, 3) uint8.

    The generator lives on the CPU and is seeded from the name alone (`name_seed`), so a
    name gets the same latents whatever the order, shard or device it runs on.
    """
    import torch

    generator = torch.Generator(device="cpu").manual_seed(name_seed(name, seed))
    out = pipe(
        prompt=prompt_template.replace("{name}", name),
        negative_prompt=negative_prompt or None,
        num_images_per_prompt=images_per_name,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        height=height,
        width=width,
        generator=generator,
        output_type="np",
    )
    return (np.clip(np.asarray(out.images, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _write_part(parts_dir: Path, record: dict, face_embeddings: np.ndarray) -> Path:
    """Write one finished name: `<stem>.safetensors` (its face embeddings), then `<stem>.json`.

    The JSON file is written last and marks the name as finished.
    """
    from safetensors.numpy import save_file

    stem = _part_stem(record["name"])
    tensors = {"face_embeddings": np.ascontiguousarray(face_embeddings, np.float32)}
    write_with(parts_dir / f"{stem}.safetensors", lambda p: save_file(tensors, str(p)))
    text = json.dumps(_json_safe(record), indent=1, ensure_ascii=False) + "\n"
    write_with(parts_dir / f"{stem}.json", lambda p: p.write_text(text, encoding="utf-8"))
    return parts_dir / f"{stem}.json"


def _read_parts(parts_dir: Path) -> dict[str, dict]:
    """Finished records by name (only names whose JSON and tensors are both there)."""
    found: dict[str, dict] = {}
    if not parts_dir.is_dir():
        return found
    for p in sorted(parts_dir.glob("*.json")):
        if p.name.startswith("."):
            continue
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            continue  # unreadable: treated as not finished, so the name is generated again
        if not isinstance(rec, dict) or "name" not in rec:
            continue
        if not p.with_suffix(".safetensors").is_file():
            continue
        rec["_tensors"] = str(p.with_suffix(".safetensors"))
        found[rec["name"]] = rec
    return found


def _load_part_embeddings(rec: dict, dim: int) -> np.ndarray:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        e = load_file(rec["_tensors"])["face_embeddings"]
    except (SafetensorError, OSError, KeyError) as err:
        raise ArtifactError(
            f"{rec['_tensors']}: corrupt record for {rec['name']!r} ({err}); delete it and "
            "rerun the build to regenerate that name"
        ) from None
    return np.asarray(e, np.float32).reshape(-1, dim)


def _settings_diff(a: dict, b: dict) -> list[str]:
    return [
        f"{k}: {a.get(k)!r} vs {b.get(k)!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]


def build_bank_from_model(
    base_model: Any,
    analyzer: Any,
    names: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    images_per_name: int = 4,
    num_inference_steps: int = 25,
    guidance_scale: float = 7.5,
    height: int | None = None,
    width: int | None = None,
    prompt_template: str = DEFAULT_PROMPT,
    negative_prompt: str | None = DEFAULT_NEGATIVE_PROMPT,
    threshold: float | None = None,
    min_faces: int = 2,
    reference: CelebrityBank | None = None,
    seed: int = 0,
    save_images: bool = False,
    progress: bool = True,
    process_index: int | None = None,
    num_processes: int | None = None,
    wait_fn: Callable[[], None] | None = None,
) -> CelebrityBank | None:
    """Build a bank by generating each celebrity with the base model (seeds/001, "id" init).

    For each name, `images_per_name` portraits are generated in one batch (DDIM, seeded
    from the name), the chosen face of each is embedded, and the name is kept if at least
    `min_faces` faces were found and they agree (consistency >= `threshold`); with a
    `reference` bank of real photos, the generated faces must also match the photos, as in
    the paper. Each finished name is written at once to `out_dir/parts/`, so a killed
    run resumes where it stopped; the bank (`bank.safetensors` + `bank.json`) is written to
    `out_dir` when every name is done.

    Names are shared round-robin between processes. With neither `process_index` nor
    `num_processes` given they come from `distributed_context()`, so the same call works
    under `accelerate launch`. With explicit shards and no `wait_fn`, a shard only writes
    its records and returns None; run `consolidate_bank` once all shards are done.

    Args:
        base_model: a `sameface.models.BaseModel` (on the device to generate on).
        analyzer: a `FaceAnalyzer`; its recogniser defines the embedding space.
        names: the celebrities to try (duplicates dropped).
        out_dir: folder for `parts/` and the final bank.
        images_per_name: images generated per name (one batch).
        num_inference_steps: DDIM steps.
        guidance_scale: classifier-free guidance scale.
        height: image height; default the model's native resolution.
        width: image width; default the model's native resolution.
        prompt_template: prompt with a `{name}` placeholder.
        negative_prompt: negative prompt (None or "" for none).
        threshold: minimum consistency (and reference similarity); default the
            recogniser's `same_person_threshold`.
        min_faces: names with fewer usable faces are rejected.
        reference: a bank from real photos (`build_bank_from_photos`); names absent from it
            or whose generated faces do not match it are rejected.
        seed: base seed; each name's seed is `name_seed(name, seed)`.
        save_images: also keep the generated images under `out_dir/images/` for inspection.
        progress: show a progress bar (main process, on a terminal only).
        process_index: this shard's index.
        num_processes: number of shards.
        wait_fn: called after this shard's names are done to wait for the others.

    Returns:
        The bank on the main process once every name is done, else None.

    Raises:
        ArtifactError: `out_dir` holds records made with other settings, or (after waiting
            for every process) some names have no record.
    """
    if images_per_name < 1 or num_inference_steps < 1:
        raise ValueError("images_per_name and num_inference_steps must be at least 1")
    if not 1 <= min_faces <= images_per_name:
        raise ValueError(
            f"min_faces must be between 1 and images_per_name ({images_per_name}), got {min_faces}"
        )
    if "{name}" not in prompt_template:
        raise ValueError(f"prompt_template must contain '{{name}}': {prompt_template!r}")
    names = parse_names(names)
    if not names:
        raise ValueError("no celebrity names given")
    if process_index is None and num_processes is None:
        process_index, num_processes, wait_fn, _ = distributed_context()
    process_index = int(process_index or 0)
    num_processes = int(num_processes or 1)
    if not 0 <= process_index < num_processes:
        raise ValueError(
            f"process_index {process_index} out of range for {num_processes} processes"
        )
    is_main = process_index == 0

    out_dir = Path(out_dir)
    parts_dir = out_dir / PARTS_DIR
    parts_dir.mkdir(parents=True, exist_ok=True)
    rec = analyzer.recognizer
    tokenizer = base_model.tokenizers[0]
    height = int(height or base_model.resolution)
    width = int(width or base_model.resolution)
    # Everything that changes a name's record. Records made with other settings must not
    # be mixed into this bank, nor silently regenerated (hours of work may be in them).
    settings = {
        "base_model": str(getattr(base_model, "source", "")),
        "family": str(getattr(base_model, "family", "")),
        "scheduler": "DDIMScheduler",
        "prompt_template": prompt_template,
        "negative_prompt": negative_prompt or None,
        "images_per_name": images_per_name,
        "num_inference_steps": num_inference_steps,
        "guidance_scale": float(guidance_scale),
        "height": height,
        "width": width,
        "seed": int(seed),
        "recognizer": rec.describe() | {"same_person_threshold": rec.same_person_threshold},
    }
    tok_info = _tokenizer_info(tokenizer)
    done = _read_parts(parts_dir)
    for rec_done in done.values():
        diff = _settings_diff(rec_done.get("settings", {}), _json_safe(settings))
        if diff:
            raise ArtifactError(
                f"{parts_dir}: holds records made with other settings ({'; '.join(diff)}); "
                "use another output folder or the same settings"
            )
    mine = [n for i, n in enumerate(names) if i % num_processes == process_index and n not in done]

    pipe = None
    bar = None
    if progress and is_main and mine:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(mine), desc="celebrities", unit="name", disable=None)
    try:
        for name in mine:
            if pipe is None:  # built lazily: a fully resumed run never touches the model
                pipe = _make_pipeline(base_model)
            images = _generate_name_images(
                pipe,
                name,
                images_per_name=images_per_name,
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                height=height,
                width=width,
                prompt_template=prompt_template,
                negative_prompt=negative_prompt,
                seed=seed,
            )
            face_embs, errors = _embed_faces(analyzer, images, name)
            if save_images:
                from ..imageio import save_image_atomic

                for i, img in enumerate(images):
                    save_image_atomic(
                        np.asarray(img), out_dir / IMAGES_DIR / _part_stem(name) / f"{i:02d}.jpg"
                    )
            _, consistency, n = _summarise_faces(face_embs, int(rec.dim))
            _write_part(
                parts_dir,
                {
                    "format_version": FORMAT_VERSION,
                    "name": name,
                    "settings": settings,
                    "name_seed": name_seed(name, seed),
                    "process_index": process_index,
                    "num_images": len(images),
                    "num_faces": n,
                    "consistency": consistency,
                    "token_ids": _tokenize(tokenizer, name),
                    "tokenizer": tok_info,
                    "errors": errors,
                    "created": _now(),
                },
                face_embs,
            )
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{name}: {n}/{len(images)} faces", refresh=False)
    finally:
        if bar is not None:
            bar.close()

    if wait_fn is not None:
        wait_fn()
    if not is_main:
        return None
    if wait_fn is None and num_processes > 1:
        have = _read_parts(parts_dir)
        if any(n not in have for n in names):
            return None  # other shards still running: `consolidate_bank` when they finish
    return consolidate_bank(
        out_dir,
        names,
        threshold=threshold,
        min_faces=min_faces,
        reference=reference,
        tokenizer=tokenizer,
    )


def consolidate_bank(
    out_dir: str | os.PathLike,
    names: Sequence[str] | None = None,
    *,
    threshold: float | None = None,
    min_faces: int = 2,
    reference: CelebrityBank | None = None,
    tokenizer: Any = None,
    save: bool = True,
) -> CelebrityBank:
    """Merge the per-name records in `out_dir/parts/` into one bank and save it in `out_dir`.

    The acceptance rule is applied here, so a finished build can be re-filtered with
    another `threshold`, `min_faces` or `reference` without generating anything again.

    Args:
        out_dir: the folder `build_bank_from_model` wrote to.
        names: the names to include, in bank order; default every record, sorted.
        threshold: minimum consistency (and reference similarity); default the
            recogniser's `same_person_threshold`.
        min_faces: names with fewer usable faces are rejected.
        reference: a real-photo bank the generated faces must match.
        tokenizer: recorded in the metadata (default: as the records say); the token ids
            come from the records.
        save: write `bank.safetensors` + `bank.json` into `out_dir` (replacing a previous bank).

    Raises:
        ArtifactError: names without a record, or records made with different settings.
    """
    out_dir = Path(out_dir)
    parts_dir = out_dir / PARTS_DIR
    parts = _read_parts(parts_dir)
    wanted = parse_names(names) if names is not None else sorted(parts, key=str.casefold)
    if not wanted:
        raise ArtifactError(f"{parts_dir}: no finished celebrity records to consolidate")
    missing = [n for n in wanted if n not in parts]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ArtifactError(
            f"{parts_dir}: {len(missing)} name(s) have no finished record ({shown}); rerun the "
            "build (it resumes) to generate them"
        )
    records = [parts[n] for n in wanted]
    settings = records[0].get("settings", {})
    for r in records[1:]:
        diff = _settings_diff(r.get("settings", {}), settings)
        if diff:
            raise ArtifactError(
                f"{parts_dir}: records were made with different settings ({'; '.join(diff)})"
            )
    recognizer = dict(settings.get("recognizer", {}))
    dim = int(recognizer.get("dim") or 0)
    if threshold is None:
        threshold = float(recognizer.get("same_person_threshold", 0.5))
    if reference is not None:
        reference.check_recognizer(recognizer, what="generated celebrity faces")

    kept_names, embs, cons, counts, toks = [], [], [], [], []
    rejected: dict[str, str] = {}
    for r in records:
        face_embs = _load_part_embeddings(r, dim)
        mean, consistency, n = _summarise_faces(face_embs, dim)
        ref_sim = None
        if reference is not None and n > 0 and r["name"] in reference:
            ref_sim = float(reference.embeddings[reference.index(r["name"])] @ mean)
        reason = _verdict(
            n,
            consistency,
            min_faces=min_faces,
            threshold=threshold,
            reference_similarity=ref_sim,
            reference_used=reference is not None,
        )
        if reason is not None:
            rejected[r["name"]] = reason
            continue
        kept_names.append(r["name"])
        embs.append(mean)
        cons.append(consistency)
        counts.append(n)
        toks.append([int(t) for t in r.get("token_ids", [])])
    meta = {
        "format_version": FORMAT_VERSION,
        "created": _now(),
        "source": f"base-model:{settings.get('base_model', '')}",
        "recognizer": recognizer,
        "tokenizer": _tokenizer_info(tokenizer)
        if tokenizer is not None
        else records[0].get("tokenizer"),
        "prompt_template": settings.get("prompt_template"),
        "negative_prompt": settings.get("negative_prompt"),
        "images_per_name": settings.get("images_per_name"),
        "num_inference_steps": settings.get("num_inference_steps"),
        "guidance_scale": settings.get("guidance_scale"),
        "size": [settings.get("width"), settings.get("height")],
        "scheduler": settings.get("scheduler"),
        "seed": settings.get("seed"),
        "threshold": float(threshold),
        "min_faces": int(min_faces),
        "reference": None if reference is None else reference.meta.get("source"),
        "num_requested": len(wanted),
        "rejected": rejected,
    }
    bank = _assemble_bank(kept_names, embs, cons, counts, toks, meta, dim)
    if save:
        bank.save(out_dir, overwrite=True)
    return bank


__all__ = [
    "DEFAULT_NEGATIVE_PROMPT",
    "DEFAULT_PROMPT",
    "CelebrityBank",
    "DistributedContext",
    "build_bank_from_model",
    "build_bank_from_photos",
    "consolidate_bank",
    "distributed_context",
    "load_celebrity_names",
    "name_seed",
    "parse_names",
]


def _assemble_bank(names, embs, cons, counts, toks, meta, dim) -> CelebrityBank:
    """A bank from per-name lists (empty lists give an empty bank of the right width)."""
    return CelebrityBank(
        names=list(names),
        embeddings=np.stack(embs) if embs else np.zeros((0, dim), np.float32),
        consistency=np.asarray(cons, np.float32),
        num_faces=np.asarray(counts, np.int64),
        token_ids=toks,
        meta=meta,
    )
