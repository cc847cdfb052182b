"""The file layouts AUTOMATIC1111's stable-diffusion-webui and ComfyUI read, written from
sameface's own tensors and checked against what those tools' loaders accept.

Embeddings (textual-inversion words). Both tools name an embedding by its **file name** (A1111:
the trigger word; ComfyUI: `embedding:NAME`), so each word is written to its own file:

    SD1.x / SD2.x   {"emb_params": (k, width)}           one key: both tools take the only tensor
    SDXL            {"clip_l": (k, 768), "clip_g": (k, 1280)}

LoRA (MagiCapture's UNet LoRA): the kohya layout both tools' LoRA loaders read,

    lora_unet_<module path, "." -> "_">.lora_down.weight   (r, in)     = peft's lora_A
    lora_unet_<module path, "." -> "_">.lora_up.weight     (out, r)    = peft's lora_B
    lora_unet_<module path, "." -> "_">.alpha              ()          = α (sameface: α = r)

The checks below are written from the loaders' documented behaviour, not their code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SINGLE_KEY = "emb_params"
SDXL_KEYS = ("clip_l", "clip_g")
WIDTHS = {"sd1": (768,), "sd2": (1024,), "sdxl": (768, 1280)}
"""Text-encoder widths of each family, in `SDXL_KEYS` order for SDXL."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_PEFT = re.compile(r"^unet\.(.+)\.lora_([AB])\.weight$")


def check_name(name: str) -> str:
    """A name both tools can take as a file name and a prompt word (letters, digits, `_`,
    `-`; no spaces: A1111 matches the word in the prompt, ComfyUI after `embedding:`)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"embedding name {name!r}: use 1-64 letters, digits, '_' or '-', starting with a "
            "letter or digit (it becomes the file name and the word in prompts)"
        )
    return name


def embedding_tensors(family: str, vectors: list[Any]) -> dict[str, Any]:
    """One word's vectors (one (k, width) tensor per text encoder) in the webui layout."""
    if family not in WIDTHS:
        raise ValueError(f"unknown model family {family!r}")
    if len(vectors) != len(WIDTHS[family]):
        raise ValueError(f"{family} has {len(WIDTHS[family])} text encoder(s), got {len(vectors)}")
    keys = SDXL_KEYS if family == "sdxl" else (SINGLE_KEY,)
    return {k: v.detach().float().cpu().contiguous() for k, v in zip(keys, vectors, strict=True)}


def webui_problems(tensors: Mapping[str, Any], family: str) -> list[str]:
    """What would stop A1111 or ComfyUI loading these tensors as an embedding for `family`
    (empty: both load it).

    A1111 takes a single-tensor file's only tensor, or an SDXL file's `clip_l` and `clip_g`;
    ComfyUI looks up its encoder's key (`clip_l`, `clip_g`; SD2: `clip_h`) and otherwise takes
    the first tensor. Both need 2-d (vectors × width) float tensors of the encoder's width.
    """
    problems = []
    for k, v in tensors.items():
        if getattr(v, "ndim", None) != 2 or not v.is_floating_point():
            problems.append(f"{k}: a 2-d float tensor (vectors x width) is needed")
    if problems:
        return problems
    if family == "sdxl":
        missing = [k for k in SDXL_KEYS if k not in tensors]
        if missing:
            return [f"SDXL embeddings need {', '.join(SDXL_KEYS)}; missing {', '.join(missing)}"]
        if len(tensors) != 2:
            return [f"extra tensors {sorted(set(tensors) - set(SDXL_KEYS))}: A1111 skips the file"]
        for k, width in zip(SDXL_KEYS, WIDTHS["sdxl"], strict=True):
            if tensors[k].shape[1] != width:
                problems.append(f"{k}: width {tensors[k].shape[1]}, the encoder's is {width}")
        if tensors["clip_l"].shape[0] != tensors["clip_g"].shape[0]:
            problems.append("clip_l and clip_g need the same number of vectors")
        return problems
    if len(tensors) != 1:
        return [f"{len(tensors)} tensors: A1111 loads a single-tensor file only"]
    (v,) = tensors.values()
    if v.shape[1] != WIDTHS[family][0]:
        problems.append(f"width {v.shape[1]}, the {family} text encoder's is {WIDTHS[family][0]}")
    return problems


def kohya_lora(peft: Mapping[str, Any], alpha: float) -> dict[str, Any]:
    """diffusers/peft UNet LoRA tensors (`unet.<module>.lora_A/B.weight`) in the kohya layout."""
    import torch

    out: dict[str, Any] = {}
    modules = set()
    for key, value in peft.items():
        m = _PEFT.match(key)
        if m is None:
            raise ValueError(f"{key}: not a UNet LoRA weight (unet.<module>.lora_A/B.weight)")
        module, which = m.groups()
        name = "lora_unet_" + module.replace(".", "_")
        out[f"{name}.{'lora_down' if which == 'A' else 'lora_up'}.weight"] = value.contiguous()
        modules.add(name)
    for name in sorted(modules):
        if f"{name}.lora_down.weight" not in out or f"{name}.lora_up.weight" not in out:
            raise ValueError(f"{name}: needs both lora_A and lora_B")
        out[f"{name}.alpha"] = torch.tensor(float(alpha))
    return out


def lora_problems(tensors: Mapping[str, Any], module_names: set[str] | None = None) -> list[str]:
    """What would stop the tools' LoRA loaders using a kohya file: each module's down/up/alpha
    present with matching rank, and (given the UNet's module names, `.` form) each module
    real."""
    problems = []
    groups: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        name, _, part = key.partition(".")
        if not name.startswith("lora_unet_") or part not in (
            "lora_down.weight",
            "lora_up.weight",
            "alpha",
        ):
            problems.append(f"{key}: not a kohya UNet LoRA key")
            continue
        groups.setdefault(name, {})[part] = value
    known = {"lora_unet_" + n.replace(".", "_") for n in module_names} if module_names else None
    for name, parts in sorted(groups.items()):
        if set(parts) != {"lora_down.weight", "lora_up.weight", "alpha"}:
            problems.append(f"{name}: needs lora_down, lora_up and alpha")
            continue
        down, up = parts["lora_down.weight"], parts["lora_up.weight"]
        if down.ndim != 2 or up.ndim != 2 or down.shape[0] != up.shape[1]:
            problems.append(f"{name}: down {tuple(down.shape)} and up {tuple(up.shape)} disagree")
        if parts["alpha"].ndim != 0:
            problems.append(f"{name}: alpha must be a scalar")
        if known is not None and name not in known:
            problems.append(f"{name}: no such UNet module")
    return problems
