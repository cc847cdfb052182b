"""Settings of FeedFace (seed 002_3eb7414c52f293a2; Xiang et al. 2024, "FeedFace: Efficient
Inference-based Face Personalization via Diffusion Models", ICLR Tiny Papers).

One dataclass holds the model's shape (CLIP face encoder, projection, control blocks), the
inference defaults and the training settings `train.py` reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ...adapters.control_blocks import INITS as CONTROL_INITS
from ...losses.masked import MASK_LOSSES

CLIP_OUTPUTS = ("hidden", "pooled")
FACE_EXPAND = 1.1
"""FeedFace's face view: the face box expanded 1.1× and squared (seed 002, appendix A)."""
UNTRAINED = "untrained"
"""`adapter` value that makes `personalize` use a freshly initialised model (tests, smoke runs)."""


@dataclass
class FeedFaceConfig:
    """FeedFace (seed 002): a CLIP face encoder and a face-controlnet on a frozen base.

    Model:

    Attributes:
        clip_vision: the CLIP image encoder of the face crops: a local folder, a hub id already
            in the Hugging Face cache (never downloaded), or "tiny-random[:seed]" (tests). The
            paper: openai/clip-vit-base-patch32.
        clip_output: which CLIP output becomes the face tokens: "hidden" (the last layer's
            hidden states, CLS and patches, each projected to a token: 50 tokens per face for
            ViT-B/32) or "pooled" (the projected image embedding, one token per face). The
            paper says only "CLIP image encoder + a linear layer"; "hidden" is the default
            because the patch tokens keep the local facial detail that pooling averages away,
            and several references then concatenate along the sequence (B.3.1) as the paper
            describes.
        control_init: how the control blocks' attention and MLP start: "copy" (from the
            frozen origin block, ControlNet's practice) or "random"; their output layer starts
            at zero either way (seed §2.1.2).
        adapter: the trained FeedFace folder (`FeedFaceModel.save`) that `personalize` encodes
            with; "untrained" uses a freshly initialised model (tests and smoke runs only).
        max_references: how many reference photos `personalize` keeps (their tokens are
            concatenated, B.3.1).
        face_expand: the face view the CLIP encoder reads: the face box expanded this much
            and squared (the paper: 1.1, appendix A; larger views show the hair too). A
            training setting: the trained folder records it and `personalize` cuts the
            references the way that adapter was trained.

    Inference (B.3.2):

    Attributes:
        guidance_scale: the paper's CFG scale s in ε = ε_c + s·(ε_c − ε_uc), with ε_c on text +
            faces and ε_uc on empty text + zero faces (5). In the usual diffusers convention
            ε_uc + w·(ε_c − ε_uc) this is w = s + 1.
        face_scale: strength of the control blocks' output (1 = as trained; < 1 loosens the
            identity in favour of the prompt).
        face_guidance_scale: the face's own guidance scale w_f in ε_uc + w·(ε_t − ε_uc) +
            w_f·(ε_c − ε_t), ε_t = prompt + zero face (beyond the paper; docs/feedface.md).
            In diffusers' convention like w, so joint CFG is w_f = w = guidance_scale + 1;
            None = w, the paper's joint CFG; 0 = text-only CFG.
        num_inference_steps: sampling steps (50).

    Training (seed §2.2 and B.2):

    Attributes:
        loss: "regularization" (the paper's ‖m(ε − ε_θ) + (1 − m)(ε_θ̂ − ε_θ)‖²), "mask"
            (‖m(ε − ε_θ)‖²) or "standard" (‖ε − ε_θ‖²): the ablation of B.1.
        standard_loss_prob: share of steps that use the standard loss instead (0.1, "to reduce
            the face-paste appearance").
        face_drop_prob: share of samples whose face condition is the zero vector (0.1, for CFG).
        learning_rate: AdamW learning rate (2e-5).
        adam_betas: AdamW β (torch's defaults; the paper names only AdamW).
        weight_decay: AdamW weight decay (torch's default 0.01).
        batch_size: samples per step and process (the paper: 16 per GPU, 6 GPUs).
        steps: optimisation steps (the paper: 50,000).
        resolution: training image side; None = the base model's.
        mixed_precision: "no" or "bf16" autocast.
        gradient_checkpointing: trade compute for memory in the UNet.
        seed: the run's random seed.
        checkpoint_every: checkpoint interval in steps.
        log_every: `train_log.jsonl` interval in steps.
    """

    clip_vision: str = "openai/clip-vit-base-patch32"
    clip_output: str = "hidden"
    control_init: str = "copy"
    adapter: str | None = None
    max_references: int = 4
    face_expand: float = FACE_EXPAND
    guidance_scale: float = 5.0
    face_scale: float = 1.0
    face_guidance_scale: float | None = None
    num_inference_steps: int = 50
    loss: str = "regularization"
    standard_loss_prob: float = 0.1
    face_drop_prob: float = 0.1
    learning_rate: float = 2e-5
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    batch_size: int = 16
    steps: int = 50_000
    resolution: int | None = None
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 10

    def __post_init__(self) -> None:
        self.adam_betas = tuple(float(b) for b in self.adam_betas)  # YAML gives lists
        problems = []
        if self.clip_output not in CLIP_OUTPUTS:
            problems.append(f"clip_output must be one of {', '.join(CLIP_OUTPUTS)}")
        if self.control_init not in CONTROL_INITS:
            problems.append(f"control_init must be one of {', '.join(CONTROL_INITS)}")
        if self.loss not in MASK_LOSSES:
            problems.append(f"loss must be one of {', '.join(MASK_LOSSES)}")
        if self.mixed_precision not in ("no", "bf16"):
            problems.append("mixed_precision must be 'no' or 'bf16'")
        for name in ("standard_loss_prob", "face_drop_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1]")
        for name in ("steps", "batch_size", "max_references", "num_inference_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        for name in ("checkpoint_every", "log_every"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if not self.learning_rate > 0:
            problems.append("learning_rate must be > 0")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            problems.append("adam_betas must be two numbers in [0, 1)")
        for name in ("guidance_scale", "face_scale"):
            v = getattr(self, name)
            if not (v == v and 0 <= v < float("inf")):
                problems.append(f"{name} must be a finite number >= 0")
        if not (self.face_expand == self.face_expand and 1.0 <= self.face_expand <= 4.0):
            problems.append("face_expand must be a number in [1, 4]")
        w_f = self.face_guidance_scale
        if w_f is not None and not (w_f == w_f and 0 <= w_f <= 100):
            problems.append("face_guidance_scale must be a number in [0, 100]")
        if self.resolution is not None and (self.resolution < 64 or self.resolution % 8):
            problems.append("resolution must be a multiple of 8 and at least 64")
        if problems:
            raise ValueError("invalid FeedFace settings: " + "; ".join(problems))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["adam_betas"] = list(self.adam_betas)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> FeedFaceConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown FeedFace setting(s): {', '.join(unknown)}")
        return cls(**data)
