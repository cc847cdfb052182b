"""Personalise with PuLID: encode the identity with a trained PuLID model, no optimisation.

PuLID is tuning-free (seed 004): the encoder, trained once on a face dataset (`train.py`),
turns any person's photos into ID tokens in one forward pass. This computes those tokens
(and the unconditional ones) and writes the artifact `PuLIDPipeline.from_artifact` reads.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ... import __version__
from ...errors import SamefaceError
from ...identity import check_destination
from ...models.clip_vision import ClipVision
from ..trained import recorded_path
from .artifact import TOKENS_FILE, save_tokens
from .config import UNTRAINED, PuLIDConfig
from .model import PuLIDModel, read_meta

UNTRAINED_DIR = "untrained-pulid"


def personalize(
    identity: Any,
    base: Any,
    config: PuLIDConfig | None = None,
    out_dir: str | Path = "out",
    *,
    base_spec: str | None = None,
    bank: Any = None,
    resume: bool = True,
    progress: bool = True,
    adapter: str | Path | None = None,
    vision: ClipVision | None = None,
) -> Path:
    """Encode `identity` with a trained PuLID model and write the artifact folder.

    Args:
        identity: a `sameface.Identity` built with the PuLID model's recogniser.
        base: the `BaseModel` the PuLID model was trained for (left as it was given).
        config: settings; read here: `adapter` (when the argument is not given),
            `inference_id_scale` (the artifact's default id_scale), and for "untrained" the
            model shape and `clip_vision`.
        out_dir: artifact folder.
        base_spec: how to load `base` again (recorded so `generate` can find it).
        bank: unused (the registry passes it to every method).
        resume: unused (nothing to resume: encoding is one forward pass).
        progress: unused.
        adapter: the trained PuLID folder (`PuLIDModel.save` / `train`); "untrained" builds
            a freshly initialised model from `config` and saves it under
            `out_dir/untrained-pulid` (tests and smoke runs: its images are not personalised).
        vision: a loaded `ClipVision` to reuse (default: load the one the PuLID model records).

    Returns:
        `out_dir`.

    Raises:
        SamefaceError: no trained PuLID model given, or the identity's recogniser differs.
        ArtifactError: the PuLID folder is missing or made for another base model.
    """
    del bank, resume, progress
    cfg = config or PuLIDConfig()
    out = Path(out_dir)
    check_destination(out / "identity", overwrite=True)  # fail now, not after loading models
    parser = None
    if cfg.face_parser is not None:  # before the adapter goes into the UNet: a bad file fails clean
        from ...faces.bisenet import FaceParser

        parser = FaceParser.load(cfg.face_parser, device=base.device)
    source = adapter if adapter is not None else cfg.adapter
    if source is None:
        raise SamefaceError(
            "PuLID encodes with a trained PuLID model: pass adapter=FOLDER (CLI: --set "
            "adapter=FOLDER), the folder `sameface train --method pulid` wrote"
        )
    if str(source) == UNTRAINED:
        vision = vision or ClipVision.load(cfg.clip_vision, device=base.device)
        model = PuLIDModel(base, cfg, vision=vision)
        try:
            folder = model.save(out / UNTRAINED_DIR, extra={"untrained": True}).resolve()
        except BaseException:
            model.remove()  # give the UNet back as it was
            raise
    else:
        folder = Path(source).resolve()
        meta = read_meta(folder)
        if vision is None:
            recorded = meta.get("clip_vision") or {}
            spec = recorded.get("name")
            if not spec:
                raise SamefaceError(f"{folder}: the CLIP vision model is not recorded")
            spec = recorded_path(folder, spec)
            if recorded.get("exact") and Path(cfg.clip_vision).exists():
                spec = cfg.clip_vision  # the user's copy of that exact tower (checked on load)
            vision = ClipVision.load(spec, device=base.device)
        model = PuLIDModel.load(folder, base, vision)
    model.face_parser = parser
    with model:  # removes the adapter from the UNet on the way out
        model.eval()
        cond, uncond = model.identity_tokens(identity)
        pulid = model.meta()
    pulid_meta = read_meta(folder)
    meta = {
        "method": "pulid",
        "format_version": 1,
        "sameface_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "adapter": str(folder),
        "adapter_save_id": pulid_meta.get("save_id"),
        "untrained": bool(pulid_meta.get("untrained", False)),
        "base": base_spec or base.source,
        "family": base.family,
        "prediction_type": base.prediction_type,
        "cross_attention_dim": pulid["cross_attention_dim"],
        "placeholder": "<id>",
        "id_scale": cfg.inference_id_scale,
        "tokens_file": TOKENS_FILE,
        "num_tokens": int(cond.shape[1]),
        "recognizer": pulid["recognizer"],
        "clip_vision": pulid["clip_vision"],
        "encoder": pulid["encoder"]["kind"],
        "face_input": "masks" if model.face_parser is None else model.face_parser.name,
        "identity": {
            "photos": identity.num_photos,
            "recognizer": identity.meta.get("recognizer", {}),
        },
    }
    identity.save(out / "identity", overwrite=True, save_crops=False)
    save_tokens(out, cond, uncond, meta)
    return out
