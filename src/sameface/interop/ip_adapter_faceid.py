"""The released IP-Adapter-FaceID weights (h94/IP-Adapter-FaceID: `ip-adapter-faceid_sd15.bin`,
`ip-adapter-faceid_sdxl.bin`) as a sameface `ip-adapter-faceid` folder.

The release is a pickled dict `{"image_proj": {...}, "ip_adapter": {...}}` (read here with
`torch.load(weights_only=True)`: tensors only, no code runs) or the same keys flattened with
those prefixes in a safetensors file. The folder keeps the tensors in that layout
(`methods.ip_adapter_faceid.layout`), checked key for key and shape for shape against the
base family's real UNet (built without memory): every tensor is used exactly once.

FaceID-Plus / PlusV2 (CLIP image features through a perceiver) have no sameface encoder kind
and are refused with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ArtifactError
from .attn_layers import unet_skeleton

SD15_BASE = "runwayml/stable-diffusion-v1-5"
SDXL_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
_FAMILIES = {768: ("sd1", SD15_BASE), 1024: ("sd2", None), 2048: ("sdxl", SDXL_BASE)}


def read_release(path: str | os.PathLike) -> dict[str, Any]:
    """The release's tensors, flattened to `image_proj.*` / `ip_adapter.*` keys.

    Raises:
        ArtifactError: no such file, unreadable, or not IP-Adapter-FaceID.
    """
    from ..methods.ip_adapter_faceid.layout import ATTN_PREFIX, PROJ_PREFIX

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from ..tensorfile import read_safetensors

        tensors, _ = read_safetensors(path)
    else:
        import torch

        from ..tensorfile import load_torch_weights

        raw = load_torch_weights(path)  # weights_only: tensors only, no code from the file runs
        if not isinstance(raw, Mapping) or not {"image_proj", "ip_adapter"} <= set(raw):
            raise ArtifactError(f"{path}: not IP-Adapter-FaceID (no image_proj / ip_adapter)")
        groups = [raw[g] for g in ("image_proj", "ip_adapter")]
        if not all(isinstance(g, Mapping) for g in groups):
            raise ArtifactError(f"{path}: not IP-Adapter-FaceID (image_proj / ip_adapter)")
        tensors = {
            f"{name}.{k}": v
            for name, g in zip(("image_proj", "ip_adapter"), groups, strict=True)
            for k, v in g.items()
        }
        if not all(torch.is_tensor(v) for v in tensors.values()):
            raise ArtifactError(f"{path}: not IP-Adapter-FaceID (values that are not tensors)")
    other = sorted(k for k in tensors if not k.startswith((PROJ_PREFIX, ATTN_PREFIX)))
    if other:
        raise ArtifactError(f"{path}: not IP-Adapter-FaceID (e.g. key {other[0]!r})")
    if any("perceiver_resampler" in k for k in tensors):
        raise ArtifactError(
            f"{path}: FaceID-Plus (CLIP image features through a perceiver) has no sameface "
            "encoder kind; import ip-adapter-faceid_sd15.bin or ip-adapter-faceid_sdxl.bin"
        )
    needed = ("proj.0.weight", "proj.2.weight", "norm.weight")
    if any(f"{PROJ_PREFIX}{k}" not in tensors for k in needed):
        raise ArtifactError(f"{path}: not IP-Adapter-FaceID (no FaceID projection)")
    return tensors


def release_config(tensors: Mapping[str, Any], processor_names: list[str]) -> Any:
    """Our `IPAdapterFaceIDConfig` for a release's tensors: its token count, hidden width,
    LoRA rank and targets, and the release's recogniser (buffalo_l, 512-d)."""
    from ..methods.ip_adapter_faceid.config import IPAdapterFaceIDConfig
    from ..methods.ip_adapter_faceid.layout import PROJ_PREFIX, lora_rank, lora_targets

    norm, first, second = (
        tensors[f"{PROJ_PREFIX}{k}"] for k in ("norm.weight", "proj.0.weight", "proj.2.weight")
    )
    if norm.ndim != 1 or first.ndim != 2 or second.ndim != 2:
        raise ArtifactError("not the FaceID projection (norm, proj.0, proj.2 of other ranks)")
    cross = int(norm.shape[0])
    hidden, id_dim = (int(n) for n in first.shape)
    if id_dim != 512:
        raise ArtifactError(f"the projection reads {id_dim}-d embeddings; the release's are 512-d")
    tokens, rest = divmod(int(second.shape[0]), cross)
    if tokens < 1 or rest:
        raise ArtifactError(
            f"proj.2 makes {second.shape[0]} values, not whole tokens of {cross}: not the release"
        )
    return IPAdapterFaceIDConfig(
        recognizer="insightface",
        num_tokens=tokens,
        mlp_dim=hidden,
        lora_rank=lora_rank(tensors) or 0,
        lora_targets=lora_targets(tensors, processor_names) or "attention",
    )


def import_ip_adapter_faceid(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    base: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a released IP-Adapter-FaceID file as a sameface folder (float32).

    Args:
        path: `ip-adapter-faceid_sd15.bin` / `_sdxl.bin` (or the same keys in safetensors).
        out: the folder to write.
        base: the base model the folder records (default: SD1.5 or SDXL base 1.0, as the
            tokens' width says).
        overwrite: replace a folder already at `out`.

    Raises:
        ArtifactError: not the release, a tensor left over or missing, or shapes that do not
            fit the family's UNet.
        OutputError: `out` holds such a folder already (without `overwrite`).
    """
    from ..errors import OutputError
    from ..methods.ip_adapter_faceid.model import META_FILE, WEIGHTS_FILE
    from ..methods.trained import save_trained

    if (Path(out) / META_FILE).exists() and not overwrite:
        raise OutputError(f"{out} holds an IP-Adapter-FaceID folder already; pass --force")
    tensors = {k: v.float() for k, v in read_release(path).items()}
    cross = int(tensors["image_proj.norm.weight"].shape[0])
    if cross not in _FAMILIES:
        raise ArtifactError(f"{path}: {cross}-d tokens fit no SD1.x / SD2.x / SDXL UNet")
    family, default_base = _FAMILIES[cross]
    if base is None and default_base is None:
        raise ArtifactError(f"{path}: an SD2.x adapter; name its base model with --base")
    unet = unet_skeleton(family)
    try:
        config = release_config(tensors, list(unet.attn_processors))
        check_release(tensors, unet, config)
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None
    from ..methods.ip_adapter_faceid.model import FORMAT, FORMAT_VERSION, encoder_config

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": "ip-adapter-faceid",
        "family": family,
        "base": base or default_base,
        "cross_attention_dim": cross,
        "recognizer": {"name": "insightface", "dim": 512, "pack": "buffalo_l",
                       "embedding": "normed_embedding"},
        "encoder": encoder_config(config, 512, cross).to_dict(),
        "config": config.to_dict(),
        "imported_from": {"file": Path(path).name, "release": "IP-Adapter-FaceID (h94)"},
        "license": "ip-adapter-faceid",  # sameface.licenses.KNOWN: shown where it runs
    }  # fmt: skip
    return save_trained(out, WEIGHTS_FILE, META_FILE, tensors, meta)


def check_release(tensors: Mapping[str, Any], unet: Any, config: Any) -> None:
    """Every tensor maps to one of ours with the shape this UNet and config give it, and none
    of ours is missing.

    Raises:
        ArtifactError: a tensor left over, missing, or of another shape.
    """
    from ..methods.ip_adapter_faceid.layout import from_release
    from ..methods.ip_adapter_faceid.model import encoder_config

    encoder, adapter, lora = from_release(tensors, list(unet.attn_processors))
    cross = int(unet.config.cross_attention_dim)
    want = dict(_encoder_shapes(encoder_config(config, 512, cross)))
    want.update(_adapter_shapes(unet, cross))
    if config.lora_rank:
        want.update(_lora_shapes(unet, config.lora_rank, config.lora_targets))
    from ..tensorfile import state_mismatch

    problem = state_mismatch(want, {**encoder, **adapter, **lora})
    if problem:
        raise ArtifactError("does not fit the family's UNet: " + problem)


def _encoder_shapes(cfg: Any) -> dict[str, tuple[int, ...]]:
    import torch

    from ..adapters.id_encoder import FaceIDProjection

    with torch.device("meta"):
        module = FaceIDProjection(cfg)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _adapter_shapes(unet: Any, cross: int) -> dict[str, tuple[int, ...]]:
    from ..adapters.id_attention import IDAdapter

    adapter = IDAdapter(unet, cross, init="random", freeze_base=False)
    return {k: tuple(v.shape) for k, v in adapter.state_dict().items()}


def _lora_shapes(unet: Any, rank: int, targets: str) -> dict[str, tuple[int, ...]]:
    from ..adapters.lora import PREFIX, TARGET_SETS

    out = {}
    for name, module in unet.named_modules():
        if any(name.endswith("." + t) for t in TARGET_SETS[targets]):
            out[f"{PREFIX}{name}.lora_A.weight"] = (rank, module.in_features)
            out[f"{PREFIX}{name}.lora_B.weight"] = (module.out_features, rank)
    return out


__all__ = ["check_release", "import_ip_adapter_faceid", "read_release", "release_config"]
