"""IP-Adapter-FaceID's weights in the release's layout (`ip-adapter-faceid_sd15.bin` /
`_sdxl.bin`, h94/IP-Adapter-FaceID), the layout our trained folders also keep:

    image_proj.proj.0.{weight,bias}, image_proj.proj.2.{weight,bias}, image_proj.norm.*
                                        the projection (`FaceIDProjection`: the same names)
    ip_adapter.{i}.to_{k,v}_ip.weight   the ID key/value of cross-attention layer i
    ip_adapter.{i}.to_{q,k,v,out}_lora.{down,up}.weight
                                        the LoRA of attention layer i (down = A, up = B; no
                                        alpha, so ΔW = up·down, peft's scale α/r = 1)

`i` is the layer's position in `unet.attn_processors` (attn1 and attn2 counted,
`interop.attn_layers`). A file in this layout loads in diffusers' `load_ip_adapter` (the LoRA
included) and in the release's own `IPAdapterFaceID`; every tensor maps to exactly one of
ours and back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import ArtifactError
from ...interop.attn_layers import processor_layer

PROJ_PREFIX = "image_proj."
ATTN_PREFIX = "ip_adapter."
_LORA_PARTS = {"q": "to_q", "k": "to_k", "v": "to_v", "out": "to_out.0"}
_KEY = re.compile(r"^(\d+)\.(?:to_([kv])_ip|to_(q|k|v|out)_lora\.(down|up))\.weight$")
_LORA_KEY = re.compile(r"^unet\.(.+)\.(to_q|to_k|to_v|to_out\.0)\.lora_([AB])\.weight$")


def to_release(
    encoder: Mapping[str, Any],
    adapter: Mapping[str, Any],
    lora: Mapping[str, Any],
    processor_names: Sequence[str],
) -> dict[str, Any]:
    """Our state dicts -> the release's flat layout.

    Args:
        encoder: `FaceIDProjection.state_dict()`.
        adapter: `IDAdapter.state_dict()` (`layers.<name with _>.to_{k,v}_id.weight`).
        lora: `UNetLora.state_dict_diffusers()` (`unet.<module>.lora_{A,B}.weight`).
        processor_names: `list(unet.attn_processors)`.
    """
    index = {n.removesuffix(".processor"): i for i, n in enumerate(processor_names)}
    by_key = {name.replace(".", "_"): i for name, i in index.items()}
    out = {PROJ_PREFIX + k: v for k, v in encoder.items()}
    for key, value in adapter.items():
        layer, proj, _ = key.removeprefix("layers.").split(".")  # <layer>.to_k_id.weight
        out[f"{ATTN_PREFIX}{by_key[layer]}.to_{proj[3]}_ip.weight"] = value
    parts = {v: k for k, v in _LORA_PARTS.items()}
    for key, value in lora.items():
        m = _LORA_KEY.match(key)
        if m is None:
            raise ArtifactError(f"{key}: not a LoRA tensor of an attention projection")
        side = "down" if m.group(3) == "A" else "up"
        out[f"{ATTN_PREFIX}{index[m.group(1)]}.to_{parts[m.group(2)]}_lora.{side}.weight"] = value
    return out


def from_release(
    tensors: Mapping[str, Any], processor_names: Sequence[str]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The release's flat layout -> (encoder, adapter, LoRA in diffusers' layout) state dicts.

    Raises:
        ArtifactError: a key of neither group, an index outside the UNet, an ID projection on
            a layer that is not cross-attention.
    """
    encoder: dict[str, Any] = {}
    adapter: dict[str, Any] = {}
    lora: dict[str, Any] = {}
    for key, value in tensors.items():
        if key.startswith(PROJ_PREFIX):
            encoder[key[len(PROJ_PREFIX) :]] = value
            continue
        m = _KEY.match(key[len(ATTN_PREFIX) :]) if key.startswith(ATTN_PREFIX) else None
        if m is None:
            raise ArtifactError(f"{key}: not a tensor of IP-Adapter-FaceID")
        name = processor_layer(int(m.group(1)), processor_names, key)
        if m.group(2):
            if not name.endswith("attn2"):
                raise ArtifactError(f"{key}: layer {m.group(1)} ({name}) is not cross-attention")
            adapter[f"layers.{name.replace('.', '_')}.to_{m.group(2)}_id.weight"] = value
        else:
            side = "A" if m.group(4) == "down" else "B"
            lora[f"unet.{name}.{_LORA_PARTS[m.group(3)]}.lora_{side}.weight"] = value
    return encoder, adapter, lora


def lora_rank(tensors: Mapping[str, Any]) -> int | None:
    """The LoRA rank of a release-layout file (None: it has no LoRA)."""
    for key, value in tensors.items():
        if key.endswith("_lora.down.weight"):
            if value.ndim != 2:
                raise ArtifactError(f"{key}: shape {tuple(value.shape)}, not a LoRA matrix")
            return int(value.shape[0])
    return None


def lora_targets(tensors: Mapping[str, Any], processor_names: Sequence[str]) -> str | None:
    """ "attention" when self-attention layers carry a LoRA, "cross-attention" when only
    cross-attention layers do, None without a LoRA."""
    layers = {
        processor_layer(int(k.split(".")[1]), processor_names, k)
        for k in tensors
        if k.startswith(ATTN_PREFIX)
        and k.endswith("_lora.down.weight")
        and k.split(".")[1].isdigit()
    }
    if not layers:
        return None
    return "attention" if any(n.endswith("attn1") for n in layers) else "cross-attention"


__all__ = ["ATTN_PREFIX", "PROJ_PREFIX", "from_release", "lora_rank", "lora_targets", "to_release"]
