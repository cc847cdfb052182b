"""Train the M² ID encoder's projections (seed 000: reconstruction + self-augmented editability).

    L = ‖ε − ε_θ(x_t, t, τ(prompt with S*))‖² + λ · mean_k ‖S*_k − e(init_word)‖²

Each sample is either
- *reconstruction* (a prepared face dataset, `sameface data prepare`): the encoder reads the
  sample's aligned face, the prompt is its caption with the person replaced by the
  placeholder, the target is the sample's own image; or
- *editability* (the self-augmented triplets, `sameface data self-augment`): the encoder reads
  a celebrity's generated face, the prompt is an edit prompt with the placeholder where the
  name was, the target is the model's own edited image of that celebrity.

`augmented_share` of the samples are triplets when a triplet folder is given. Runs on 1..N
processes under `accelerate launch` on the shared `TrainingRun` (checkpoints, exact resume,
JSONL log, progress); the backbone, text encoders and UNet stay frozen.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...adapters.tokens import EncoderTokens, expand_placeholder
from ...losses import diffusion_target, embedding_regularization, l_simple, sample_timesteps
from ...models.text import encode_prompts
from ...training import Phase, adamw, dataset_run, fingerprint, loss_summary
from ...training.distributed import distributed_context
from ...training.frozen import frozen_base, training_scheduler
from ...training.latents import to_tensor_images
from ...training.run import RESUMABLE_CHANGES
from .augment import TripletSet
from .config import DreamIdentityConfig
from .encode import load_encoder_backbone
from .model import M2Encoder

_SUBJECT = re.compile(r"\b(?:a person|someone|the person|person)\b")


def train(
    data_dir: str | Path,
    base: Any,
    config: DreamIdentityConfig | None = None,
    out_dir: str | Path = "dreamidentity",
    *,
    augmented: str | Path | None = None,
    backbone: Any = None,
    init_from: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    context: Any = None,
) -> Path:
    """Train the M² ID encoder and save its folder (projections + `dreamidentity.json`).

    Args:
        data_dir: a prepared face dataset (`sameface data prepare`): reconstruction samples.
        base: the `BaseModel` (frozen; the words are spliced into its text encoders by hooks
            removed at the end).
        config: settings.
        out_dir: output folder; checkpoints go to `out_dir/checkpoints`.
        augmented: a self-augmented triplet folder (`sameface data self-augment`), or None for
            reconstruction only (the paper's ablation without editability learning).
        backbone: the frozen face backbone; default loads `config.backbone`.
        init_from: a trained DreamIdentity folder to continue from.
        resume: continue from the newest checkpoint in `out_dir`.
        progress: show a progress bar (main process only).
        context: a `DistributedContext`; default from the environment (accelerate).

    Raises:
        TrainingError: non-finite losses, or an interruption (a checkpoint is saved first).
    """
    from ...data.prepare import FaceDataset

    cfg = absolute_backbone(config or DreamIdentityConfig())
    ctx = context or distributed_context()
    data = FaceDataset(data_dir)
    triplets = TripletSet(augmented) if augmented is not None else None
    backbone = backbone or load_encoder_backbone(cfg, None, base.device)
    triplets_where = str(Path(augmented).resolve()) if triplets is not None else ""
    out = Path(out_dir)
    run, generator = dataset_run(
        "dreamidentity",
        out,
        cfg,
        _fingerprint(cfg, data, triplets, base, f"{init_from}:{triplets_where}"),
        ctx,
        resume=resume,
        progress=progress,
    )
    with contextlib.ExitStack() as stack:
        if init_from is not None:
            model = M2Encoder.load(init_from, base, backbone)
            _check_same_words(model.config, cfg, init_from)
            model.config = cfg  # this run's settings; shapes come from the saved encoder
        else:
            model = M2Encoder(base, cfg, backbone=backbone)
        tokens = EncoderTokens(base.tokenizers, base.text_encoders, {cfg.placeholder: model.k})
        stack.callback(tokens.remove)  # the base model is given back without our hooks
        tokens.set(cfg.placeholder)  # the words are given per call, per sample
        stack.enter_context(frozen_base(base, gradient_checkpointing=cfg.gradient_checkpointing))
        step = _step_fn(cfg, model, tokens, base, data, triplets, generator)
        run.add_phase(
            Phase(
                "dreamidentity",
                cfg.steps,
                step,
                optimizer=adamw(model.proj, cfg),
                modules={"proj": model.proj},
                lr=cfg.learning_rate,
            )
        )
        if resume:
            run.restore()
        run.train()
        if ctx.is_main:
            trained = {
                "steps": cfg.steps,
                "samples": len(data),
                "triplets": len(triplets) if triplets is not None else 0,
                "augmented": str(Path(augmented).resolve()) if augmented is not None else None,
                "losses": loss_summary(run.log),
            }
            model.save(out, extra={"trained": trained})
        ctx.wait()
    run.clear()
    return out


def absolute_backbone(cfg: DreamIdentityConfig) -> DreamIdentityConfig:
    """`cfg` with a backbone weights file or world folder given as an absolute path, so the
    trained folder records where it is from wherever `personalize` later runs."""
    from dataclasses import replace

    kind, sep, path = cfg.backbone.partition(":")
    if kind == "world" and sep and path:
        return replace(cfg, backbone=f"world:{Path(path).expanduser().resolve()}")
    if Path(cfg.backbone).suffix and Path(cfg.backbone).expanduser().exists():
        return replace(cfg, backbone=str(Path(cfg.backbone).expanduser().resolve()))
    return cfg


def _check_same_words(saved: DreamIdentityConfig, cfg: DreamIdentityConfig, folder: Any) -> None:
    """Continuing from a trained encoder keeps what shapes its words."""
    from ...errors import SamefaceError

    for name in ("scales", "projection", "init_word", "placeholder", "backbone", "feature_layers"):
        if getattr(saved, name) != getattr(cfg, name):
            raise SamefaceError(
                f"--init-from {folder} was trained with {name}={getattr(saved, name)!r}, this run "
                f"asks for {getattr(cfg, name)!r}: they must match to continue from it"
            )


def reconstruction_prompt(caption: str, placeholder: str) -> str:
    """The caption with its person replaced by the placeholder ("a photo of a person, red
    background" -> "a photo of <id>, red background"); "a photo of <id>, caption" if it names none."""
    if _SUBJECT.search(caption):
        return _SUBJECT.sub(placeholder, caption, count=1)
    return f"a photo of {placeholder}, {caption}"


def _step_fn(
    cfg: DreamIdentityConfig,
    model: M2Encoder,
    tokens: EncoderTokens,
    base: Any,
    data: Any,
    triplets: TripletSet | None,
    g: torch.Generator,
):
    """One step of L_diffusion + λ·L_reg on a random mixed batch."""
    res = cfg.resolution or base.resolution
    scheduler = training_scheduler(base)
    dev, dtype = base.device, base.dtype
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.mixed_precision == "bf16")
    share = cfg.augmented_share if triplets is not None and len(triplets) else 0.0

    def sample(i: int, from_triplets: bool) -> tuple[np.ndarray, np.ndarray, str]:
        if from_triplets:
            t = triplets[i % len(triplets)]
            return t["face"], t["image"], t["template"].replace("{name}", cfg.placeholder)
        s = data[i % len(data)]
        return s["aligned"], s["crop"], reconstruction_prompt(s["caption"], cfg.placeholder)

    def step(_: int) -> dict:
        pick = torch.rand(cfg.batch_size, generator=g) < share
        index = torch.randint(0, 2**31 - 1, (cfg.batch_size,), generator=g)
        noise_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
        t = sample_timesteps(scheduler, cfg.batch_size, g)
        batch = [sample(int(i), bool(p)) for i, p in zip(index, pick, strict=True)]
        faces = torch.from_numpy(np.stack([b[0] for b in batch])).permute(0, 3, 1, 2).float()
        prompts = [expand_placeholder(b[2], cfg.placeholder, model.k) for b in batch]
        with torch.no_grad():
            images = to_tensor_images([b[1] for b in batch], res).to(dev, dtype)
            latents = base.vae.encode(images).latent_dist.sample(
                torch.Generator(dev.type).manual_seed(noise_seed)
            )
            latents = latents.float() * base.vae.config.scaling_factor
            feats = model.features(faces[:, None].to(dev))
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(noise_seed))
        noisy = scheduler.add_noise(latents, noise.to(latents), t.to(latents.device)).to(dev, dtype)
        with autocast:
            words = model.words(feats)
            with tokens.given({cfg.placeholder: words}):
                hidden, added = encode_prompts(
                    base, prompts, tokenizers=tokens.tokenizers, size=(res, res)
                )
            pred = base.unet(noisy, t.to(dev), hidden, added_cond_kwargs=added).sample
        target = diffusion_target(scheduler, latents, noise.to(latents), t).to(dev)
        diffusion = l_simple(pred, target)
        reg = embedding_regularization(words, model.anchors())
        return {
            "loss": diffusion + cfg.reg_weight * reg,
            "diffusion": float(diffusion.detach()),
            "reg": float(reg.detach()),
            "augmented_share": float(pick.float().mean()) if share else 0.0,
        }

    return step


def _fingerprint(
    cfg: DreamIdentityConfig, data: Any, triplets: Any, base: Any, init_from: Any
) -> str:
    settings = {k: v for k, v in cfg.to_dict().items() if k not in RESUMABLE_CHANGES}
    ids = [s["id"] for s in data.samples]
    extra = (
        [[t["face"], t["image"], t["template"]] for t in triplets.records]
        if triplets is not None
        else []
    )
    return fingerprint(
        settings, json.dumps([ids, extra]), f"{base.family}:{base.source}:{init_from}"
    )
