"""Settings of MagiCapture (Hyeon et al. 2024, seed 003): two-phase TI -> LoRA with masked
reconstruction, composed-prompt learning and the Attention Refocusing loss."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..config_checks import number_problems, training_problems

LORA_TARGETS = ("cross-attention", "attention")

INSTANCE_TEMPLATES = (
    "a photo of a {id} person",
    "the photo of a {id} person",
    "a photo of a clean {id} person",
    "a bright photo of the {id} person",
    "a photo of the {id} person",
    "a good photo of the {id} person",
    "a photo of one {id} person",
    "a photo of a nice {id} person",
    "a good photo of a {id} person",
    "a photo of the nice {id} person",
)
"""Source prompts c_s for the selfies (the public code's instance templates)."""
STYLE_TEMPLATES = (
    "a photo of a person in the {style} style",
    "a painting of a person in the style of {style}",
    "a portrait of a person in the style of {style}",
    "a picture of a person in the style of {style}",
    "a close-up photo of a person in the style of {style}",
    "a good photo of a person in the style of {style}",
    "a rendition of a person in the style of {style}",
)
"""Reference prompts c_r for the style reference."""
COMPOSED_TEMPLATES = (
    *(t + " in the style of {style}" for t in INSTANCE_TEMPLATES),
    "a photo of a {id} person in the {style} style",
)
"""Composed prompts c_c (instance templates + "in the style of [V2]"), drawn at random."""


@dataclass
class MagiCaptureConfig:
    """MagiCapture (Hyeon et al., AAAI 2024; seed 003_0322ab1b36c87e54). Values are the public
    code's (junhahyung/MagiCapture, `train_magicapture.sh`) where the seed gives none.

    Attributes:
        style_reference: a portrait whose style, background and composition (not its face) the
            outputs take, learnt as `style_placeholder`; None = identity personalisation only
            (masked reconstruction, attention refocusing and the ID loss on the selfies).
        reference_expand: the reference's training square is its face box expanded this much
            (a portrait's framing); None = the whole image's centre square (photos already
            framed as the model draws them, e.g. the world's).
        placeholder: the person's word [V1].
        style_placeholder: the reference style's word [V2].
        style_vectors: vectors [V2] stands for (the code takes several style tokens; each
            one's attention is refocused off the face).
        init_word: [V1] starts from this word's embedding (code: "person").
        style_init_std: [V2] starts from N(0, std²) (code: 0.017, no init word).
        style_init_word: start [V2] from this word instead (the code can; its default is noise).
        ti_steps: phase 1, textual inversion of the words (paper: 1.2k).
        ti_learning_rate: phase 1 AdamW learning rate, decayed linearly (code: 5e-4 × 4).
        ti_norm_decay: after each phase-1 update, pull every word vector's norm toward the
            norm of `init_word` by min(1, 100·lr) of the gap (the code's `clip_ti_decay`, to
            0.4, about SD1.5's word norm).
        lora_steps: phase 2, words + LoRA jointly (paper: 1.5k).
        lora_learning_rate: phase 2 LoRA learning rate, decayed linearly (code: 1e-4 × 4).
        word_learning_rate: phase 2 learning rate of the words (code: 1e-4).
        weight_decay: phase 2 AdamW weight decay (code: 1e-3).
        grad_clip: phase 2 gradient-norm clip (code: 1.0).
        lora_rank: LoRA rank r (code: 4; α = r).
        lora_targets: "cross-attention" (to_q/k/v/out of attn2: the paper) or "attention"
            (self- and cross-attention: the public code).
        lora_scale: inference strength of the LoRA (code: 0.6 at inference; 1 = as trained).
        ar_weight: λ of the Attention Refocusing loss, phase 2 (code: 2.5).
        ar_downsample: AR uses the cross-attention layers whose maps are the latent grid / this
            (code: 16×16 of 64×64 latents = 4).
        id_weight: λ of the ID loss on the face of the predicted x̂0, phase 2 (code: 0.25).
        id_max_timestep: T′: the ID loss's timestep t_id ~ U(0, T′) (code: 800 of 1000).
        style_weight: reference and composed samples weigh this much in the first half of each
            phase (code: 2).
        mask_floor: weight kept outside a sample's region (code: soft masks, about 0.01);
            1.0 = no masking (the paper's "without masked reconstruction" ablation).
        composed_prompts: train on composed prompts in phase 2 (False = the paper's "without
            composed prompt learning" ablation).
        recognizer: the ID loss's differentiable recogniser ("sface" or "world"); None = the
            identity's.
        world: the world folder for the "world" recogniser.
        instance_templates, style_templates, composed_templates: training prompts with `{id}`
            and/or `{style}` where the words go.
        batch_size: images per step (code: 1).
        resolution: training side in pixels; None = the base model's.
        flip_prob: horizontal-flip probability of the training images.
        seed: the run's random seed.
        checkpoint_every: checkpoint interval in steps (0 = only on interrupt / phase end).
        mixed_precision: "no" or "bf16" autocast.
        gradient_checkpointing: trade compute for memory in the UNet.
        max_nan_steps: give up after this many consecutive non-finite losses.
    """

    style_reference: str | None = None
    reference_expand: float | None = 3.0
    placeholder: str = "<id>"
    style_placeholder: str = "<style>"
    style_vectors: int = 1
    init_word: str = "person"
    style_init_std: float = 0.017
    style_init_word: str | None = None
    ti_steps: int = 1200
    ti_learning_rate: float = 2e-3
    ti_norm_decay: bool = True
    lora_steps: int = 1500
    lora_learning_rate: float = 4e-4
    word_learning_rate: float = 1e-4
    weight_decay: float = 1e-3
    grad_clip: float = 1.0
    lora_rank: int = 4
    lora_targets: str = "cross-attention"
    lora_scale: float = 1.0
    ar_weight: float = 2.5
    ar_downsample: int = 4
    id_weight: float = 0.25
    id_max_timestep: int = 800
    style_weight: float = 2.0
    mask_floor: float = 0.01
    composed_prompts: bool = True
    recognizer: str | None = None
    world: str | None = None
    instance_templates: tuple[str, ...] = field(default=INSTANCE_TEMPLATES)
    style_templates: tuple[str, ...] = field(default=STYLE_TEMPLATES)
    composed_templates: tuple[str, ...] = field(default=COMPOSED_TEMPLATES)
    batch_size: int = 1
    resolution: int | None = None
    flip_prob: float = 0.5
    seed: int = 0
    checkpoint_every: int = 100
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    max_nan_steps: int = 5

    def __post_init__(self) -> None:
        for name in ("instance_templates", "style_templates", "composed_templates"):
            setattr(self, name, tuple(getattr(self, name)))
        problems = training_problems(self)
        problems += number_problems(
            self,
            positive=("ti_learning_rate", "lora_learning_rate", "word_learning_rate", "grad_clip"),
            non_negative=("weight_decay", "ar_weight", "id_weight", "style_init_std", "lora_scale"),
            unit=("mask_floor", "flip_prob"),
            whole=(
                "ti_steps",
                "lora_steps",
                "lora_rank",
                "ar_downsample",
                "batch_size",
                "style_vectors",
            ),
        )
        if isinstance(self.style_weight, (int, float)) and self.style_weight < 1:
            problems.append(f"style_weight must be >= 1, got {self.style_weight}")
        if not isinstance(self.id_max_timestep, int) or not 1 <= self.id_max_timestep <= 1000:
            problems.append(
                f"id_max_timestep (T′) must be in 1..1000, got {self.id_max_timestep!r}"
            )
        w = self.style_init_word
        if w is not None and (not isinstance(w, str) or not w.strip()):
            problems.append(f"style_init_word must be a word or unset, got {w!r}")
        for name in ("placeholder", "style_placeholder"):
            word = getattr(self, name)
            if not isinstance(word, str) or not word or any(c.isspace() for c in word):
                problems.append(f"{name} must be one word without spaces, got {word!r}")
        for name in ("composed_prompts", "ti_norm_decay"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be true or false, got {getattr(self, name)!r}")
        e = self.reference_expand
        if e is not None and (isinstance(e, bool) or not isinstance(e, (int, float)) or not e >= 1):
            problems.append(f"reference_expand must be a number >= 1 or unset, got {e!r}")
        if self.placeholder == self.style_placeholder:
            problems.append("placeholder and style_placeholder must differ")
        if self.lora_targets not in LORA_TARGETS:
            problems.append(f"lora_targets must be one of {', '.join(LORA_TARGETS)}")
        if self.recognizer not in (None, "sface", "world"):
            problems.append(
                f"recognizer must be sface or world (or unset), got {self.recognizer!r}"
            )
        for name, slots in (
            ("instance_templates", ("{id}",)),
            ("style_templates", ("{style}",)),
            ("composed_templates", ("{id}", "{style}")),
        ):
            ts = getattr(self, name)
            if not ts or any(
                not isinstance(t, str) or any(t.count(s) != 1 for s in slots) for t in ts
            ):
                problems.append(f"every one of {name} must contain {' and '.join(slots)} once")
        if problems:
            raise ValueError("invalid MagiCapture settings: " + "; ".join(problems))

    def to_dict(self) -> dict:
        out = asdict(self)
        for name in ("instance_templates", "style_templates", "composed_templates"):
            out[name] = list(out[name])
        return out

    @classmethod
    def from_dict(cls, data: dict) -> MagiCaptureConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
