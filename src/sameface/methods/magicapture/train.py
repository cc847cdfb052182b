"""Personalise: MagiCapture's two phases for one identity (and optionally a style reference).

Reads top to bottom: the data (selfies with face masks, the reference with its non-face mask,
as cached VAE posteriors), the words [V1] (and [V2]), the run with its two phases — textual
inversion of the words, then words + a LoRA on the UNet with the Attention Refocusing and ID
losses — and the artifact.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import __version__
from ...adapters.attention import AttentionMaps, AttentionRecorder, attach_feature, detach_feature
from ...adapters.lora import TARGET_SETS, UNetLora
from ...adapters.tokens import EncoderTokens, LearnedTokens, expand_placeholder
from ...errors import SamefaceError
from ...identity import check_destination
from ...losses import attention_refocusing_loss, diffusion_target, l_simple, sample_timesteps
from ...models.text import encode_prompts
from ...training import Phase, TrainingRun, fingerprint
from ...training.few_step import one_step_image
from ...training.frozen import frozen_base, training_scheduler
from ...training.latents import encode_latent_stats, to_tensor_images, to_tensor_masks
from .artifact import save_artifact
from .config import MagiCaptureConfig
from .reference import load_style_reference

# Settings that may change between an interrupted run and its resumption.
_RESUMABLE_CHANGES = ("checkpoint_every", "max_nan_steps", "mixed_precision", "lora_scale")
INSTANCE, STYLE, COMPOSED = 0, 1, 2


def personalize(
    identity: Any,
    base: Any,
    config: MagiCaptureConfig | None = None,
    out_dir: str | Path = "out",
    *,
    base_spec: str | None = None,
    bank: Any = None,
    resume: bool = True,
    progress: bool = True,
    style: Any = None,
) -> Path:
    """Learn [V1] (and [V2] from `config.style_reference`) and a LoRA; save the artifact.

    Args:
        identity: a `sameface.Identity` (its square crops and face masks are the selfies).
        base: a `BaseModel` (given back as it was: weights, modules, flags, tokenizers).
        config: settings; defaults to the paper's / public code's.
        out_dir: artifact folder; checkpoints go to `out_dir/checkpoints` while training.
        base_spec: how to load `base` again (recorded for `generate`).
        bank: unused (the registry's common signature).
        resume: continue from the newest checkpoint in `out_dir`.
        progress: show a progress bar.
        style: the style reference (image or `Identity`), overriding `config.style_reference`.

    Raises:
        TrainingError: non-finite losses, or an interruption (checkpoint saved; run again).
        SamefaceError: a reference of the same person or without a face, no recogniser for the
            ID loss.
    """
    cfg = config or MagiCaptureConfig()
    out = Path(out_dir)
    check_destination(out / "identity", overwrite=True)  # fail now, not after training
    res = cfg.resolution or base.resolution
    source = style if style is not None else cfg.style_reference
    ref = (
        # At the selfies' square size, so their crops and masks stack.
        load_style_reference(
            source, identity, identity.squares.shape[1], cfg.reference_expand, world=cfg.world
        )
        if source is not None
        else None
    )
    id_models = _id_models(cfg, identity, base.device)
    data = _Data(identity, ref, base, res, cfg)
    g = torch.Generator().manual_seed(cfg.seed)  # every random draw of the run
    words = _initial_words(cfg, base, ref is not None, g)
    run = TrainingRun(
        "MagiCapture",
        out / "checkpoints",
        fingerprint=_fingerprint(cfg, identity, ref, base),
        rngs={"rng": g},
        modules={f"{name}.{i}": lt for name, lts in words.items() for i, lt in enumerate(lts)},
        checkpoint_every=cfg.checkpoint_every,
        max_nan_steps=cfg.max_nan_steps,
        progress=progress,
    )
    if not resume:
        run.clear()

    word_params = [p for lts in words.values() for lt in lts for p in lt.parameters()]
    with contextlib.ExitStack() as stack:
        counts = {n: lts[0].v.shape[0] for n, lts in words.items()}
        tokens = EncoderTokens(base.tokenizers, base.text_encoders, counts)
        stack.callback(tokens.remove)  # the base model is given back without our hooks
        for name, lts in words.items():
            tokens.set(name, lts)
        stack.enter_context(frozen_base(base, gradient_checkpointing=cfg.gradient_checkpointing))
        recorder = attach_feature(base.unet, AttentionRecorder())
        stack.callback(detach_feature, base.unet, recorder)
        lora: dict[str, UNetLora] = {}

        def build_lora(phase: Phase) -> None:
            # Injected when phase 2 begins (fresh or resumed) and removed before `frozen_base`
            # restores the UNet's flags module by module (the stack unwinds in reverse).
            lora["unet"] = UNetLora(
                base.unet, cfg.lora_rank, TARGET_SETS[cfg.lora_targets], generator=g
            )
            stack.callback(lora["unet"].remove)
            phase.optimizer = torch.optim.AdamW(
                [
                    {"params": list(lora["unet"].parameters())},
                    {
                        "params": word_params,
                        "mult": cfg.word_learning_rate / cfg.lora_learning_rate,
                    },
                ],
                lr=cfg.lora_learning_rate,
                weight_decay=cfg.weight_decay,
            )
            phase.modules = {"lora": lora["unet"].module()}

        step = _StepFn(cfg, base, data, tokens, id_models, g)
        run.add_phase(
            Phase(
                "textual inversion",
                cfg.ti_steps,
                step.phase(1),
                optimizer=torch.optim.AdamW(word_params, lr=cfg.ti_learning_rate, weight_decay=0.0),
                lr=_linear_decay(cfg.ti_learning_rate, cfg.ti_steps),
                project=_norm_decay(cfg, base, words) if cfg.ti_norm_decay else None,
            )
        )
        run.add_phase(
            Phase(
                "LoRA",
                cfg.lora_steps,
                step.phase(2),
                lr=_linear_decay(cfg.lora_learning_rate, cfg.lora_steps),
                grad_clip=cfg.grad_clip,
                build=build_lora,
            )
        )
        if resume:
            run.restore()
        run.train()
        lora_tensors = {k: v.clone() for k, v in lora["unet"].state_dict_diffusers().items()}

    vectors = {name: [lt.vectors().detach() for lt in lts] for name, lts in words.items()}
    meta = {
        "method": "magicapture",
        "format_version": 1,
        "sameface_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base": base_spec or base.source,
        "family": base.family,
        "prediction_type": base.prediction_type,
        "resolution": res,
        "placeholder": cfg.placeholder,
        "num_tokens": 1,
        "style_placeholder": cfg.style_placeholder if ref is not None else None,
        "style_reference": _describe_reference(ref),
        "lora": {"rank": cfg.lora_rank, "alpha": cfg.lora_rank, "targets": cfg.lora_targets},
        "config": cfg.to_dict(),
        "loss": {"steps": len(run.losses()), "last": _last(run.losses())},
        "identity": {
            "photos": identity.num_photos,
            "recognizer": identity.meta.get("recognizer", {}),
        },
    }
    identity.save(out / "identity", overwrite=True, save_crops=False)
    save_artifact(out, base.family, cfg, vectors, lora_tensors, meta)
    run.clear()
    return out


class _Data:
    """The training images as cached VAE posteriors, with each sample's region on the latent
    grid: the face for the selfies, everything but the face for the reference."""

    def __init__(self, identity: Any, ref: Any, base: Any, res: int, cfg: MagiCaptureConfig):
        images = to_tensor_images(identity.squares, res)
        masks = (identity.masks > 127).astype(np.uint8) * 255
        self.n_photos = identity.num_photos
        if ref is not None:
            images = torch.cat([images, to_tensor_images(ref.squares[:1], res)])
            ref_mask = (ref.masks[:1] > 127).astype(np.uint8) * 255
            if ref_mask.shape[1:] != masks.shape[1:]:  # a reference Identity of another size
                import cv2

                size = masks.shape[1:][::-1]
                ref_mask = cv2.resize(ref_mask[0], size, interpolation=cv2.INTER_NEAREST)[None]
            masks = np.concatenate([masks, ref_mask])
        self.count = len(images)  # images before flipping; the reference is the last
        if cfg.flip_prob > 0:
            images = torch.cat([images, images.flip(-1)])
            masks = np.concatenate([masks, masks[:, :, ::-1]])
        self.flips, self.flip_prob = cfg.flip_prob > 0, cfg.flip_prob
        self.mean, self.std = (x.cpu() for x in encode_latent_stats(base.vae, images))
        self.face = (
            to_tensor_masks(np.ascontiguousarray(masks), self.mean.shape[-1]) > 0.5
        ).float()
        if not self.face[: self.n_photos].flatten(1).any(1).all():
            raise SamefaceError("a photo's face mask is empty on the latent grid: use larger faces")
        if ref is not None:
            on_grid = self.face[self.count - 1]
            if not on_grid.any() or on_grid.all():
                raise SamefaceError(
                    "the style reference's face is empty or fills the image on the latent grid: "
                    "use a portrait where the face is larger but leaves some background "
                    "(or another reference_expand)"
                )
        self.has_style = ref is not None
        self.embedding = torch.from_numpy(np.asarray(identity.embedding, dtype=np.float32))

    def index(self, kind: int, g: torch.Generator) -> int:
        i = (
            int(torch.randint(self.n_photos, (1,), generator=g))
            if kind == INSTANCE
            else self.count - 1
        )
        if self.flips and bool(torch.rand(1, generator=g) < self.flip_prob):
            i += self.count
        return i


class _StepFn:
    """Step functions of both phases: L_rec (+ L_AR and L_id in phase 2) on a random batch."""

    def __init__(self, cfg, base, data: _Data, tokens: EncoderTokens, id_models, g):
        self.cfg, self.base, self.data, self.tokens, self.g = cfg, base, data, tokens, g
        self.id_models = id_models
        self.scheduler = training_scheduler(base)
        self.res = cfg.resolution or base.resolution
        # The special tokens whose attention is refocused: [V1], then each vector of [V2].
        self.ids = [tokens.ids[0][cfg.placeholder][0]] + (
            list(tokens.ids[0][cfg.style_placeholder]) if data.has_style else []
        )

    def phase(self, number: int) -> Callable[[int], dict]:
        steps = self.cfg.ti_steps if number == 1 else self.cfg.lora_steps

        def step(i: int) -> dict:
            return self.step(number, i < steps // 2)

        return step

    def _kinds(self, number: int) -> list[int]:
        """Phase 1: selfies and reference alike; phase 2 adds composed prompts (1 : 1 : 1)."""
        composed = [COMPOSED] if number == 2 and self.cfg.composed_prompts else []
        choices = [INSTANCE] + ([STYLE, *composed] if self.data.has_style else [])
        picks = torch.randint(len(choices), (self.cfg.batch_size,), generator=self.g)
        return [choices[int(p)] for p in picks]

    def _prompt(self, kind: int) -> str:
        cfg = self.cfg
        templates = (cfg.instance_templates, cfg.style_templates, cfg.composed_templates)[kind]
        t = templates[int(torch.randint(len(templates), (1,), generator=self.g))]
        style = expand_placeholder(cfg.style_placeholder, cfg.style_placeholder, cfg.style_vectors)
        return t.replace("{id}", cfg.placeholder).replace("{style}", style)

    def step(self, number: int, first_half: bool) -> dict:
        cfg, base, data, g = self.cfg, self.base, self.data, self.g
        dev, dtype = base.device, base.dtype
        kinds = self._kinds(number)
        idx = torch.tensor([data.index(k, g) for k in kinds])
        prompts = [self._prompt(k) for k in kinds]
        face = data.face[idx]
        # The region each sample reconstructs (soft: `mask_floor` outside), and the regions the
        # special tokens may attend: [V1] the face, [V2] the rest; a token absent from a
        # prompt gets a mask of ones (no penalty).
        region = torch.stack(
            [face[j] if k == INSTANCE else 1 - face[j] for j, k in enumerate(kinds)]
        )
        region = region + cfg.mask_floor * (1 - region)
        token_masks = torch.stack(
            [
                torch.cat(
                    [
                        face[j] if k != STYLE else torch.ones_like(face[j]),
                        *[1 - face[j] if k != INSTANCE else torch.ones_like(face[j])]
                        * (len(self.ids) - 1),
                    ]
                )
                for j, k in enumerate(kinds)
            ]
        )
        weights = torch.tensor(
            [cfg.style_weight if first_half and k != INSTANCE else 1.0 for k in kinds]
        )
        latents = data.mean[idx] + data.std[idx] * torch.randn(data.mean[idx].shape, generator=g)
        noise = torch.randn(latents.shape, generator=g)
        t = sample_timesteps(self.scheduler, cfg.batch_size, g)
        autocast = torch.autocast(
            dev.type, dtype=torch.bfloat16, enabled=cfg.mixed_precision == "bf16"
        )
        wants_ar = number == 2 and cfg.ar_weight > 0
        request = AttentionMaps(self._positions(prompts)) if wants_ar else None
        with autocast:
            hidden, added = encode_prompts(
                base, prompts, tokenizers=self.tokens.tokenizers, size=(self.res, self.res)
            )
            noisy = self.scheduler.add_noise(latents, noise, t).to(dev, dtype)
            pred = base.unet(
                noisy,
                t.to(dev),
                hidden,
                added_cond_kwargs=added,
                cross_attention_kwargs={"attn_maps": request} if request is not None else None,
            ).sample
        target = diffusion_target(self.scheduler, latents, noise, t).to(dev)
        rec = sum(
            w * l_simple(pred[j : j + 1], target[j : j + 1], region[j : j + 1].to(dev))
            for j, w in enumerate(weights.tolist())
        ) / len(kinds)
        out = {"loss": rec, "reconstruction": float(rec.detach())}
        if wants_ar:
            ar = attention_refocusing_loss(
                self._ar_maps(request, latents.shape[-1]), token_masks.to(dev)
            )
            out["loss"] = out["loss"] + cfg.ar_weight * ar
            out["refocusing"] = float(ar.detach())
        wants_id = [j for j, k in enumerate(kinds) if k != STYLE]
        if number == 2 and cfg.id_weight > 0 and wants_id:
            lid = self._id_loss(
                latents[wants_id], noise[wants_id], hidden[wants_id], added, wants_id
            )
            out["loss"] = out["loss"] + cfg.id_weight * lid
            out["id"] = float(lid.detach())
        return out

    def _positions(self, prompts: list[str]) -> torch.Tensor:
        """(B, n) positions of [V1] (and [V2]) in each tokenised prompt (0 where absent)."""
        tok = self.tokens.tokenizers[0]
        rows = []
        for p in prompts:
            ids = tok(p, padding="max_length", max_length=tok.model_max_length, truncation=True)
            ids = list(ids["input_ids"])
            rows.append([ids.index(t) if t in ids else 0 for t in self.ids])
        return torch.tensor(rows)

    def _ar_maps(self, request: AttentionMaps, side: int) -> list[torch.Tensor]:
        """The maps of the layers at latent / `ar_downsample` (the public code: 16×16 of 64×64),
        or of the layers nearest that size when the UNet has none (small test models)."""
        want = (side // self.cfg.ar_downsample) ** 2
        sizes = {m.shape[-1] for m in request.maps.values()}
        size = min(sizes, key=lambda s: (abs(s - want), s))
        return [m for m in request.maps.values() if m.shape[-1] == size]

    def _id_loss(self, latents, noise, hidden, added, rows) -> torch.Tensor:
        """L_id = 1 − cos(R(B(x̂0)), R(I_s)) on x̂0 predicted at t_id ~ U(0, T′) (MagiCapture,
        composed-prompt learning; Tweedie's x̂0 from one UNet call, decoded by the VAE)."""
        from ...losses import face_id_loss

        base, cfg = self.base, self.cfg
        recognizer, detector = self.id_models
        t_id = torch.randint(0, cfg.id_max_timestep, (len(rows),), generator=self.g)
        noisy = self.scheduler.add_noise(latents, noise, t_id)
        sub = None
        if added is not None:
            sub = {k: v[rows] for k, v in added.items()}
        with torch.autocast(
            base.device.type, dtype=torch.bfloat16, enabled=cfg.mixed_precision == "bf16"
        ):
            pred = base.unet(
                noisy.to(base.device, base.dtype),
                t_id.to(base.device),
                hidden,
                added_cond_kwargs=sub,
            ).sample.float()
        images = one_step_image(base, self.scheduler, noisy, pred, t_id)
        reference = self.data.embedding.to(images.device).expand(len(rows), -1)
        loss, _ = face_id_loss(images, reference, recognizer, detector)
        return loss


def _id_models(cfg: MagiCaptureConfig, identity: Any, device: Any) -> Any:
    """The differentiable recogniser + detector of the ID loss (None when it is off)."""
    if cfg.id_weight <= 0:
        return None
    from ...faces.id_loss import id_loss_models

    own = identity.meta.get("recognizer", {}).get("name", "sface")
    name = cfg.recognizer or own
    if name != own:
        raise SamefaceError(
            f"the ID loss would run {name} against an identity embedded with {own}: the two "
            "embeddings are not comparable; build the identity with the same recogniser"
        )
    if name not in ("sface", "world"):
        raise SamefaceError(
            f"MagiCapture's ID loss needs a differentiable recogniser (sface or world); the "
            f"identity was embedded with {name}: rebuild it with --recognizer sface, or pass "
            "--id-weight 0"
        )
    return id_loss_models(name, device, cfg.world)


def _initial_words(
    cfg: MagiCaptureConfig, base: Any, with_style: bool, g: torch.Generator
) -> dict[str, list[LearnedTokens]]:
    """[V1] from `init_word`'s first token; [V2] from N(0, style_init_std²) (the public code's
    default) or, with `style_init_word`, from that word's first token in every vector."""
    person = _first_token(base, "init_word", cfg.init_word)
    words = {
        cfg.placeholder: [
            LearnedTokens(enc.get_input_embeddings().weight.detach()[person].float(), None)
            for enc in base.text_encoders
        ]
    }
    if with_style:
        if cfg.style_init_word:
            style = _first_token(base, "style_init_word", cfg.style_init_word)
            starts = [
                enc.get_input_embeddings().weight.detach()[style * cfg.style_vectors].float()
                for enc in base.text_encoders
            ]
        else:
            starts = [
                torch.randn(
                    cfg.style_vectors, enc.get_input_embeddings().embedding_dim, generator=g
                )
                * cfg.style_init_std
                for enc in base.text_encoders
            ]
        words[cfg.style_placeholder] = [LearnedTokens(v, None) for v in starts]
    return {name: [lt.to(base.device) for lt in lts] for name, lts in words.items()}


def _first_token(base: Any, setting: str, word: str) -> list[int]:
    """[id] of `word`'s first token (the code starts a word from one token)."""
    token = base.tokenizer(word, add_special_tokens=False)["input_ids"][:1]
    if not token:
        raise SamefaceError(f"{setting} {word!r} has no tokens")
    return token


def _norm_decay(
    cfg: MagiCaptureConfig, base: Any, words: dict[str, list[LearnedTokens]]
) -> Callable[[int], None]:
    """The public code's `clip_ti_decay`, after every phase-1 update: each word vector v is
    pulled toward a norm n*, v ← v/‖v‖ · (‖v‖ + λ(n* − ‖v‖)) with λ = min(1, 100·lr). The code
    pulls to 0.4, about the norm of SD1.5's words; n* here is the norm of `init_word` in the
    same text encoder (SDXL's second encoder and the world's have their own scales)."""
    token = _first_token(base, "init_word", cfg.init_word)
    targets = [
        float(enc.get_input_embeddings().weight.detach()[token].float().norm())
        for enc in base.text_encoders
    ]
    lr = _linear_decay(cfg.ti_learning_rate, cfg.ti_steps)

    def project(step: int) -> None:
        pull = min(1.0, 100 * lr(step))  # the learning rate of the update just made
        for lts in words.values():
            for lt, target in zip(lts, targets, strict=True):
                norm = lt.v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                lt.v.mul_((norm + pull * (target - norm)) / norm)

    return project


def _linear_decay(lr: float, steps: int) -> Callable[[int], float]:
    """The public code's linear schedule, no warm-up."""
    return lambda i: lr * (1 - i / steps)


def _describe_reference(ref: Any) -> dict | None:
    if ref is None:
        return None
    return {"sources": ref.meta.get("sources"), "embedding_dim": int(ref.embedding.shape[-1])}


def _last(losses: list[float]) -> float | None:
    finite = [x for x in losses if x == x]
    return round(finite[-1], 6) if finite else None


def _fingerprint(cfg: MagiCaptureConfig, identity: Any, ref: Any, base: Any) -> str:
    """Hash of everything a resumed run must share with the interrupted one."""
    settings = {k: v for k, v in cfg.to_dict().items() if k not in _RESUMABLE_CHANGES}
    return fingerprint(
        settings,
        identity.embedding.tobytes(),
        identity.squares.tobytes()[:1_000_000],
        b"" if ref is None else ref.squares.tobytes()[:1_000_000],
        f"{base.family}:{base.source}",
    )
