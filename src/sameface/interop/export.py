"""`sameface export`: a personalised identity as the files a user copies into AUTOMATIC1111's
or ComfyUI's model folders, named as the user chooses, with nothing of the identity's
biometric data (no photos, crops or face embeddings: only the learned words and LoRA)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ArtifactError, OutputError

EMBEDDINGS = "embeddings"
LORAS = "loras"


@dataclass
class Export:
    """What `export_artifact` wrote.

    Attributes:
        name: the word the main embedding answers to (its file name).
        embeddings: embedding files, the main word's first.
        loras: LoRA files (empty for artifacts without one).
        words: placeholder in sameface prompts -> the name to write in the tools' prompts.
    """

    name: str
    embeddings: list[Path] = field(default_factory=list)
    loras: list[Path] = field(default_factory=list)
    words: dict[str, str] = field(default_factory=dict)

    def usage(self) -> str:
        """How to use the files in each tool (printed by the CLI; docs/interop.md)."""
        lines = [
            f"A1111 / Forge: copy {EMBEDDINGS}/*.safetensors into stable-diffusion-webui/embeddings/",
            f'  prompt: "a photo of {self.name}"',
            f"ComfyUI: copy {EMBEDDINGS}/*.safetensors into ComfyUI/models/embeddings/",
            f'  prompt: "a photo of embedding:{self.name}"',
        ]
        if self.loras:
            lora = self.loras[0].stem
            lines[1] = f'  prompt: "a photo of {self.name} <lora:{lora}:1>"'
            lines.insert(
                1, f"  and {LORAS}/{lora}.safetensors into stable-diffusion-webui/models/Lora/"
            )
            lines.insert(
                4,
                f"  and {LORAS}/{lora}.safetensors into ComfyUI/models/loras/ (a LoraLoader node)",
            )
        others = {w: n for w, n in self.words.items() if n != self.name}
        if others:
            lines.append(
                "further words: "
                + ", ".join(f"{w} -> {n}" for w, n in others.items())
                + " (the same way)"
            )
        return "\n".join(lines)


def export_artifact(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    name: str | None = None,
    overwrite: bool = False,
) -> Export:
    """Write an artifact's words (and LoRA) in the layouts A1111 and ComfyUI read.

    OUT/embeddings/NAME.safetensors        the identity's word
    OUT/embeddings/NAME-<word>.safetensors each further word (e.g. MagiCapture's style)
    OUT/loras/NAME.safetensors             the UNet LoRA, when the artifact has one

    Args:
        folder: a personalised identity (`sameface personalize` output) of a method whose
            artifact is words (textual inversion, DreamIdentity, MagiCapture).
        out: the folder to write into.
        name: the word in the tools' prompts (default: the artifact folder's name).
        overwrite: replace files of the same names.

    Raises:
        ArtifactError: not a words artifact, or damaged files.
        ValueError: a name the tools cannot take.
        OutputError: the files exist (without `overwrite`).
    """
    from ..adapters.lora import LORA_FILE
    from ..methods.words import EMBEDS_FILE, META_FILE, read_embedding_file
    from ..tensorfile import read_safetensors, save_safetensors
    from .webui import check_name, embedding_tensors, kohya_lora, webui_problems

    folder, out = Path(folder), Path(out)
    meta = _read_meta(folder / META_FILE)
    method = meta.get("method", "?")
    if not (folder / EMBEDS_FILE).is_file():
        raise ArtifactError(
            f"{folder}: a {method} artifact has no learned words ({EMBEDS_FILE}); only artifacts "
            "made of words (and a LoRA) load in A1111 or ComfyUI"
        )
    name = check_name(name if name is not None else _default_name(folder))
    family, placeholder = meta.get("family", "sd1"), meta.get("placeholder")
    save_id = meta.get("save_id")
    words = {placeholder: (folder / EMBEDS_FILE, name)}
    for path in sorted(folder.glob("*.safetensors")):  # further words carry their placeholder
        if path.name in (EMBEDS_FILE, LORA_FILE):
            continue
        _, tags = read_safetensors(path)
        word = tags.get("placeholder")
        if word and word != placeholder and tags.get("family") == family:
            words[word] = (path, f"{name}-{_slug(word)}")
    result = Export(name)
    planned = [out / EMBEDDINGS / f"{n}.safetensors" for _, n in words.values()]
    if (folder / LORA_FILE).is_file():
        planned.append(out / LORAS / f"{name}.safetensors")
    taken = [p for p in planned if p.exists()]
    if taken and not overwrite:
        raise OutputError(f"{taken[0]} exists; pass --force to replace it")
    tags = {"sameface_method": method, "family": family}
    for word, (path, word_name) in words.items():
        vectors = read_embedding_file(path, family, word, save_id)
        tensors = embedding_tensors(family, vectors)
        problems = webui_problems(tensors, family)
        if problems:
            raise ArtifactError(
                f"{path}: " + "; ".join(problems) + " (A1111 and ComfyUI run SD1.x/SD2.x/SDXL "
                "models; an artifact of another base, e.g. the miniature world's, cannot load there)"
            )
        target = out / EMBEDDINGS / f"{word_name}.safetensors"
        save_safetensors(tensors, target, tags | {"name": word_name})
        result.embeddings.append(target)
        result.words[word] = word_name
    if (folder / LORA_FILE).is_file():
        peft, lora_tags = read_safetensors(folder / LORA_FILE)
        if save_id and lora_tags.get("save_id") not in (None, save_id):
            raise ArtifactError(f"{folder / LORA_FILE}: not from the same save as {META_FILE}")
        rank = next(v.shape[0] for k, v in peft.items() if k.endswith("lora_A.weight"))
        alpha = (meta.get("lora") or {}).get("alpha", rank)
        target = out / LORAS / f"{name}.safetensors"
        save_safetensors(kohya_lora(peft, alpha), target, tags | {"name": name})
        result.loras.append(target)
    return result


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(
            f"{path.parent}: not a personalised identity (no {path.name}); run `sameface "
            "personalize` first"
        ) from None
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: unreadable ({e})") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path}: not a JSON object")
    return meta


def _default_name(folder: Path) -> str:
    """The artifact folder's name, made a valid word (`ids/Ada Lovelace` -> `Ada_Lovelace`)."""
    return _slug(folder.resolve().name) or "identity"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_-")[:64]
