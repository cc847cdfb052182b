"""Settings of PuLID (seed 004_9d021940ababaf46; Guo et al. 2024, "PuLID: Pure and Lightning ID
Customization via Contrastive Alignment").

One dataclass holds the model's shape (ID encoder, recogniser, CLIP vision model, adapter
init), the inference default and the training settings `train.py` reads.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

from ...adapters.id_encoder_config import ENCODER_KINDS, MULTI_PHOTO, IDEncoderSettings
from ...faces.id_loss import RECOGNIZER_DIMS

FAST_SAMPLERS = ("lcm", "turbo", "ddim")
ID_LOSS_BRANCHES = ("lightning", "one-step")
ADAPTER_INITS = ("auto", "copy", "zero_v", "random")
UNCOND_VIT = ("zeros", "black")
STAGES = (1, 2, 3)
UNTRAINED = "untrained"
"""`adapter` value that makes `personalize` use a freshly initialised model (tests, smoke runs)."""


@dataclass
class PuLIDConfig(IDEncoderSettings):
    """PuLID (seed 004_9d021940ababaf46, Guo et al. 2024).

    Model shape (seed: "faceid and clip image embeds concatenate and use MLP to map them into
    5 tokens"; PuLID's released SDXL model refines this to an IDFormer with 32 tokens): the
    encoder fields of `IDEncoderSettings` (encoder, num_tokens, num_id_tokens, encoder_dim,
    depth_per_layer, heads, dim_head, ff_mult, mlp_dim, multi_photo), and

    Attributes:
        vit_layers: CLIP vision hidden states the IDFormer reads, as indices into
            transformers' `hidden_states` tuple (0 = patch embeddings, i = output of the i-th
            transformer layer). PuLID reads 5 layers of the 24-layer EVA02-CLIP-L:
            (4, 8, 12, 16, 20). Checked against the vision model when the model is built.
        recognizer: face recogniser of the ID embedding: "sface" (128-d, ships offline),
            "insightface" (512-d ArcFace antelopev2, PuLID's choice, when its files are
            local), "dlib" (128-d) or "world" (the proving-ground world's recogniser and
            detector, `world`). The identity must be built with the same one.
        world: the proving-ground world folder of `recognizer: world`; None = the one
            `sameface.world.world.resolve_world` finds ($SAMEFACE_WORLD, else the shipped one).
        clip_vision: the CLIP image encoder: a local folder, a hub id already in the Hugging
            Face cache (never downloaded), EVA02-CLIP's checkpoint file
            (`EVA02_CLIP_L_336_psz14_s6B.pt`, or "EVA02-CLIP-L-14-336" to find it in the
            cache), or "tiny-random[:seed]" (tests). PuLID's release uses EVA02-CLIP-L-14-336
            (an imported release takes your file here); the default for training your own is
            "openai/clip-vit-large-patch14-336" (24 layers, width 1024, embedding 768).
        raw_id_embedding: feed the recogniser's raw (unnormalised) embedding, as the released
            PuLID does with antelopev2 (`Identity.raw_embeddings`; the identity must be built
            with this sameface, which records the lengths). False = the unit embedding (ours).
        face_parser: a BiSeNet face-parsing weights file (facexlib's `parsing_bisenet.pth`,
            local): the released PuLID's face input, the aligned face with background,
            clothes, ears and neck painted white by the parser (`sameface.faces.bisenet`).
            None = sameface's face masks (the offline default, also what training uses).
        adapter_init: start of the adapter's K/V projections (`sameface.adapters.IDAdapter`):
            "copy" (the layer's text K/V, IP-Adapter's recipe), "zero_v" (adds exactly 0 at
            the start), "random", or "auto" ("copy" when widths match).
        uncond_vit: the unconditional ID tokens (CFG's negative half, dropped conditions):
            the encoder applied to a zero id ⊕ CLIP vector and "zeros" (zero ViT hidden
            states: PuLID's released code) or "black" (the ViT states of a black image).
        adapter: the trained PuLID folder (`PuLIDModel.save`) that `personalize` encodes
            with; "untrained" uses a freshly initialised model (tests and smoke runs only).
        id_scale: weight of the ID attention in training (1.0).
        inference_id_scale: default weight at generation (PuLID's demo: 0.8).
        num_zero: zero tokens appended to the ID tokens in every ID attention, a fixed
            softmax sink that softens the identity (PuLID v1.1's demo: 20; 0 = none).
        ortho: how the ID attention joins the text attention: "off" (added, the paper),
            "v1" or "v2" (only what is orthogonal to the text output; PuLID v1.1's demo: v2).

    Training (read by `train.py`; the seed gives the stages and losses, not the numbers):

    Attributes:
        stage: 1 = diffusion loss only; 2 = + accurate ID loss on the Lightning branch;
            3 = + contrastive alignment loss (seed: "Training process", three stages).
        steps: optimisation steps of this stage (not given in the seed).
        learning_rate: AdamW learning rate (1e-4, as IP-Adapter).
        adam_betas: AdamW β.
        weight_decay: AdamW weight decay.
        batch_size: samples per step.
        resolution: training resolution in pixels; None = the base model's native size.
        id_drop_prob: probability of replacing a sample's ID condition by the unconditional
            one, for classifier-free guidance (0.1).
        id_loss_branch: the image the ID loss sees from stage 2 on: "lightning" (the paper's
            accurate ID loss: generated from pure noise in `lightning_steps` steps) or
            "one-step" (the naive ID loss of the paper's ablation: Tweedie's x̂0 of the
            diffusion branch's own prediction at its timestep, decoded).
        lightning_steps: denoising steps of the fast "Lightning T2I" branch from pure noise
            (seed: 4).
        fast_sampler: the fast branch's sampler: "lcm" (LCM scheduler on an LCM-distilled base
            or with `fast_weights`), "turbo" (SD/SDXL-Turbo style few-step base) or "ddim"
            (plain DDIM on the base: no extra weights, lower quality).
        fast_weights: local weights of the fast branch (e.g. an LCM-LoRA or SDXL-Lightning
            4-step LoRA file); None = the base model as is.
        lambda_id: weight of L_id (seed: L = L_diff + L_align + λ_id L_id; PuLID paper: 1.0).
        lambda_align_sem: weight of L_align-sem (PuLID paper: 0.6).
        lambda_align_layout: weight of L_align-layout (PuLID paper: 0.1).
        mixed_precision: "no" or "bf16" (autocast of the frozen parts).
        gradient_checkpointing: trade compute for memory in the UNet.
        checkpoint_every: steps between checkpoints (0 = only at the end / on interrupt).
        seed: RNG seed (weight init, data order, noise).
        log_every: steps between log lines.
    """

    vit_layers: tuple[int, ...] = (4, 8, 12, 16, 20)
    recognizer: str = "sface"
    world: str | None = None
    clip_vision: str = "openai/clip-vit-large-patch14-336"
    raw_id_embedding: bool = False
    face_parser: str | None = None
    adapter_init: str = "copy"
    uncond_vit: str = "zeros"
    adapter: str | None = None
    id_scale: float = 1.0
    inference_id_scale: float = 0.8
    num_zero: int = 0
    ortho: str = "off"
    stage: int = 1
    steps: int = 10000
    learning_rate: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    batch_size: int = 4
    resolution: int | None = None
    id_drop_prob: float = 0.1
    id_loss_branch: str = "lightning"
    lightning_steps: int = 4
    fast_sampler: str = "ddim"
    fast_weights: str | None = None
    lambda_id: float = 1.0
    lambda_align_sem: float = 0.6
    lambda_align_layout: float = 0.1
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 500
    seed: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.ortho is False:  # YAML reads a bare `off` as false
            self.ortho = "off"
        errors = _type_errors(self)
        if errors:
            raise ValueError("invalid PuLIDConfig: " + "; ".join(errors))
        self.vit_layers = tuple(int(i) for i in self.vit_layers)
        self.adam_betas = tuple(float(b) for b in self.adam_betas)
        if isinstance(self.adapter, os.PathLike):
            self.adapter = os.fspath(self.adapter)
        if isinstance(self.fast_weights, os.PathLike):
            self.fast_weights = os.fspath(self.fast_weights)
        if isinstance(self.world, os.PathLike):
            self.world = os.fspath(self.world)
        if isinstance(self.face_parser, os.PathLike):
            self.face_parser = os.fspath(self.face_parser)
        choices = {
            "encoder": ENCODER_KINDS,
            "recognizer": tuple(RECOGNIZER_DIMS),
            "fast_sampler": FAST_SAMPLERS,
            "id_loss_branch": ID_LOSS_BRANCHES,
            "adapter_init": ADAPTER_INITS,
            "uncond_vit": UNCOND_VIT,
            "multi_photo": MULTI_PHOTO,
            "mixed_precision": ("no", "bf16"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                errors.append(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if self.stage not in STAGES:
            errors.append(f"stage must be 1, 2 or 3, got {self.stage}")
        positive = ["num_tokens", "num_id_tokens", "encoder_dim", "depth_per_layer", "heads"]
        positive += ["dim_head", "ff_mult", "mlp_dim", "steps", "batch_size", "lightning_steps"]
        positive += ["log_every"]
        errors += [
            f"{n} must be >= 1, got {getattr(self, n)}" for n in positive if getattr(self, n) < 1
        ]
        if not self.vit_layers:
            errors.append("vit_layers must name at least one CLIP vision layer")
        elif min(self.vit_layers) < 0 or len(set(self.vit_layers)) != len(self.vit_layers):
            errors.append(f"vit_layers must be distinct indices >= 0, got {self.vit_layers}")
        if not self.clip_vision.strip():
            errors.append("clip_vision must name a CLIP vision model")
        if self.face_parser is not None and not self.face_parser.strip():
            errors.append("face_parser must be a weights file or unset")
        if self.adapter is not None and not self.adapter.strip():
            errors.append("adapter must be a folder path, 'untrained' or unset")
        if not self.id_scale >= 0 or not self.inference_id_scale >= 0:
            errors.append("id_scale and inference_id_scale must be >= 0")
        if self.num_zero < 0:
            errors.append(f"num_zero must be >= 0, got {self.num_zero}")
        if self.ortho not in ("off", "v1", "v2"):
            errors.append(f"ortho must be off, v1 or v2, got {self.ortho!r}")
        if not self.learning_rate > 0:
            errors.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            errors.append(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}")
        if self.weight_decay < 0:
            errors.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.resolution is not None and (self.resolution < 8 or self.resolution % 8):
            errors.append(f"resolution must be a multiple of 8, got {self.resolution}")
        if not 0 <= self.id_drop_prob < 1:
            errors.append(f"id_drop_prob must be in [0, 1), got {self.id_drop_prob}")
        for name in ("lambda_id", "lambda_align_sem", "lambda_align_layout"):
            if getattr(self, name) < 0:
                errors.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.checkpoint_every < 0:
            errors.append(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if errors:
            raise ValueError("invalid PuLIDConfig: " + "; ".join(errors))

    @property
    def recognizer_dim(self) -> int:
        """Width of the recogniser's embedding (128 SFace / dlib, 512 insightface; the world's
        own width for "world", read from its folder)."""
        from ...faces.id_loss import recognizer_dim

        return recognizer_dim(self.recognizer, self.world)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["vit_layers"] = list(self.vit_layers)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PuLIDConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


_INTS = (
    "num_zero",
    "num_tokens",
    "num_id_tokens",
    "encoder_dim",
    "depth_per_layer",
    "heads",
    "dim_head",
    "ff_mult",
    "mlp_dim",
    "stage",
    "steps",
    "batch_size",
    "lightning_steps",
    "checkpoint_every",
    "seed",
    "log_every",
)
_FLOATS = (
    "id_scale",
    "inference_id_scale",
    "learning_rate",
    "weight_decay",
    "id_drop_prob",
    "lambda_id",
    "lambda_align_sem",
    "lambda_align_layout",
)
_STRS = (
    "ortho",
    "encoder",
    "multi_photo",
    "recognizer",
    "clip_vision",
    "adapter_init",
    "uncond_vit",
    "fast_sampler",
    "id_loss_branch",
    "mixed_precision",
)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _type_errors(cfg: PuLIDConfig) -> list[str]:
    """Wrong types get a readable message here, before any arithmetic on them fails obscurely."""
    errors = [
        f"{n} must be a whole number, got {getattr(cfg, n)!r}"
        for n in _INTS
        if not _is_int(getattr(cfg, n))
    ]
    errors += [
        f"{n} must be a number, got {getattr(cfg, n)!r}"
        for n in _FLOATS
        if not _is_number(getattr(cfg, n))
    ]
    errors += [
        f"{n} must be text, got {getattr(cfg, n)!r}"
        for n in _STRS
        if not isinstance(getattr(cfg, n), str)
    ]
    if cfg.resolution is not None and not _is_int(cfg.resolution):
        errors.append(f"resolution must be a whole number or unset, got {cfg.resolution!r}")
    if not isinstance(cfg.raw_id_embedding, bool):
        errors.append(f"raw_id_embedding must be true or false, got {cfg.raw_id_embedding!r}")
    if not isinstance(cfg.gradient_checkpointing, bool):
        errors.append(
            f"gradient_checkpointing must be true or false, got {cfg.gradient_checkpointing!r}"
        )
    layers = cfg.vit_layers
    if (
        isinstance(layers, str)
        or not isinstance(layers, (list, tuple))
        or not all(map(_is_int, layers))
    ):
        errors.append(f"vit_layers must be a list of whole numbers, got {layers!r}")
    betas = cfg.adam_betas
    if not isinstance(betas, (list, tuple)) or not all(map(_is_number, betas)):
        errors.append(f"adam_betas must be two numbers, got {betas!r}")
    for name in ("adapter", "fast_weights", "world", "face_parser"):
        v = getattr(cfg, name)
        if v is not None and not isinstance(v, (str, os.PathLike)):
            errors.append(f"{name} must be a path or unset, got {v!r}")
    return errors
