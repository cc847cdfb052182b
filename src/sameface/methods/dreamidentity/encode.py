"""Personalise with DreamIdentity: one forward pass of the trained M² ID encoder.

The identity's aligned faces go through the backbone (features averaged over the photos),
the projections give K pseudo-words per text encoder, and they are saved **as a
textual-inversion embeddings file** (`sameface.methods.words`): the identity loads in plain
diffusers with `load_textual_inversion`, no sameface needed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import __version__
from ...errors import ArtifactError, SamefaceError
from ...identity import check_destination
from ..trained import recorded_path
from ..words import EMBEDS_FILE, save_embeddings
from .backbones import FaceBackbone, load_backbone
from .config import UNTRAINED, DreamIdentityConfig
from .model import M2Encoder, read_meta, trained_config

UNTRAINED_DIR = "untrained-dreamidentity"


def load_encoder_backbone(
    cfg: DreamIdentityConfig, folder: Path | None, device: Any
) -> FaceBackbone:
    """The backbone `cfg` names; a relative path ("./…", "../…", also in "world:../") is read
    from the trained folder (a world's encoder records its world as "world:..")."""
    spec = cfg.backbone
    if folder is not None:
        kind, sep, path = spec.partition(":")
        spec = (
            f"{kind}:{recorded_path(folder, path)}"
            if kind == "world" and sep
            else recorded_path(folder, spec)
        )
    return load_backbone(spec, layers=cfg.feature_layers, heads=cfg.vit_heads, device=device)


def personalize(
    identity: Any,
    base: Any,
    config: DreamIdentityConfig | None = None,
    out_dir: str | Path = "out",
    *,
    base_spec: str | None = None,
    bank: Any = None,
    resume: bool = True,
    progress: bool = True,
    backbone: FaceBackbone | None = None,
) -> Path:
    """Encode `identity` into K pseudo-words and write the artifact folder.

    Args:
        identity: a `sameface.Identity` (its aligned faces are the encoder's input).
        base: the `BaseModel` the encoder was trained for (left as it was given).
        config: read here: `adapter` (the trained folder, or "untrained"), `max_references`,
            `guidance_scale`, `num_inference_steps`.
        out_dir: artifact folder.
        base_spec: how to load `base` again (recorded so `generate` can find it).
        bank, resume, progress: unused (encoding is one forward pass).
        backbone: a loaded backbone to reuse (default: the one the trained folder names).

    Raises:
        SamefaceError: no trained encoder given.
        ArtifactError: the folder is missing or made for another base model or backbone.
    """
    del bank, resume, progress
    cfg = config or DreamIdentityConfig()
    out = Path(out_dir)
    check_destination(out / "identity", overwrite=True)  # fail now, not after loading models
    if cfg.adapter is None:
        raise SamefaceError(
            "DreamIdentity encodes with a trained M² ID encoder: --adapter FOLDER ("
            "the folder `sameface train dreamidentity` wrote)"
        )
    start = time.perf_counter()
    if cfg.adapter == UNTRAINED:
        backbone = backbone or load_encoder_backbone(cfg, None, base.device)
        model = M2Encoder(base, cfg, backbone=backbone)
        folder = model.save(out / UNTRAINED_DIR, extra={"untrained": True}).resolve()
    else:
        folder = Path(cfg.adapter).resolve()
        try:
            trained = trained_config(read_meta(folder))
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{folder}: corrupt DreamIdentity settings ({e})") from None
        backbone = backbone or load_encoder_backbone(trained, folder, base.device)
        model = M2Encoder.load(folder, base, backbone)
    words = encode_identity(model, identity, cfg.max_references)
    saved = read_meta(folder)
    meta = {
        "method": "dreamidentity",
        "format_version": 1,
        "sameface_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "adapter": str(folder),
        "adapter_save_id": saved.get("save_id"),
        "untrained": bool(saved.get("untrained", False)),
        "base": base_spec or base.source,
        "family": base.family,
        "prediction_type": base.prediction_type,
        "placeholder": model.config.placeholder,
        "num_tokens": model.k,
        "references": min(identity.num_photos, cfg.max_references),
        "guidance_scale": cfg.guidance_scale,
        "num_inference_steps": cfg.num_inference_steps,
        "backbone": model.backbone.describe(),
        "encode_seconds": round(time.perf_counter() - start, 3),
        "identity": {
            "photos": identity.num_photos,
            "recognizer": identity.meta.get("recognizer", {}),
        },
    }
    identity.save(out / "identity", overwrite=True, save_crops=False)
    vectors = [w[0] for w in words]
    save_embeddings(out, base.family, model.config.placeholder, vectors, meta)
    return out


def encode_identity(model: M2Encoder, identity: Any, max_references: int) -> list[torch.Tensor]:
    """The identity's pseudo-words, (1, K, D_e) per text encoder."""
    faces = aligned_tensor(identity.aligned[:max_references]).to(model.base.device)
    with torch.no_grad():
        return [w.detach() for w in model.words(model.features(faces))]


def aligned_tensor(aligned: np.ndarray) -> torch.Tensor:
    """(R, 112, 112, 3) uint8 aligned faces -> (1, R, 3, 112, 112) float, values 0..255."""
    if aligned.ndim != 4 or aligned.shape[0] < 1 or aligned.shape[1:] != (112, 112, 3):
        raise SamefaceError("DreamIdentity needs at least one aligned 112×112 reference face")
    return torch.from_numpy(np.ascontiguousarray(aligned)).permute(0, 3, 1, 2).float()[None]


__all__ = ["EMBEDS_FILE", "aligned_tensor", "encode_identity", "personalize"]
