"""The artifact of the pseudo-word methods (textual inversion, DreamIdentity): an identity as a
few vectors in the text encoders' input space, in the file plain diffusers loads, plus a sidecar.

    out/learned_embeds.safetensors   SD1.x/SD2.x: {"<id>": (k, dim)}
                                     SDXL: {"clip_l": (k, 768), "clip_g": (k, 1280)}
    out/artifact.json                method, base model, placeholder, settings (the method's own)
    out/identity/                    the identity the vectors came from (reference faces)

Load in diffusers without sameface:
    pipe.load_textual_inversion("out/learned_embeds.safetensors", token="<id>")
    # SDXL:
    sd = safetensors.torch.load_file("out/learned_embeds.safetensors")
    pipe.load_textual_inversion(sd["clip_l"], token="<id>", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(sd["clip_g"], token="<id>", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import ArtifactError
from ..fileio import write_json_atomic

FORMAT_VERSION = 1
"""Newest `artifact.json` format_version the readers here accept."""
EMBEDS_FILE = "learned_embeds.safetensors"
META_FILE = "artifact.json"
SDXL_KEYS = ("clip_l", "clip_g")


def embedding_keys(family: str, placeholder: str) -> tuple[str, ...]:
    """State-dict keys, one per text encoder, in the format diffusers loads."""
    return SDXL_KEYS if family == "sdxl" else (placeholder,)


def save_embeddings(
    folder: Path,
    family: str,
    placeholder: str,
    vectors: list[Any],
    meta: dict,
    *,
    save_id: str | None = None,
) -> None:
    """Write the embeddings and the sidecar atomically (each via a temporary file + rename),
    tied by one save id (`save_id`, else `content_save_id` of both) that `load_embeddings` checks."""
    save_id = save_id or content_save_id(meta, vectors)
    folder.mkdir(parents=True, exist_ok=True)
    write_embedding_file(folder / EMBEDS_FILE, family, placeholder, vectors, save_id=save_id)
    write_json_atomic(folder / META_FILE, {**meta, "save_id": save_id}, sort_keys=True)


def write_embedding_file(
    path: Path, family: str, placeholder: str, vectors: list[Any], *, save_id: str | None = None
) -> None:
    """One word's vectors (one (k, dim) tensor per text encoder) in the textual-inversion
    layout diffusers' `load_textual_inversion` reads, written atomically (with the artifact's
    save id in the file's metadata)."""
    from ..tensorfile import save_safetensors

    keys = embedding_keys(family, placeholder)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in zip(keys, vectors, strict=True)}
    tags = {"placeholder": placeholder, "family": family}
    save_safetensors(tensors, path, tags | ({"save_id": save_id} if save_id else {}))


def read_embedding_file(
    path: Path, family: str, placeholder: str, save_id: str | None = None
) -> list[Any]:
    """`write_embedding_file`'s vectors, one per text encoder (checked: 2-d float, keys present,
    and from the save `save_id` when the artifact records one)."""
    import torch

    from ..tensorfile import read_safetensors

    tensors, tags = read_safetensors(path)
    check_save_id(path, tags, save_id)
    for k, v in tensors.items():
        if v.dtype not in (torch.float32, torch.float16, torch.bfloat16) or v.ndim != 2:
            raise ArtifactError(
                f"{path}: {k!r} must be a 2-d float tensor (vectors x width), "
                f"got {tuple(v.shape)} {v.dtype}"
            )
    keys = embedding_keys(family, placeholder)
    if set(keys) - set(tensors):
        raise ArtifactError(f"{path}: expected keys {list(keys)}, found {sorted(tensors)}")
    return [tensors[k] for k in keys]


def load_embeddings(folder: str | os.PathLike, method: str | None = None) -> tuple[list[Any], dict]:
    """(vectors per text encoder, sidecar) of a saved artifact.

    Args:
        folder: the artifact folder.
        method: the method that must have written it (None: any; old textual-inversion
            artifacts name none).

    Raises:
        ArtifactError: files missing or inconsistent, or written by another method.
    """
    folder = Path(folder)
    if not (folder / META_FILE).is_file() or not (folder / EMBEDS_FILE).is_file():
        raise ArtifactError(
            f"{folder}: not a {method or 'pseudo-word'} artifact ({META_FILE} and {EMBEDS_FILE} needed)"
        )
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{folder / META_FILE}: unreadable ({e})") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{folder / META_FILE}: not a JSON object")
    if method is not None and meta.get("method", method) != method:
        raise ArtifactError(f"{folder}: a {meta.get('method')} artifact, not a {method} one")
    version = meta.get("format_version", FORMAT_VERSION)
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or not 1 <= version <= FORMAT_VERSION
    ):
        raise ArtifactError(
            f"{folder / META_FILE}: unknown format_version {version!r} (this sameface reads "
            f"1..{FORMAT_VERSION})"
        )
    vectors = read_embedding_file(
        folder / EMBEDS_FILE,
        meta.get("family", "sd1"),
        meta.get("placeholder", "<id>"),
        meta.get("save_id"),
    )
    return vectors, meta


def check_save_id(path: Path, tags: dict, save_id: str | None) -> None:
    """A file of an artifact must come from the save its `artifact.json` records (artifacts
    written before save ids, recording none, are read as they are)."""
    if save_id is not None and tags.get("save_id") != save_id:
        raise ArtifactError(
            f"{path}: not from the same save as {path.parent / META_FILE} (the folder mixes "
            "two runs' files); personalise again"
        )


def content_save_id(meta: dict, *tensors: Any) -> str:
    """A save id from what is saved (the sidecar and every tensor, in order): saving the same
    artifact twice writes the same bytes, and files of two different saves do not match."""
    import hashlib

    h = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode())
    for group in tensors:
        items = sorted(group.items()) if isinstance(group, dict) else enumerate(group)
        for key, t in items:
            h.update(str(key).encode())
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]
