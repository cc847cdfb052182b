"""Train PuLID's ID encoder and adapter (seed 004): three stages, one loop.

    stage 1: L = L_diff
    stage 2: L = L_diff + λ_id L_id        (ID loss on a few-step "Lightning" branch image;
                                            `id_loss_branch="one-step"`: the ablation's naive
                                            ID loss on the step's own one-step x̂0)
    stage 3: L = L_diff + λ_id L_id + L_align  (contrastive alignment: paths with / without ID)

Reads a dataset made by `sameface data prepare` (crops, aligned faces, masks, embeddings,
captions). Runs on 1..N processes under `accelerate launch` (each process takes its own
batch; gradients are averaged across processes), checkpoints the adapter and encoder alone
(safetensors, atomic) with the optimiser and RNG state, resumes exactly, and logs losses
to `train_log.jsonl`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import SamefaceError
from ...losses import alignment_loss, diffusion_target, face_id_loss, l_simple, sample_timesteps
from ...models.text import encode_prompts
from ...training import Phase, adamw, dataset_fingerprint, dataset_run, loss_summary
from ...training.distributed import distributed_context
from ...training.few_step import generate_x0, one_step_image
from ...training.frozen import frozen_base, training_scheduler
from ...training.latents import to_tensor_images
from .config import PuLIDConfig
from .model import PuLIDModel

# The config's names for the few-step branch -> the scheduler that samples it.
_SAMPLERS = {"lcm": "lcm", "turbo": "euler", "ddim": "ddim"}


def train(
    data_dir: str | Path,
    base: Any,
    config: PuLIDConfig | None = None,
    out_dir: str | Path = "pulid",
    *,
    vision: Any = None,
    init_from: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    context: Any = None,
) -> Path:
    """Train one stage and save the PuLID folder (`adapter.safetensors`, `encoder.safetensors`, `pulid.json`).

    Args:
        data_dir: a prepared dataset (`sameface data prepare`).
        base: the `BaseModel` (frozen; the adapter is installed on its UNet and removed at the end).
        config: settings, `config.stage` included.
        out_dir: output folder; checkpoints go to `out_dir/checkpoints`.
        vision: the frozen `ClipVision` of the ID encoder; default loads `config.clip_vision`.
        init_from: a PuLID folder to start from (the previous stage's output).
        resume: continue from the newest checkpoint in `out_dir`.
        progress: show a progress bar (main process only).
        context: a `DistributedContext`; default from the environment (accelerate).

    Raises:
        TrainingError: non-finite losses, or an interruption (a checkpoint is saved first).
    """
    from ...data.prepare import FaceDataset, check_data_recognizer

    cfg = config or PuLIDConfig()
    if cfg.fast_weights:
        raise SamefaceError(
            "separate fast-branch weights (fast_weights) are not supported yet: pass a few-step "
            "base model (a Lightning / Turbo / merged LCM checkpoint) as the base and set fast_sampler"
        )
    ctx = context or distributed_context()
    data = FaceDataset(data_dir)
    check_data_recognizer(data_dir, cfg.recognizer)
    if vision is None:
        from ...models.clip_vision import ClipVision

        vision = ClipVision.load(cfg.clip_vision, device=base.device)
    out = Path(out_dir)
    # Each process draws its own batches from its own stream; all restart identically.
    run, generator = dataset_run(
        f"pulid stage {cfg.stage}",
        out,
        cfg,
        dataset_fingerprint(cfg, data, base, init_from),
        ctx,
        resume=resume,
        progress=progress,
    )

    with contextlib.ExitStack() as stack:
        if init_from is not None:
            model = PuLIDModel.load(init_from, base, vision)
            model.config = cfg  # the new stage's settings; shapes come from the saved model
        else:
            model = PuLIDModel(base, cfg, vision=vision)
        stack.callback(model.remove)  # the base UNet gets its own processors back
        stack.enter_context(frozen_base(base, gradient_checkpointing=cfg.gradient_checkpointing))
        optimizer = adamw(model, cfg)
        step = _step_fn(cfg, model, base, data, generator)
        run.add_phase(
            Phase(
                f"stage {cfg.stage}",
                cfg.steps,
                step,
                optimizer=optimizer,
                modules={"model": model},
                lr=cfg.learning_rate,  # a resumed run may use a new learning rate
            )
        )
        if resume:
            run.restore()
        run.train()
        if ctx.is_main:
            trained = {"stage": cfg.stage, "steps": cfg.steps, "losses": loss_summary(run.log)}
            model.save(out, extra={"trained": trained})
        ctx.wait()
    run.clear()
    return out


def _step_fn(cfg: PuLIDConfig, model: PuLIDModel, base: Any, data: Any, g: torch.Generator):
    """One step: the diffusion branch, then (stage ≥ 2) the few-step branch for the ID loss,
    then (stage 3) the prompt-only path for the alignment loss (seed 004, eq. 4-7)."""
    from ...faces.id_loss import id_loss_models

    res = cfg.resolution or base.resolution
    scheduler = training_scheduler(base)
    dev, dtype = base.device, base.dtype
    stage2 = cfg.stage >= 2
    recognizer, detector = (
        id_loss_models(cfg.recognizer, dev, cfg.world) if stage2 else (None, None)
    )
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.mixed_precision == "bf16")

    def step(_: int) -> dict:
        batch = [data[int(i)] for i in torch.randint(len(data), (cfg.batch_size,), generator=g)]
        drop = torch.rand(cfg.batch_size, generator=g) < cfg.id_drop_prob
        noise_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
        t = sample_timesteps(scheduler, cfg.batch_size, g)

        with torch.no_grad():
            images = to_tensor_images(np.stack([b["crop"] for b in batch]), res).to(dev, dtype)
            latents = base.vae.encode(images).latent_dist.sample(
                torch.Generator(dev.type).manual_seed(noise_seed)
            )
            latents = latents.float() * base.vae.config.scaling_factor
            id_vec, vit = model.condition(
                np.stack([b["aligned"] for b in batch])[:, None],
                _aligned_masks(batch),
                np.stack([b["embedding"] for b in batch])[:, None],
            )
            id_vec, vit = model.drop_condition(id_vec, vit, drop)
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(noise_seed)).to(
            latents
        )
        noisy = scheduler.add_noise(latents, noise, t.to(latents.device)).to(dev, dtype)
        losses: dict[str, Any] = {}
        with autocast:
            tokens = model.tokens(id_vec, vit)
            hidden, added = encode_prompts(base, [b["caption"] for b in batch], size=(res, res))
            rec_id: dict = {} if cfg.stage == 3 else None
            kw = model.cross_attention_kwargs(tokens, attn_record=rec_id)
            pred = base.unet(
                noisy, t.to(dev), hidden, added_cond_kwargs=added, cross_attention_kwargs=kw
            ).sample
            losses["diff"] = l_simple(pred, diffusion_target(scheduler, latents, noise, t).to(dev))
            if cfg.stage == 3:  # the same prompt, noise and timestep without the ID
                rec_txt: dict = {}
                with torch.no_grad():
                    base.unet(
                        noisy,
                        t.to(dev),
                        hidden,
                        added_cond_kwargs=added,
                        cross_attention_kwargs=model.cross_attention_kwargs(
                            None, attn_record=rec_txt
                        ),
                    )
                losses["align"] = alignment_loss(
                    rec_id, rec_txt, cfg.lambda_align_sem, cfg.lambda_align_layout
                )
            if cfg.stage >= 2 and cfg.id_loss_branch == "one-step":  # the ablation's naive loss
                keep = (~drop).to(pred.device)
                if keep.any():
                    x0 = one_step_image(base, scheduler, noisy[keep], pred[keep], t[keep.cpu()])
                    ref = torch.tensor(np.stack([b["embedding"] for b in batch]))[keep.cpu()].to(
                        dev
                    )
                    losses["id"], found = face_id_loss(x0, ref, recognizer, detector)
                    losses["id_faces"] = float(found.float().mean())
            elif cfg.stage >= 2:  # an image from pure noise in a few steps, then its face
                keep = ~drop
                if keep.any():
                    x0 = generate_x0(
                        base, hidden[keep], added_cond_kwargs=_select(added, keep), cross_attention_kwargs=model.cross_attention_kwargs(tokens[keep]),
                        sampler=_SAMPLERS[cfg.fast_sampler], steps=cfg.lightning_steps, size=res,
                        generator=torch.Generator().manual_seed(noise_seed + 1), checkpoint=True,
                    )  # fmt: skip
                    ref = torch.tensor(np.stack([b["embedding"] for b in batch]))[keep].to(dev)
                    losses["id"], found = face_id_loss(x0, ref, recognizer, detector)
                    losses["id_faces"] = float(found.float().mean())
        loss = losses["diff"] + losses.get("align", 0.0) + cfg.lambda_id * losses.get("id", 0.0)
        return {"loss": loss} | losses

    return step


def _aligned_masks(batch: list[dict]) -> np.ndarray:
    """Face masks in the aligned crops' frame (B, 1, 112, 112): the template-landmark ellipse
    (the dataset's masks are in the square crops' frame; the aligned face sits on the template)."""
    from ...faces.aligned_masks import template_face_mask

    m = template_face_mask(112)
    return np.broadcast_to(m, (len(batch), 1, *m.shape)).copy()


def _select(added: dict | None, keep: torch.Tensor) -> dict | None:
    return None if added is None else {k: v[keep] for k, v in added.items()}
