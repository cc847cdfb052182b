"""The released PuLID v1.1 weights for SDXL (`pulid_v1.1.safetensors`) as a sameface PuLID
folder: the same functions under our names.

The release holds two groups (ToTheBeginning/PuLID, `pipeline_v1_1.py`):

    id_adapter.*                        the IDFormer (172 tensors): `latents` (1, 32, 1024),
                                        `proj_out` (1024, 2048) used as `x @ proj_out` (no bias,
                                        no output norm), `layers.{j}.{0: attention, 1: FF}`,
                                        `mapping_{i}` (5 ViT maps), `id_embedding_mapping`
    id_adapter_attn_layers.{i}.id_to_{k,v}.weight
                                        (hidden, 2048), `i` = the position in the UNet's
                                        `attn_processors` (attn1 and attn2 counted; only the
                                        70 cross-attention positions, the odd ones, hold weights)

Ours: `IDFormer` (`queries`, `proj_out` a Linear without bias, no `norm_out`,
`stages.{s}.{b}.attn|ff`, `vit_maps.{i}`, `id_mlp`) and `IDAdapter`
(`layers.<module name, . -> _>.to_{k,v}_id.weight`). Every official tensor is used exactly once.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..errors import ArtifactError
from .attn_layers import processor_layer, unet_skeleton

ENCODER_PREFIX = "id_adapter."
ATTENTION_PREFIX = "id_adapter_attn_layers."
SDXL_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
VISION = "EVA02-CLIP-L-14-336"
"""The vision tower the release conditions on (shapes as OpenAI's ViT-L/14-336: never swap)."""
_ATTN_KEY = re.compile(r"^(\d+)\.id_to_([kv])\.weight$")


def official_encoder_config() -> Any:
    """Our `IDEncoderConfig` of the released IDFormer (antelopev2 512 + CLIP 768 in, 32 tokens
    of 2048 out; no output bias, no output norm)."""
    from ..adapters.id_encoder_config import IDEncoderConfig

    return IDEncoderConfig(
        kind="idformer", id_dim=512, clip_dim=768, vit_dim=1024, num_vit_layers=5,
        output_dim=2048, proj_bias=False, out_norm=False,
    )  # fmt: skip


def map_encoder(official: dict[str, Any], depth_per_layer: int = 2) -> dict[str, Any]:
    """`id_adapter.*` (prefix removed) -> our IDFormer state dict.

    Raises:
        ArtifactError: a key that is not the released IDFormer's.
    """
    out: dict[str, Any] = {}
    for key, value in official.items():
        ours = _encoder_key(key, depth_per_layer)
        if ours is None:
            raise ArtifactError(f"{ENCODER_PREFIX}{key}: not a key of PuLID v1.1's IDFormer")
        out[ours] = value.T.contiguous() if key == "proj_out" else value
    return out


def _encoder_key(key: str, depth: int) -> str | None:
    if key == "latents":
        return "queries"
    if key == "proj_out":
        return "proj_out.weight"
    head, _, rest = key.partition(".")
    if head == "id_embedding_mapping":
        return f"id_mlp.{rest}"
    if head.startswith("mapping_") and head[len("mapping_") :].isdigit():
        return f"vit_maps.{head[len('mapping_') :]}.{rest}"
    m = re.fullmatch(r"layers\.(\d+)\.([01])\.(.+)", key)
    if m is None:
        return None
    stage, block = divmod(int(m.group(1)), depth)
    if m.group(2) == "1":
        return f"stages.{stage}.{block}.ff.{m.group(3)}"
    sub = {"norm1": "norm_context", "norm2": "norm_latents"}
    name, _, param = m.group(3).partition(".")
    return f"stages.{stage}.{block}.attn.{sub.get(name, name)}.{param}"


def map_adapter(official: dict[str, Any], processor_names: list[str]) -> dict[str, Any]:
    """`id_adapter_attn_layers.*` (prefix removed) -> our IDAdapter state dict.

    Args:
        processor_names: `list(unet.attn_processors)` of the UNet the weights are for (the
            release numbers its layers by this order).

    Raises:
        ArtifactError: a key that is not an ID projection, an index outside the UNet, or one
            that is not a cross-attention layer.
    """
    out: dict[str, Any] = {}
    for key, value in official.items():
        m = _ATTN_KEY.match(key)
        if m is None:
            raise ArtifactError(f"{ATTENTION_PREFIX}{key}: not an ID projection (id_to_k/v)")
        name = processor_layer(int(m.group(1)), processor_names, ATTENTION_PREFIX + key)
        if not name.endswith("attn2"):
            raise ArtifactError(
                f"{ATTENTION_PREFIX}{key}: layer {m.group(1)} ({name}) is not cross-attention"
            )
        out[f"layers.{name.replace('.', '_')}.to_{m.group(2)}_id.weight"] = value
    return out


def read_release(path: str | os.PathLike) -> dict[str, Any]:
    """The tensors of a released PuLID file, checked; v1's `.bin` is refused with the reason."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file")
    if path.suffix != ".safetensors":
        raise ArtifactError(
            f"{path}: PuLID v1 (`pulid_v1.bin`: an IDEncoder of 5 MLP tokens plus a CLS and a "
            "patch map per ViT layer) has no sameface encoder kind yet; import "
            "pulid_v1.1.safetensors"
        )
    from ..tensorfile import read_safetensors

    tensors, _ = read_safetensors(path)
    other = sorted(k for k in tensors if not k.startswith((ENCODER_PREFIX, ATTENTION_PREFIX)))
    if other:
        raise ArtifactError(f"{path}: not a PuLID v1.1 file (e.g. key {other[0]!r})")
    if not any(k.startswith(ENCODER_PREFIX) for k in tensors):
        raise ArtifactError(f"{path}: not a PuLID v1.1 file (no {ENCODER_PREFIX}* tensors)")
    return tensors


def import_pulid(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    base: str = SDXL_BASE,
    unet: Any = None,
    config: Any = None,
    overwrite: bool = False,
) -> Path:
    """Write a released PuLID v1.1 file as a sameface PuLID folder (`pulid.json`,
    `encoder.safetensors`, `adapter.safetensors`), float32.

    Args:
        path: `pulid_v1.1.safetensors`.
        out: the folder to write.
        base: the base model the folder records (any SDXL; default SDXL base 1.0).
        unet: the UNet whose layers the weights are for (default: SDXL's architecture, built
            without weights).
        config: the encoder's `IDEncoderConfig` (default: the release's).
        overwrite: replace a PuLID folder already at `out`.

    Raises:
        ArtifactError: not the release, a tensor left over or missing, or shapes that do not
            fit (every official tensor must be used exactly once).
        OutputError: `out` holds a PuLID folder already (without `overwrite`).
    """
    import uuid

    from ..errors import OutputError
    from ..fileio import write_json_atomic
    from ..methods.pulid.config import PuLIDConfig
    from ..methods.pulid.model import ADAPTER_FILE, ENCODER_FILE, FORMAT, FORMAT_VERSION, META_FILE
    from ..tensorfile import save_safetensors

    if (Path(out) / META_FILE).exists() and not overwrite:
        raise OutputError(f"{out} holds a PuLID folder already; pass --force to replace it")
    tensors = {k: v.float() for k, v in read_release(path).items()}
    unet = unet if unet is not None else sdxl_unet_skeleton()
    config = config or official_encoder_config()
    try:
        encoder, adapter = modules_from_release(tensors, unet, config)
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None

    out = Path(out)
    save_id = uuid.uuid4().hex
    tag = {"save_id": save_id, "method": "pulid"}
    adapter.save(out / ADAPTER_FILE, metadata=tag)
    save_safetensors(
        {k: v.contiguous() for k, v in encoder.state_dict().items()},
        out / ENCODER_FILE,
        {**tag, "format": FORMAT + ".encoder"},
    )
    # The release's demo settings: ID scale 0.8, 20 zero tokens, ortho v2.
    pulid = PuLIDConfig(
        recognizer="insightface", clip_vision=VISION, num_zero=20, ortho="v2", raw_id_embedding=True
    )
    write_json_atomic(
        out / META_FILE,
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "method": "pulid",
            "family": "sdxl",
            "base": base,
            "cross_attention_dim": int(unet.config.cross_attention_dim),
            "recognizer": {"name": "insightface", "dim": 512, "pack": "antelopev2",
                           "embedding": "raw (not normalised)"},
            "clip_vision": {"name": VISION, "clip_dim": 768, "vit_dim": 1024, "seq_len": 577,
                            "exact": True},
            "vit_layers": list(pulid.vit_layers),
            "encoder": config.to_dict(),
            "adapter_layers": list(adapter.layer_names),
            "config": pulid.to_dict(),
            "imported_from": {"file": Path(path).name, "release": "PuLID v1.1 (ToTheBeginning/PuLID)"},
            "license": "pulid",  # sameface.licenses.KNOWN: the release's terms, shown where it runs
            "save_id": save_id,
        },
    )  # fmt: skip
    return out


def modules_from_release(tensors: dict[str, Any], unet: Any, config: Any) -> tuple[Any, Any]:
    """Our IDFormer and IDAdapter holding a release's tensors (the same objects, no copies).

    Both are built without memory and load strictly: every official tensor is used once, with
    the shape our modules of this UNet and encoder config have.

    Raises:
        ArtifactError: a key of neither group, a tensor left over or missing, other shapes.
    """
    import torch

    from ..adapters.id_attention import IDAdapter
    from ..adapters.id_encoder import build_id_encoder

    n, m = len(ENCODER_PREFIX), len(ATTENTION_PREFIX)
    other = sorted(k for k in tensors if not k.startswith((ENCODER_PREFIX, ATTENTION_PREFIX)))
    if other:
        raise ArtifactError(f"not a PuLID v1.1 tensor: {other[0]!r}")
    enc = map_encoder(
        {k[n:]: v for k, v in tensors.items() if k.startswith(ENCODER_PREFIX)},
        config.depth_per_layer,
    )
    ids = {k[m:]: v for k, v in tensors.items() if k.startswith(ATTENTION_PREFIX)}
    adapter_state = map_adapter(ids, list(unet.attn_processors))
    with torch.device("meta"):
        encoder = build_id_encoder(config)
    try:
        result = encoder.load_state_dict(enc, strict=False, assign=True)
    except RuntimeError as e:  # shapes: the first mismatch, in torch's words
        lines = [ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln]
        raise ArtifactError(f"does not fit the IDFormer: {(lines or [str(e)])[0]}") from None
    if result.missing_keys or result.unexpected_keys:
        parts = (
            [f"{len(result.missing_keys)} missing (e.g. {result.missing_keys[0]})"]
            if (result.missing_keys)
            else []
        )
        if result.unexpected_keys:
            parts.append(
                f"{len(result.unexpected_keys)} left over (e.g. {result.unexpected_keys[0]})"
            )
        raise ArtifactError("does not fit the IDFormer: " + "; ".join(parts))
    adapter = IDAdapter(unet, config.output_dim, init="random", freeze_base=False)
    adapter.load_state_dict(adapter_state, assign=True)
    return encoder, adapter


def sdxl_unet_skeleton() -> Any:
    """SDXL's UNet architecture with its parameters on the meta device (no memory, no weights)."""
    return unet_skeleton("sdxl")
