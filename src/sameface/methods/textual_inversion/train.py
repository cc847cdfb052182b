"""Personalise: learn the placeholder's vectors for one identity (seed 001).

Reads top to bottom: prepare data and tokens, resume if a checkpoint exists, optimise
L_simple with Adam, checkpoint, write the artifact.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ... import __version__
from ...adapters.tokens import EncoderTokens, LearnedTokens, placeholder_tokens
from ...identity import check_destination
from ...losses import diffusion_target, l_simple, sample_timesteps
from ...models.text import encode_prompts
from ...training import Phase, TrainingRun, fingerprint
from ...training.frozen import frozen_base, training_scheduler
from ...training.latents import encode_latent_stats, to_tensor_images, to_tensor_masks
from .artifact import EMBEDS_FILE, save_embeddings
from .config import TextualInversionConfig
from .init import choose_init

# Settings that may change between an interrupted run and its resumption.
_RESUMABLE_CHANGES = (
    "steps",
    "checkpoint_every",
    "max_nan_steps",
    "learning_rate",
    "mixed_precision",
    "gradient_checkpointing",
)


def personalize(
    identity: Any,
    base: Any,
    config: TextualInversionConfig | None = None,
    out_dir: str | Path = "out",
    *,
    base_spec: str | None = None,
    bank: Any = None,
    resume: bool = True,
    progress: bool = True,
) -> Path:
    """Learn `config.num_tokens` vectors per text encoder for `identity` and save the artifact.

    Args:
        identity: a `sameface.Identity` (its square crops are the training images).
        base: a `BaseModel` (left as it was given: weights, tokenizers and dtype are restored).
        config: settings; defaults to the paper's.
        out_dir: artifact folder; checkpoints go to `out_dir/checkpoints` during training.
        base_spec: how to load `base` again (recorded so `generate` can find it).
        bank: a `CelebrityBank` for the "id" / "rand2" inits.
        resume: continue from the newest checkpoint in `out_dir` when there is one.
        progress: show a progress bar with the loss.

    Returns:
        `out_dir`.

    Raises:
        TrainingError: the loss stayed non-finite, or the run was interrupted (a
            checkpoint is saved first; run again to resume).
    """
    cfg = config or TextualInversionConfig()
    out = Path(out_dir)
    check_destination(out / "identity", overwrite=True)  # fail now, not after training
    res = cfg.resolution or base.resolution
    generator = torch.Generator().manual_seed(cfg.seed)  # every random draw of the run
    run = TrainingRun(
        "textual inversion",
        out / "checkpoints",
        fingerprint=_fingerprint(cfg, identity, base),
        rngs={"rng": generator},
        checkpoint_every=cfg.checkpoint_every,
        max_nan_steps=cfg.max_nan_steps,
        require_grads=(
            "the learned vectors received no gradient: another identity is attached to this "
            "base model's text encoder, or the prompts do not contain the placeholder"
        ),
        progress=progress,
    )
    if not resume:
        run.clear()

    # Tokens and their starting vectors (the same vocabulary tokens on every encoder).
    choice = choose_init(
        cfg.init,
        base.tokenizer,
        cfg.num_tokens,
        identity=identity,
        bank=bank,
        seed=cfg.seed,
    )
    k = len(choice.token_ids)  # the number of learned vectors per text encoder
    with contextlib.ExitStack() as stack:
        tokens = EncoderTokens(base.tokenizers, base.text_encoders, {cfg.placeholder: k})
        stack.callback(tokens.remove)  # the base model is given back without our hooks
        learned = [
            LearnedTokens(
                enc.get_input_embeddings().weight.detach()[choice.token_ids].float(),
                cfg.reparam_base,
            ).to(base.device)
            for enc in base.text_encoders
        ]
        tokens.set(cfg.placeholder, learned)
        tokenizers = tokens.tokenizers
        stack.enter_context(frozen_base(base, gradient_checkpointing=cfg.gradient_checkpointing))
        params = [p for lt in learned for p in lt.parameters()]
        step = _step_fn(cfg, base, identity, tokenizers, learned, res, generator)
        run.add_phase(
            Phase(
                "textual inversion",
                cfg.steps,
                step,
                optimizer=torch.optim.Adam(params, lr=cfg.learning_rate, betas=cfg.adam_betas),
                modules={f"learned.{i}": lt for i, lt in enumerate(learned)},
                lr=cfg.learning_rate,  # a resumed run may use a new learning rate
            )
        )
        if resume:
            run.restore()
        run.train()

    vectors = [lt.vectors().detach() for lt in learned]
    meta = {
        "method": "textual-inversion",
        "format_version": 1,
        "sameface_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base": base_spec or base.source,
        "family": base.family,
        "prediction_type": base.prediction_type,
        "resolution": res,
        "placeholder": cfg.placeholder,
        "num_tokens": k,
        "tokens": placeholder_tokens(cfg.placeholder, k),
        "embeddings_file": EMBEDS_FILE,
        "init": {
            "requested": cfg.init,
            "used": choice.init,
            "token_ids": choice.token_ids,
            "description": choice.description,
            "celebrity": choice.celebrity,
            "similarity": choice.similarity,
        },
        "reparam_base": cfg.reparam_base,
        "vector_norms": [[round(float(x), 5) for x in v.norm(dim=-1)] for v in vectors],
        "config": cfg.to_dict(),
        "loss": _loss_summary(run.losses()),
        "identity": {
            "photos": identity.num_photos,
            "recognizer": identity.meta.get("recognizer", {}),
        },
    }
    identity.save(out / "identity", overwrite=True, save_crops=False)
    save_embeddings(out, base.family, cfg.placeholder, vectors, meta)
    run.clear()
    return out


def _step_fn(
    cfg: TextualInversionConfig,
    base: Any,
    identity: Any,
    tokenizers: list,
    learned: list[LearnedTokens],
    res: int,
    g: torch.Generator,
) -> Callable[[int], dict]:
    """One step of L_simple (seed 001 eq. 3) on a random crop, template and timestep."""
    # Data: square face crops and their flips, as cached VAE posteriors (kept on the CPU,
    # where the checkpointed generator draws the noise).
    images = to_tensor_images(identity.squares, res)
    if cfg.flip_prob > 0:
        images = torch.cat([images, images.flip(-1)])
    mean, std = (x.cpu() for x in encode_latent_stats(base.vae, images))
    n_photos = identity.num_photos
    weights = None
    if cfg.mask_weight < 1.0:
        m = to_tensor_masks(identity.masks, mean.shape[-1])
        m = torch.cat([m, m.flip(-1)]) if cfg.flip_prob > 0 else m
        weights = m + cfg.mask_weight * (1 - m)
    scheduler = training_scheduler(base)
    token_text = " ".join(placeholder_tokens(cfg.placeholder, len(learned[0].vectors())))
    dev, dtype = base.device, base.dtype
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.mixed_precision == "bf16")

    def step(_: int) -> dict:
        # Everything random comes from the checkpointed generator `g`.
        idx = torch.randint(n_photos, (cfg.batch_size,), generator=g)
        if cfg.flip_prob > 0:
            idx = idx + n_photos * (torch.rand(cfg.batch_size, generator=g) < cfg.flip_prob).long()
        latents = mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g)
        noise = torch.randn(latents.shape, generator=g)
        t = sample_timesteps(scheduler, cfg.batch_size, g)
        picks = torch.randint(len(cfg.templates), (cfg.batch_size,), generator=g)
        prompts = [cfg.templates[int(i)].replace("{}", token_text) for i in picks]

        with autocast:
            noisy = scheduler.add_noise(latents, noise, t).to(dev, dtype)
            hidden, added = encode_prompts(base, prompts, tokenizers=tokenizers, size=(res, res))
            pred = base.unet(noisy, t.to(dev), hidden, added_cond_kwargs=added).sample
        target = diffusion_target(scheduler, latents, noise, t).to(dev)
        loss = l_simple(pred, target, None if weights is None else weights[idx].to(dev))
        if cfg.reparam_base is None:  # L2 regularisation of plain vectors (seed 001, §Experiment)
            loss = loss + cfg.l2_weight * sum(lt.vectors().pow(2).sum(-1).mean() for lt in learned)
        return {"loss": loss}

    return step


def _fingerprint(cfg: TextualInversionConfig, identity: Any, base: Any) -> str:
    """Hash of everything a resumed run must share with the interrupted one."""
    settings = {k: v for k, v in cfg.to_dict().items() if k not in _RESUMABLE_CHANGES}
    return fingerprint(
        settings,
        identity.embedding.tobytes(),
        identity.squares.tobytes()[:1_000_000],
        f"{base.family}:{base.source}",
    )


def _loss_summary(losses: list[float]) -> dict:
    finite = [x for x in losses if x == x]
    if not finite:
        return {"steps": len(losses)}
    tail = finite[-50:]
    return {
        "steps": len(losses),
        "first": round(finite[0], 6),
        "last": round(finite[-1], 6),
        "min": round(min(finite), 6),
        "mean_last_50": round(sum(tail) / len(tail), 6),
        "non_finite_steps": len(losses) - len(finite),
    }
