"""Personalise with IP-Adapter-FaceID: the identity's face embeddings through the trained (or
imported) projection, once; no optimisation. Writes the artifact `IPAdapterFaceIDPipeline`
reads: the ID tokens and the unconditional ones (the projection of a zero embedding).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ... import __version__
from ...errors import SamefaceError
from ...identity import check_destination
from ..encoded import save_encoded
from .config import UNTRAINED, IPAdapterFaceIDConfig
from .model import METHOD, FaceIDModel, read_meta

TOKENS_FILE = "id_tokens.safetensors"
UNTRAINED_DIR = "untrained-ip-adapter-faceid"


def personalize(
    identity: Any,
    base: Any,
    config: IPAdapterFaceIDConfig | None = None,
    out_dir: str | Path = "out",
    *,
    base_spec: str | None = None,
    bank: Any = None,
    resume: bool = True,
    progress: bool = True,
) -> Path:
    """Encode `identity` and write the artifact folder.

    Args:
        identity: a `sameface.Identity` built with the model's recogniser.
        base: the `BaseModel` the adapter was made for (left as it was given).
        config: settings; read here: `adapter` (the folder, or "untrained": a fresh model
            saved under `out_dir/untrained-ip-adapter-faceid`, tests and smoke runs), and
            `id_scale` / `lora_scale` (the artifact's defaults).
        out_dir: artifact folder.
        base_spec: how to load `base` again (recorded so `generate` can find it).
        bank, resume, progress: unused (encoding is one forward pass).

    Raises:
        SamefaceError: no adapter folder given, or the identity's recogniser differs.
        ArtifactError: the folder is missing or made for another base model.
    """
    del bank, resume, progress
    cfg = config or IPAdapterFaceIDConfig()
    out = Path(out_dir)
    check_destination(out / "identity", overwrite=True)  # fail now, not after loading models
    if cfg.adapter is None:
        raise SamefaceError(
            "IP-Adapter-FaceID encodes with trained weights: --adapter FOLDER (a folder "
            "`sameface import ip-adapter-faceid` or `sameface train ip-adapter-faceid` wrote)"
        )
    if cfg.adapter == UNTRAINED:
        model = FaceIDModel(base, cfg)
        try:
            folder = model.save(out / UNTRAINED_DIR, extra={"untrained": True}).resolve()
        except BaseException:
            model.remove()
            raise
    else:
        folder = Path(cfg.adapter).resolve()
        model = FaceIDModel.load(folder, base)
    with model:  # the LoRA and the ID branch come off the UNet on the way out
        cond, uncond = model.identity_tokens(identity)
        record = model.meta()
    saved = model.recorded or read_meta(folder)  # a loaded folder's record is at hand
    meta = {
        "method": METHOD,
        "format_version": 1,
        "sameface_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "adapter": str(folder),
        "adapter_save_id": saved.get("save_id"),
        "untrained": bool(saved.get("untrained", False)),
        "base": base_spec or base.source,
        "family": base.family,
        "prediction_type": base.prediction_type,
        "placeholder": "<id>",
        "id_scale": cfg.id_scale,
        "lora_scale": cfg.lora_scale,
        "guidance_scale": cfg.guidance_scale,
        "num_tokens": int(cond.shape[1]),
        "tokens_file": TOKENS_FILE,
        "recognizer": record["recognizer"],
        "identity": {
            "photos": identity.num_photos,
            "recognizer": identity.meta.get("recognizer", {}),
        },
    }
    identity.save(out / "identity", overwrite=True, save_crops=False)
    save_encoded(out, TOKENS_FILE, {"cond": cond, "uncond": uncond}, meta)
    return out
