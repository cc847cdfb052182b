"""Which Stable Diffusion family a model is: "sd1", "sd2" or "sdxl".

Decided from configs (diffusers folders) or from state-dict key names and shapes (single-file
checkpoints, read through `safetensors.safe_open`, so no weights are loaded).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from sameface.errors import SamefaceError
from sameface.models.resolve import (
    BASE_CONFIG_REPOS,
    ResolvedModel,
    pipeline_components,
    read_model_index,
)

FAMILIES = ("sd1", "sd2", "sdxl")
NATIVE_RESOLUTION = {"sd1": 512, "sd2": 512, "sdxl": 1024}
# Cross-attention width = text-encoder width: CLIP-L 768, OpenCLIP-H 1024, CLIP-L + bigG 2048.
_CROSS_DIM_FAMILY = {768: "sd1", 1024: "sd2", 2048: "sdxl"}

# Single-file (original LDM / SGM) key prefixes that identify the text encoder(s).
_SDXL_TE2 = "conditioner.embedders.1."
_SDXL_REFINER_TE = "conditioner.embedders.0.model."
_SD2_TE = "cond_stage_model.model."
_SD1_TE = "cond_stage_model.transformer."
_UNET = "model.diffusion_model."
_CONV_IN = _UNET + "input_blocks.0.0.weight"
# ComfyUI's SD2 v-prediction test: this bias is near zero in epsilon models (std <= 0.09).
_SD2_V_PROBE = _UNET + "output_blocks.11.1.transformer_blocks.0.norm1.bias"


@dataclass(frozen=True)
class FamilyInfo:
    """What kind of Stable Diffusion a model is.

    Attributes:
        family: `"sd1"`, `"sd2"` or `"sdxl"`.
        prediction_type: `"epsilon"` or `"v_prediction"`; from the scheduler config for
            diffusers folders, a best guess for single files (see `family_from_single_file`).
        resolution: native image size in pixels (512, 768 or 1024 for the real models).
        base_repo: diffusers repo whose configs match this family (single-file loading).
    """

    family: str
    prediction_type: str | None
    resolution: int
    base_repo: str


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise SamefaceError(f"{path} is not valid JSON: {e}") from e


def _base_repo(family: str, prediction_type: str | None) -> str:
    if family == "sd2" and prediction_type == "v_prediction":
        return BASE_CONFIG_REPOS["sd2-v"]
    return BASE_CONFIG_REPOS[family]


def family_from_diffusers_folder(folder: str | os.PathLike[str]) -> FamilyInfo:
    """Detect the family of a diffusers pipeline folder from its configs.

    SDXL: a second text encoder, `addition_embed_type == "text_time"` or an XL pipeline class.
    Otherwise the UNet's cross-attention width (768 -> sd1, 1024 -> sd2); for non-standard
    widths (tiny test models) the text encoder's activation decides: OpenAI CLIP's
    `quick_gelu` -> sd1, OpenCLIP's `gelu` -> sd2.

    Args:
        folder: a diffusers folder with `model_index.json`.

    Raises:
        SamefaceError: the folder is not a SD1/SD2/SDXL text-to-image pipeline.
    """
    folder = Path(folder)
    index = read_model_index(folder)
    comps = pipeline_components(index)
    unet = _read_json(folder / "unet" / "config.json")
    te = _read_json(folder / "text_encoder" / "config.json")
    vae = _read_json(folder / "vae" / "config.json")
    sched = _read_json(folder / "scheduler" / "scheduler_config.json")
    cls = str(index.get("_class_name", ""))
    where = f"{folder} ({cls or 'no _class_name'})"
    if not unet:
        raise SamefaceError(f"{where}: no unet/config.json, so the family cannot be detected.")
    if unet.get("in_channels", 4) != 4:
        raise SamefaceError(
            f"{where}: the UNet takes {unet['in_channels']} input channels (an inpainting or "
            "depth model); sameface supports text-to-image SD1/SD2/SDXL pipelines only."
        )
    if "text_encoder_2" in comps and "text_encoder" not in comps:
        raise SamefaceError(f"{where}: an SDXL refiner; sameface needs an SDXL base model.")
    family = None
    if "text_encoder_2" in comps or unet.get("addition_embed_type") == "text_time" or "XL" in cls:
        family = "sdxl"
    else:
        cross = unet.get("cross_attention_dim")
        family = {768: "sd1", 1024: "sd2"}.get(cross)
        if family is None and cross not in _CROSS_DIM_FAMILY and te:
            # Non-standard width (tiny test models): the text encoder's family decides.
            family = {"quick_gelu": "sd1", "gelu": "sd2"}.get(te.get("hidden_act"))
    if family is None:
        raise SamefaceError(
            f"{where}: unknown model family (cross_attention_dim="
            f"{unet.get('cross_attention_dim')}, text encoder activation "
            f"{te.get('hidden_act')!r}); sameface supports SD1.x, SD2.x and SDXL."
        )
    prediction = sched.get("prediction_type", "epsilon")
    scale = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
    resolution = int(unet.get("sample_size", NATIVE_RESOLUTION[family] // 8)) * scale
    return FamilyInfo(family, prediction, resolution, _base_repo(family, prediction))


def family_from_single_file(path: str | os.PathLike[str]) -> FamilyInfo:
    """Detect the family of an original (LDM/SGM) single-file `.safetensors` checkpoint.

    Reads key names and shapes only (one small tensor for the SD2 v-prediction guess).
    Text encoder keys decide: `conditioner.embedders.1.` -> sdxl, `cond_stage_model.model.`
    (OpenCLIP) -> sd2, `cond_stage_model.transformer.` (CLIP) -> sd1. Prediction type: a
    `v_pred` key means v-prediction; for sd2 without it, ComfyUI's heuristic (std of one
    norm bias > 0.09 means v-prediction, i.e. the 768-px SD2.x models); else epsilon.

    Args:
        path: the `.safetensors` checkpoint.

    Raises:
        SamefaceError: unreadable file, or not a full SD1/SD2/SDXL checkpoint.
    """
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())

            def shape(key: str) -> list[int] | None:
                return list(f.get_slice(key).get_shape()) if key in keys else None

            conv_in = shape(_CONV_IN)
            family = _family_from_keys(path, keys, shape)
            prediction = "epsilon"
            if "v_pred" in keys:
                prediction = "v_prediction"
            elif family == "sd2" and _SD2_V_PROBE in keys:
                probe = f.get_tensor(_SD2_V_PROBE).float()
                if probe.numel() > 1 and probe.std(unbiased=False).item() > 0.09:
                    prediction = "v_prediction"
    except SamefaceError:
        raise
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise SamefaceError(f"{path} could not be read as a safetensors checkpoint: {e}") from e
    if conv_in is not None and conv_in[1] != 4:
        raise SamefaceError(
            f"{path}: the UNet takes {conv_in[1]} input channels (an inpainting or depth model); "
            "sameface supports text-to-image SD1/SD2/SDXL checkpoints only."
        )
    resolution = NATIVE_RESOLUTION[family]
    if family == "sd2" and prediction == "v_prediction":
        resolution = 768
    return FamilyInfo(family, prediction, resolution, _base_repo(family, prediction))


def _family_from_keys(path: Path, keys: set[str], shape) -> str:
    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if has(_SDXL_TE2):
        return "sdxl"
    if has(_SDXL_REFINER_TE):
        raise SamefaceError(f"{path} is an SDXL refiner; sameface needs an SDXL base model.")
    if has(_SD2_TE):
        return "sd2"
    if has(_SD1_TE):
        return "sd1"
    if has(_UNET):
        # No text encoder in the file: the cross-attention key width still names the family.
        for key in keys:
            if key.startswith(_UNET) and key.endswith("attn2.to_k.weight"):
                family = _CROSS_DIM_FAMILY.get((shape(key) or [0, 0])[1])
                if family:
                    return family
    if any(k.startswith(("lora_unet_", "lora_te")) or ".lora_" in k for k in keys):
        raise SamefaceError(f"{path} is a LoRA file, not a base model checkpoint.")
    if has("down_blocks.") or has("text_model.") or has("encoder.down_blocks."):
        raise SamefaceError(
            f"{path} holds a single diffusers component (UNet, VAE or text encoder), not a full "
            "checkpoint; pass the diffusers folder it belongs to."
        )
    raise SamefaceError(
        f"{path}: unknown checkpoint layout (no SD1/SD2/SDXL text encoder or UNet keys); "
        "sameface supports Stable Diffusion 1.x, 2.x and XL."
    )


def detect_family(source: ResolvedModel | str | os.PathLike[str]) -> FamilyInfo:
    """Detect the family of a resolved model, a diffusers folder or a `.safetensors` file.

    Args:
        source: a `ResolvedModel`, or a local path.

    Raises:
        SamefaceError: unknown or unsupported model.
    """
    path = source.path if isinstance(source, ResolvedModel) else Path(source)
    if path.is_file():
        return family_from_single_file(path)
    return family_from_diffusers_folder(path)
