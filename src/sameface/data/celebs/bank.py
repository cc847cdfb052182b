"""`CelebrityBank`: names with face embeddings and token ids, saved as safetensors + JSON."""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ArtifactError
from .names import _normalise_name

FORMAT_VERSION = 1
TENSORS_FILE = "bank.safetensors"
META_FILE = "bank.json"
TENSOR_NAMES = ("embeddings", "consistency", "num_faces")


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
    from ...models import clip_tokenizer

    return clip_tokenizer()


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
