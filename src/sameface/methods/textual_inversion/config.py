"""Settings of the modified textual inversion (seed 001, Livshits 2023)."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

INITS = ("auto", "face", "rand2", "id")

DEFAULT_TEMPLATES = (
    "a photo of {}",
    "a close-up portrait of {}",
    "a photo of the face of {}",
    "a cropped photo of {}",
    "a good photo of {}",
    "a bright photo of {}",
    "a portrait photo of {}",
    "a headshot of {}",
    "a close-up photo of {}",
    "a photo of {}, looking at the camera",
)
"""Training prompts; `{}` is replaced by the placeholder's tokens."""


def parse_reparam_base(value: str | float | None) -> float | None:
    """'2.0' / 'e' / 'off' (or a number / None) -> the base `a` of eq. 1, or None for off."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    v = str(value).strip().lower()
    if v in ("off", "none", "no", "false"):
        return None
    if v == "e":
        return math.e
    try:
        return float(v)
    except ValueError:
        raise ValueError(
            f"reparam base must be a number > 1, 'e' or 'off', got {value!r}"
        ) from None


@dataclass
class TextualInversionConfig:
    """Modified textual inversion for faces (seed 001_908721e677f5a139, Livshits 2023).

    Attributes:
        placeholder: the word prompts use for the person.
        num_tokens: learned vectors per text encoder; None (default) = as many as the init
            gives: 2 for "face" ("human face") and "rand2", the celebrity name's tokens for "id".
        init: "face" (tokens of "human face"), "rand2" (random celebrity-name vectors),
            "id" (name tokens of the most similar celebrity by face recognition; the paper's
            best), or "auto" ("id" when a celebrity bank is given, else "face").
        reparam_base: base `a` of v = a**n · d/‖d‖ (eq. 1; the paper tried 2.0 and e≈2.71),
            or None for plain vectors with L2 regularisation.
        l2_weight: weight of the L2 penalty on the vectors when not reparameterised (paper: 0.01).
        steps: optimisation steps (paper: 400).
        learning_rate: Adam learning rate (not given in the paper; 5e-3 as in the original
            textual inversion).
        adam_betas: Adam β (paper: 0.9, 0.98).
        batch_size: images per step.
        resolution: training resolution in pixels; None = the base model's native size.
        templates: training prompts.
        flip_prob: probability of a horizontal flip (light augmentation).
        mask_weight: weight of the loss outside the face mask; 1.0 = no masking (default),
            0.0 = face only.
        seed: RNG seed of the run (timesteps, noise, prompts, augmentation).
        checkpoint_every: steps between checkpoints (0 = only at the end / on interrupt).
        mixed_precision: "no" or "bf16" (forward passes under bfloat16 autocast; the base
            model's weights are untouched. For the fastest CPU path load the base in bf16).
        gradient_checkpointing: trade compute for memory in the UNet.
        max_nan_steps: give up after this many consecutive non-finite losses.
        celeb_bank: celebrity bank folder for the "id" and "rand2" inits.
    """

    placeholder: str = "<id>"
    num_tokens: int | None = None
    init: str = "auto"
    reparam_base: float | None = 2.0
    l2_weight: float = 0.01
    steps: int = 400
    learning_rate: float = 5e-3
    adam_betas: tuple[float, float] = (0.9, 0.98)
    batch_size: int = 1
    resolution: int | None = None
    templates: tuple[str, ...] = field(default=DEFAULT_TEMPLATES)
    flip_prob: float = 0.5
    mask_weight: float = 1.0
    seed: int = 0
    checkpoint_every: int = 50
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    max_nan_steps: int = 5
    celeb_bank: str | None = None

    def __post_init__(self) -> None:
        errors = _type_errors(self)
        if errors:
            raise ValueError("invalid TextualInversionConfig: " + "; ".join(errors))
        self.reparam_base = parse_reparam_base(self.reparam_base)
        self.adam_betas = tuple(float(b) for b in self.adam_betas)
        self.templates = tuple(self.templates)
        if not self.placeholder or any(c.isspace() for c in self.placeholder):
            errors.append(f"placeholder must be one word without spaces, got {self.placeholder!r}")
        if self.num_tokens is not None and not 1 <= self.num_tokens <= 16:
            errors.append(f"num_tokens must be in 1..16, got {self.num_tokens}")
        if self.init not in INITS:
            errors.append(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.reparam_base is not None and not self.reparam_base > 1.0:
            errors.append(f"reparam_base must be > 1 (or off), got {self.reparam_base}")
        if self.steps < 1:
            errors.append(f"steps must be >= 1, got {self.steps}")
        if not self.learning_rate > 0:
            errors.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            errors.append(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}")
        if self.batch_size < 1:
            errors.append(f"batch_size must be >= 1, got {self.batch_size}")
        if self.resolution is not None and (self.resolution < 8 or self.resolution % 8):
            errors.append(f"resolution must be a multiple of 8, got {self.resolution}")
        if not self.templates or any(t.count("{}") != 1 for t in self.templates):
            errors.append("every template must contain '{}' exactly once, where the person goes")
        if not 0 <= self.flip_prob <= 1:
            errors.append(f"flip_prob must be in [0, 1], got {self.flip_prob}")
        if not 0 <= self.mask_weight <= 1:
            errors.append(f"mask_weight must be in [0, 1], got {self.mask_weight}")
        if self.max_nan_steps < 1:
            errors.append(f"max_nan_steps must be >= 1, got {self.max_nan_steps}")
        if self.checkpoint_every < 0:
            errors.append(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.mixed_precision not in ("no", "bf16"):
            errors.append(f"mixed_precision must be 'no' or 'bf16', got {self.mixed_precision!r}")
        if errors:
            raise ValueError("invalid TextualInversionConfig: " + "; ".join(errors))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        d["templates"] = list(self.templates)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TextualInversionConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


_INTS = ("steps", "batch_size", "seed", "checkpoint_every", "max_nan_steps")
_OPTIONAL_INTS = ("num_tokens", "resolution")
_FLOATS = ("l2_weight", "learning_rate", "flip_prob", "mask_weight")
_STRS = ("placeholder", "init", "mixed_precision")


def _type_errors(cfg: TextualInversionConfig) -> list[str]:
    """Wrong types get a readable message here, before any arithmetic on them fails obscurely."""

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    errors = []
    for name in _INTS:
        if not is_int(getattr(cfg, name)):
            errors.append(f"{name} must be a whole number, got {getattr(cfg, name)!r}")
    for name in _OPTIONAL_INTS:
        v = getattr(cfg, name)
        if v is not None and not is_int(v):
            errors.append(f"{name} must be a whole number or unset, got {v!r}")
    for name in _FLOATS:
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            errors.append(f"{name} must be a number, got {v!r}")
    for name in _STRS:
        if not isinstance(getattr(cfg, name), str):
            errors.append(f"{name} must be text, got {getattr(cfg, name)!r}")
    if not isinstance(cfg.gradient_checkpointing, bool):
        errors.append(
            f"gradient_checkpointing must be true or false, got {cfg.gradient_checkpointing!r}"
        )
    betas = cfg.adam_betas
    if not isinstance(betas, (list, tuple)) or not all(
        isinstance(b, (int, float)) and not isinstance(b, bool) for b in betas
    ):
        errors.append(f"adam_betas must be two numbers, got {betas!r}")
    if (
        isinstance(cfg.templates, str)
        or not isinstance(cfg.templates, (list, tuple))
        or not all(isinstance(t, str) for t in cfg.templates)
    ):
        errors.append("templates must be a list of texts")
    if cfg.celeb_bank is not None and not isinstance(cfg.celeb_bank, (str, os.PathLike)):
        errors.append(f"celeb_bank must be a folder path, got {cfg.celeb_bank!r}")
    if not (
        cfg.reparam_base is None or isinstance(cfg.reparam_base, (str, int, float))
    ) or isinstance(cfg.reparam_base, bool):
        errors.append(f"reparam_base must be a number > 1, 'e' or 'off', got {cfg.reparam_base!r}")
    return errors
