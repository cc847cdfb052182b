"""MagiCapture's artifact: the words as textual-inversion files and the LoRA in diffusers'
layout, so plain diffusers reproduces the images without sameface:

    out/learned_embeds.safetensors          [V1] (the person), as textual inversion writes it
    out/style_embeds.safetensors            [V2] (the reference style), when there was one
    out/pytorch_lora_weights.safetensors    the UNet LoRA ("unet.<layer>.lora_A/B.weight", α = r)
    out/artifact.json                       method, base, words, LoRA settings (written last)
    out/identity/                           the identity the words came from

    pipe.load_textual_inversion("out/learned_embeds.safetensors", token="<id>")
    pipe.load_textual_inversion("out/style_embeds.safetensors", token="<style>")
    pipe.load_lora_weights("out")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...adapters.lora import LORA_FILE
from ...errors import ArtifactError
from ..words import (
    check_save_id,
    content_save_id,
    read_embedding_file,
    save_embeddings,
    write_embedding_file,
)

STYLE_FILE = "style_embeds.safetensors"


def save_artifact(
    folder: Path, family: str, cfg: Any, vectors: dict, lora: dict, meta: dict
) -> None:
    """Write the style word, the LoRA, then [V1] with `artifact.json` (the finished marker),
    all tied by one save id."""
    from ...tensorfile import save_safetensors

    save_id = content_save_id(meta, lora, *vectors.values())
    folder.mkdir(parents=True, exist_ok=True)
    if cfg.style_placeholder in vectors:
        style = vectors[cfg.style_placeholder]
        write_embedding_file(
            folder / STYLE_FILE, family, cfg.style_placeholder, style, save_id=save_id
        )
    tensors = {k: v.float().contiguous() for k, v in lora.items()}
    save_safetensors(tensors, folder / LORA_FILE, {"save_id": save_id})
    save_embeddings(
        folder, family, cfg.placeholder, vectors[cfg.placeholder], meta, save_id=save_id
    )


def load_extras(folder: Path, meta: dict) -> dict:
    """The style word (if any) and the LoRA tensors of an artifact folder."""
    from ...tensorfile import read_safetensors

    folder = Path(folder)
    more = {}
    style = meta.get("style_placeholder")
    if style:
        if not (folder / STYLE_FILE).is_file():
            raise ArtifactError(f"{folder}: {STYLE_FILE} is missing (the artifact names {style})")
        more[style] = read_embedding_file(
            folder / STYLE_FILE, meta.get("family", "sd1"), style, meta.get("save_id")
        )
    if not (folder / LORA_FILE).is_file():
        raise ArtifactError(f"{folder}: {LORA_FILE} is missing")
    lora, tags = read_safetensors(folder / LORA_FILE)
    check_save_id(folder / LORA_FILE, tags, meta.get("save_id"))
    return {"more_words": more, "lora": lora}
