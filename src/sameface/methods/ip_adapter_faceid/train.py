"""Train IP-Adapter-FaceID's projection, ID attention and LoRA (the release's
`tutorial_train_faceid.py`): the plain diffusion loss

    L = ‖ε − ε_θ(x_t, t, c_text, tokens(e))‖²

with 5% of samples given a zero embedding, 5% an empty caption and 5% both (so CFG has an
unconditional model), AdamW at 1e-4. The base model stays frozen; the LoRA is injected for the
run and taken off at its end.

Reads a dataset made by `sameface data prepare` (square crops, captions, face embeddings of
`config.recognizer`). Runs on 1..N processes under `accelerate launch` on the shared
`TrainingRun` (checkpoints, exact resume, JSONL log, progress).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import SamefaceError
from ...losses import diffusion_target, l_simple, sample_timesteps
from ...models.text import encode_prompts
from ...training import Phase, adamw, dataset_fingerprint, dataset_run, loss_summary
from ...training.distributed import distributed_context
from ...training.frozen import frozen_base, training_scheduler
from ...training.latents import to_tensor_images
from .config import IPAdapterFaceIDConfig
from .model import FaceIDModel


def train(
    data_dir: str | Path,
    base: Any,
    config: IPAdapterFaceIDConfig | None = None,
    out_dir: str | Path = "ip-adapter-faceid",
    *,
    init_from: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    context: Any = None,
) -> Path:
    """Train and save the folder (`ip_adapter_faceid.safetensors` in the release's layout +
    `ip_adapter_faceid.json`).

    Args:
        data_dir: a prepared dataset (`sameface data prepare`) with `config.recognizer`'s
            embeddings.
        base: the `BaseModel` (frozen; left as it was given).
        config: settings.
        out_dir: output folder; checkpoints go to `out_dir/checkpoints`.
        init_from: a trained or imported folder to continue from (fine-tuning the release).
        resume: continue from the newest checkpoint in `out_dir`.
        progress: show a progress bar (main process only).
        context: a `DistributedContext`; default from the environment (accelerate).

    Raises:
        SamefaceError: the dataset's embeddings come from another recogniser.
        TrainingError: non-finite losses, or an interruption (a checkpoint is saved first).
    """
    from ...data.prepare import FaceDataset, check_data_recognizer

    cfg = config or IPAdapterFaceIDConfig()
    ctx = context or distributed_context()
    data = FaceDataset(data_dir)
    check_data_recognizer(data_dir, cfg.recognizer)
    out = Path(out_dir)
    run, generator = dataset_run(
        "ip-adapter-faceid",
        out,
        cfg,
        dataset_fingerprint(cfg, data, base, init_from),
        ctx,
        resume=resume,
        progress=progress,
    )

    with contextlib.ExitStack() as stack:
        stack.enter_context(frozen_base(base, gradient_checkpointing=cfg.gradient_checkpointing))
        if init_from is not None:
            model = FaceIDModel.load(init_from, base)
            stack.callback(model.remove)  # before frozen_base restores the flags (LIFO)
            _check_same_shape(cfg, model, init_from)
            model.config = cfg  # this run's settings, the model's shape (checked above)
        else:
            model = FaceIDModel(base, cfg)
            stack.callback(model.remove)
        optimizer = adamw(model, cfg)
        run.add_phase(
            Phase(
                "ip-adapter-faceid",
                cfg.steps,
                _step_fn(cfg, model, base, data, generator),
                optimizer=optimizer,
                modules={"model": model},
                lr=cfg.learning_rate,
            )
        )
        if resume:
            run.restore()
        run.train()
        if ctx.is_main:
            trained = {"steps": cfg.steps, "samples": len(data), "losses": loss_summary(run.log)}
            extra: dict = {"trained": trained}
            if init_from is not None:  # fine-tuned: the starting weights' terms and pack carry over
                extra["init_from"] = str(init_from)
                for key in ("license", "imported_from"):
                    if key in model.recorded:
                        extra[key] = model.recorded[key]
            model.save(out, extra=extra)
        ctx.wait()
    run.clear()
    return out


def _step_fn(
    cfg: IPAdapterFaceIDConfig, model: FaceIDModel, base: Any, data: Any, g: torch.Generator
):
    """One step of the diffusion loss with the tutorial's condition dropping."""
    res = cfg.resolution or base.resolution
    scheduler = training_scheduler(base)
    dev, dtype = base.device, base.dtype
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.mixed_precision == "bf16")
    p_id, p_text, p_both = cfg.id_drop_prob, cfg.text_drop_prob, cfg.both_drop_prob

    def step(_: int) -> dict:
        batch = [data[int(i)] for i in torch.randint(len(data), (cfg.batch_size,), generator=g)]
        r = torch.rand(cfg.batch_size, generator=g)
        drop_text = (r >= p_id) & (r < p_id + p_text + p_both)
        drop_id = (r < p_id) | ((r >= p_id + p_text) & (r < p_id + p_text + p_both))
        noise_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
        t = sample_timesteps(scheduler, cfg.batch_size, g)
        with torch.no_grad():
            images = to_tensor_images(np.stack([b["crop"] for b in batch]), res).to(dev, dtype)
            latents = base.vae.encode(images).latent_dist.sample(
                torch.Generator(dev.type).manual_seed(noise_seed)
            )
            latents = latents.float() * base.vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(noise_seed))
        noise = noise.to(latents)
        noisy = scheduler.add_noise(latents, noise, t.to(latents.device)).to(dev, dtype)
        emb = torch.from_numpy(np.stack([b["embedding"] for b in batch])).float()
        emb = torch.where(drop_id[:, None], torch.zeros_like(emb), emb)  # the tutorial's zeros
        captions = [
            "" if d else b["caption"] for b, d in zip(batch, drop_text.tolist(), strict=True)
        ]
        with autocast:
            tokens = model.tokens(emb)
            hidden, added = encode_prompts(base, captions, size=(res, res))
            pred = base.unet(
                noisy,
                t.to(dev),
                hidden,
                added_cond_kwargs=added,
                cross_attention_kwargs=model.cross_attention_kwargs(tokens),
            ).sample
        loss = l_simple(pred, diffusion_target(scheduler, latents, noise, t).to(dev))
        return {"loss": loss, "id_dropped": float(drop_id.float().mean())}

    return step


# What decides the model's shape and input: a fine-tuning run must keep them.
_SHAPE = ("recognizer", "num_tokens", "multi_photo", "lora_rank", "lora_targets")


def _check_same_shape(cfg: IPAdapterFaceIDConfig, model: FaceIDModel, init_from: Any) -> None:
    """Refuse settings that would save a folder the starting weights do not fit."""
    loaded = model.config
    hidden = cfg.mlp_dim or 2 * model.id_dim
    diffs = [f"{k}: {getattr(cfg, k)!r} (it has {getattr(loaded, k)!r})" for k in _SHAPE
             if getattr(cfg, k) != getattr(loaded, k)]  # fmt: skip
    if hidden != model.encoder_config.mlp_dim:
        diffs.append(f"mlp_dim: {hidden} (it has {model.encoder_config.mlp_dim})")
    if diffs:
        raise SamefaceError(
            f"--init-from {init_from}: these settings differ from the weights it holds, which "
            "keep their shape when fine-tuned: " + "; ".join(diffs)
        )
