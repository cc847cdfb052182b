"""Personalise with FeedFace: encode the reference faces with a trained FeedFace model.

FeedFace is tuning-free (seed 002): after its one-time training (`train.py`) a new person needs
only a forward pass of the face encoder. Each reference photo's face crop (the face box
expanded `face_expand`× — 1.1 as in the paper — and squared, `Identity.face_squares`) becomes CLIP features and then face tokens; several photos are concatenated
along the sequence (B.3.1). The tokens are cached in the artifact `FeedFacePipeline` reads.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import __version__
from ...errors import SamefaceError
from ...identity import check_destination
from ...models.clip_vision import ClipVision
from ..encoded import save_encoded
from ..trained import recorded_path
from .config import UNTRAINED, FeedFaceConfig
from .model import FeedFaceModel, read_meta

TOKENS_FILE = "face_tokens.safetensors"
UNTRAINED_DIR = "untrained-feedface"


def personalize(
    identity: Any,
    base: Any,
    config: FeedFaceConfig | None = None,
    out_dir: str | Path = "out",
    *,
    base_spec: str | None = None,
    bank: Any = None,
    resume: bool = True,
    progress: bool = True,
    vision: ClipVision | None = None,
) -> Path:
    """Encode `identity`'s reference faces and write the artifact folder.

    Args:
        identity: a `sameface.Identity` (its square crops are the reference faces).
        base: the `BaseModel` FeedFace was trained for (left as it was given).
        config: settings; read here: `adapter` (the trained folder, or "untrained" for a fresh
            model: tests and smoke runs), `max_references`, `face_scale`, `guidance_scale`,
            `face_guidance_scale`.
        out_dir: artifact folder.
        base_spec: how to load `base` again (recorded so `generate` can find it).
        bank, resume, progress: unused (encoding is one forward pass).
        vision: a loaded `ClipVision` to reuse (default: the one the trained folder records).

    Raises:
        SamefaceError: no trained FeedFace folder given.
        ArtifactError: the folder is missing or made for another base model.
    """
    del bank, resume, progress
    cfg = config or FeedFaceConfig()
    out = Path(out_dir)
    check_destination(out / "identity", overwrite=True)  # fail now, not after loading models
    if cfg.adapter is None:
        raise SamefaceError(
            "FeedFace encodes with a trained FeedFace model: --adapter FOLDER (the folder "
            "`sameface train feedface` wrote)"
        )
    if cfg.adapter == UNTRAINED:
        vision = vision or ClipVision.load(cfg.clip_vision, device=base.device)
        model = FeedFaceModel(base, cfg, vision=vision)
        folder = model.save(out / UNTRAINED_DIR, extra={"untrained": True}).resolve()
    else:
        folder = Path(cfg.adapter).resolve()
        meta = read_meta(folder)
        if vision is None:
            spec = (meta.get("clip_vision") or {}).get("name") or meta["config"]["clip_vision"]
            vision = ClipVision.load(recorded_path(folder, spec), device=base.device)
        model = FeedFaceModel.load(folder, base, vision)
    with model:  # the control blocks come off the UNet on the way out
        faces = face_tensor(identity.face_squares(model.config.face_expand)[: cfg.max_references])
        with torch.no_grad():
            cond = model.tokens(model.features(faces.to(base.device)))
        saved = read_meta(folder)
    meta = {
        "method": "feedface",
        "format_version": 1,
        "sameface_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "adapter": str(folder),
        "adapter_save_id": saved.get("save_id"),
        "untrained": bool(saved.get("untrained", False)),
        "base": base_spec or base.source,
        "family": base.family,
        "prediction_type": base.prediction_type,
        "feature_dim": model.feature_dim,
        "placeholder": "<id>",
        "references": int(faces.shape[1]),
        "num_tokens": int(cond.shape[1]),
        "face_scale": cfg.face_scale,
        "guidance_scale": cfg.guidance_scale,
        "face_guidance_scale": cfg.face_guidance_scale,
        "tokens_file": TOKENS_FILE,
        "identity": {
            "photos": identity.num_photos,
            "recognizer": identity.meta.get("recognizer", {}),
        },
    }
    identity.save(out / "identity", overwrite=True, save_crops=False)
    save_encoded(out, TOKENS_FILE, {"cond": cond}, meta)
    return out


def face_tensor(squares: np.ndarray) -> torch.Tensor:
    """(R, S, S, 3) uint8 face crops -> (1, R, 3, S, S) float RGB in [0, 1]."""
    if squares.ndim != 4 or squares.shape[0] < 1:
        raise SamefaceError("FeedFace needs at least one reference face crop")
    x = torch.from_numpy(np.ascontiguousarray(squares)).permute(0, 3, 1, 2).float() / 255.0
    return x[None]
