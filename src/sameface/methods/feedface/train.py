"""Train FeedFace's face projection and control blocks (seed 002 §2.2, appendix B.2).

    L = ‖m·(ε − ε_θ(x_t, t, c)) + (1 − m)·(ε_θ̂ − ε_θ(x_t, t, c))‖²

with m the face mask on the latent grid and ε_θ̂ the frozen base model's prediction for the
same input (one extra forward pass without gradient). 10% of samples get the zero face
condition (CFG) and 10% the standard loss (m = 1), as in B.2.

Reads a dataset made by `sameface data prepare` (square crops, face masks, captions). The
crop is the training image; the face image the CLIP encoder sees is FeedFace's face square
(the box ×`face_expand`, 1.1 as in the paper), the centred part of the crop (`face_views`).
Runs on 1..N processes under `accelerate launch` on the shared `TrainingRun` (checkpoints,
exact resume, JSONL log, progress).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...losses import diffusion_target, feedface_loss, sample_timesteps
from ...models.text import encode_prompts
from ...training import Phase, adamw, dataset_fingerprint, dataset_run, loss_summary
from ...training.distributed import distributed_context
from ...training.frozen import frozen_base, training_scheduler
from ...training.latents import to_tensor_images, to_tensor_masks
from .config import FACE_EXPAND, FeedFaceConfig
from .model import FeedFaceModel


def train(
    data_dir: str | Path,
    base: Any,
    config: FeedFaceConfig | None = None,
    out_dir: str | Path = "feedface",
    *,
    vision: Any = None,
    init_from: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    context: Any = None,
) -> Path:
    """Train FeedFace and save its folder (weights + `feedface.json`).

    Args:
        data_dir: a prepared dataset (`sameface data prepare`).
        base: the `BaseModel` (frozen; the control blocks attach to its UNet and come off at the end).
        config: settings.
        out_dir: output folder; checkpoints go to `out_dir/checkpoints`.
        vision: the frozen `ClipVision` face encoder; default loads `config.clip_vision`.
        init_from: a trained FeedFace folder to continue from (fine-tuning).
        resume: continue from the newest checkpoint in `out_dir`.
        progress: show a progress bar (main process only).
        context: a `DistributedContext`; default from the environment (accelerate).

    Raises:
        TrainingError: non-finite losses, or an interruption (a checkpoint is saved first).
    """
    from ...data.prepare import FaceDataset

    cfg = config or FeedFaceConfig()
    ctx = context or distributed_context()
    data = FaceDataset(data_dir)
    if cfg.loss != "standard":
        _check_masks(data)
    expand = _dataset_expand(data_dir)
    if vision is None:
        from ...models.clip_vision import ClipVision

        vision = ClipVision.load(cfg.clip_vision, device=base.device)
    out = Path(out_dir)
    run, generator = dataset_run(
        "feedface",
        out,
        cfg,
        dataset_fingerprint(cfg, data, base, init_from),
        ctx,
        resume=resume,
        progress=progress,
    )

    with contextlib.ExitStack() as stack:
        if init_from is not None:
            model = FeedFaceModel.load(init_from, base, vision)
            model.config = cfg  # this run's settings; shapes come from the saved model
        else:
            model = FeedFaceModel(base, cfg, vision=vision)
        stack.callback(model.remove)  # the base UNet is given back without our hooks
        stack.enter_context(frozen_base(base, gradient_checkpointing=cfg.gradient_checkpointing))
        optimizer = adamw(model, cfg)
        step = _step_fn(cfg, model, base, data, expand, generator)
        run.add_phase(
            Phase(
                "feedface",
                cfg.steps,
                step,
                optimizer=optimizer,
                modules={"model": model},
                lr=cfg.learning_rate,
            )
        )
        if resume:
            run.restore()
        run.train()
        if ctx.is_main:
            model.save(
                out,
                extra={
                    "trained": {
                        "steps": cfg.steps,
                        "samples": len(data),
                        "losses": loss_summary(run.log),
                    }
                },
            )
        ctx.wait()
    run.clear()
    return out


def _step_fn(
    cfg: FeedFaceConfig,
    model: FeedFaceModel,
    base: Any,
    data: Any,
    expand: float,
    g: torch.Generator,
):
    """One step of the regularisation mask loss (seed 002 §2.2) on a random batch."""
    res = cfg.resolution or base.resolution
    scheduler = training_scheduler(base)
    dev, dtype = base.device, base.dtype
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.mixed_precision == "bf16")
    need_frozen = cfg.loss == "regularization"

    def step(_: int) -> dict:
        batch = [data[int(i)] for i in torch.randint(len(data), (cfg.batch_size,), generator=g)]
        drop = torch.rand(cfg.batch_size, generator=g) < cfg.face_drop_prob
        standard = torch.rand(cfg.batch_size, generator=g) < cfg.standard_loss_prob
        noise_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
        t = sample_timesteps(scheduler, cfg.batch_size, g)

        crops = np.stack([b["crop"] for b in batch])
        with torch.no_grad():
            images = to_tensor_images(crops, res).to(dev, dtype)
            latents = base.vae.encode(images).latent_dist.sample(
                torch.Generator(dev.type).manual_seed(noise_seed)
            )
            latents = latents.float() * base.vae.config.scaling_factor
            feats = model.features(face_views(batch, expand, cfg.face_expand)[:, None])
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(noise_seed))
        noisy = scheduler.add_noise(latents, noise.to(latents), t.to(latents.device)).to(dev, dtype)
        mask = to_tensor_masks(np.stack([b["mask"] for b in batch]), latents.shape[-1]).to(dev)
        mask = torch.where(standard.to(dev)[:, None, None, None], torch.ones_like(mask), mask)
        with autocast:
            tokens = model.tokens(feats, drop)
            hidden, added = encode_prompts(base, [b["caption"] for b in batch], size=(res, res))
            kw = model.cross_attention_kwargs(tokens)
            pred = base.unet(
                noisy, t.to(dev), hidden, added_cond_kwargs=added, cross_attention_kwargs=kw
            ).sample
            frozen = None
            if need_frozen:  # ε_θ̂: the same input through the base model alone
                with torch.no_grad():
                    frozen = base.unet(noisy, t.to(dev), hidden, added_cond_kwargs=added).sample
        target = diffusion_target(scheduler, latents, noise.to(latents), t).to(dev)
        kind = cfg.loss
        loss = feedface_loss(kind, pred, target, None if kind == "standard" else mask, frozen)
        return {"loss": loss, "face_share": float(mask.mean())}

    return step


def face_views(batch: list[dict], expand: float, view: float = FACE_EXPAND) -> torch.Tensor:
    """FeedFace's face square (the box ×`view`, 1.1 in appendix A) of each sample, at the
    crop's side.

    Cut around the sample's face box when the dataset records one (rendered world data, new
    `sameface data prepare` output); otherwise the crop was itself cut around the face box
    with expansion `expand`, so the face square is its centred view/expand part (exact unless
    the crop was clipped at the photo's border; a view wider than the crop gets the crop).

    Returns:
        (B, 3, S, S) float RGB in [0, 1].
    """
    from ...faces.align import square_crop

    views = []
    for b in batch:
        crop = b["crop"]
        side = crop.shape[0]
        if b.get("box") is not None:
            views.append(square_crop(crop, tuple(b["box"]), expand=view, size=side)[0])
            continue
        keep = min(side, max(8, round(side * view / expand)))
        lo = (side - keep) // 2
        part = crop[lo : lo + keep, lo : lo + keep]
        whole = (0, 0, keep, keep)
        views.append(part if keep == side else square_crop(part, whole, expand=1.0, size=side)[0])
    x = torch.from_numpy(np.ascontiguousarray(np.stack(views)))
    return x.permute(0, 3, 1, 2).float() / 255.0


def _check_masks(data: Any) -> None:
    """Refuse a dataset with empty face masks: the mask losses need the face region."""
    from ...errors import SamefaceError

    empty = data.empty_masks()
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise SamefaceError(
            f"{data.folder}: {len(empty)} sample(s) have an all-zero face mask ({shown}); the "
            "mask losses need each sample's face region: prepare the data again (`sameface data "
            "prepare`), remove those samples, or train with loss: standard"
        )


def _dataset_expand(data_dir: str | Path) -> float:
    """The box expansion a dataset's crops were cut with (`prepare.json`), default 1.1."""
    try:
        return float(
            json.loads((Path(data_dir) / "prepare.json").read_text())["settings"]["expand"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return FACE_EXPAND
