"""Settings of IP-Adapter-FaceID (Ye et al. 2023, "IP-Adapter: Text Compatible Image Prompt
Adapter for Text-to-Image Diffusion Models"; the FaceID release, h94/IP-Adapter-FaceID).

One dataclass holds the model's shape (the FaceID projection, the decoupled ID attention, the
rank-128 LoRA), the inference defaults of the release's demo and the training settings of its
`tutorial_train_faceid.py`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

from ...adapters.id_encoder_config import MULTI_PHOTO
from ...faces.id_loss import RECOGNIZER_DIMS
from ..config_checks import number_problems, training_problems

UNTRAINED = "untrained"
"""`adapter` value that makes `personalize` use a freshly initialised model (tests, smoke runs)."""
# Literal copies keep this module torch-free: `adapters.lora.TARGET_SETS` and
# `adapters.id_attention.INITS` name the same (a test checks they agree).
LORA_TARGETS = ("cross-attention", "attention")
ADAPTER_INITS = ("auto", "copy", "zero_v", "random")


@dataclass
class IPAdapterFaceIDConfig:
    """IP-Adapter-FaceID: a face-recognition embedding → 4 tokens → decoupled cross-attention,
    with a LoRA on the UNet's attention projections.

    Model:

    Attributes:
        adapter: the trained or imported folder (`sameface train ip-adapter-faceid`, `sameface
            import ip-adapter-faceid`); "untrained" uses a freshly initialised model (tests
            and smoke runs only).
        recognizer: the face recogniser whose embedding the projection reads: "insightface"
            (the release: buffalo_l's unit-length 512-d embedding; an antelopev2 identity,
            also 512-d but another embedding, is refused for it), "sface" / "dlib" (128-d,
            for adapters trained here), or "world". The identity must be built with the
            same one.
        world: the proving-ground world folder of `recognizer: world`; None = the default world.
        num_tokens: ID tokens per embedding (the release: 4).
        mlp_dim: hidden width of the projection; None = twice the embedding width (the
            release: 1024 for 512-d).
        multi_photo: several reference photos: "mean" (their unit embeddings averaged, the
            common practice with the single-photo release) or "concat" (4 tokens per photo,
            as the release's multi-image "portrait" variant feeds them).
        lora_rank: rank of the LoRA (the release: 128); 0 = no LoRA (the release's
            "portrait" variant has none).
        lora_targets: "attention" (to_q/to_k/to_v/to_out of self- and cross-attention, as the
            release) or "cross-attention".
        adapter_init: how the ID key/value projections start in training ("auto": copies of
            the layer's to_k / to_v, IP-Adapter's recipe).

    Inference (the release's demo):

    Attributes:
        id_scale: weight of the ID attention (`scale`, 1.0); 0 = no ID tokens.
        lora_scale: weight of the LoRA (1.0; 0 = the base's own projections).
        guidance_scale: classifier-free guidance; the unconditional half gets the projection
            of a zero embedding (the release's `uncond_image_prompt_embeds`).
        num_inference_steps: sampler steps (30).

    Training (`tutorial_train_faceid.py`):

    Attributes:
        learning_rate: AdamW learning rate (1e-4).
        adam_betas: AdamW β (torch's defaults).
        weight_decay: AdamW weight decay (0.01).
        id_drop_prob: share of samples whose embedding is zeroed (0.05).
        text_drop_prob: share whose caption is emptied (0.05).
        both_drop_prob: share with both dropped (0.05).
        batch_size: samples per step and process (the tutorial: 8).
        steps: optimisation steps (the release does not say how many it trained).
        resolution: training image side; None = the base model's.
        mixed_precision: "no" or "bf16" autocast.
        gradient_checkpointing: trade compute for memory in the UNet.
        seed: the run's random seed (also the new weights' initialisation).
        checkpoint_every: checkpoint interval in steps.
        log_every: `train_log.jsonl` interval in steps.
        max_nan_steps: give up after this many consecutive non-finite losses.
    """

    adapter: str | None = None
    recognizer: str = "insightface"
    world: str | None = None
    num_tokens: int = 4
    mlp_dim: int | None = None
    multi_photo: str = "mean"
    lora_rank: int = 128
    lora_targets: str = "attention"
    adapter_init: str = "auto"
    id_scale: float = 1.0
    lora_scale: float = 1.0
    guidance_scale: float = 7.5
    num_inference_steps: int = 30
    learning_rate: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    id_drop_prob: float = 0.05
    text_drop_prob: float = 0.05
    both_drop_prob: float = 0.05
    batch_size: int = 8
    steps: int = 10_000
    resolution: int | None = None
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 10
    max_nan_steps: int = 5

    def __post_init__(self) -> None:
        for name in ("adapter", "world"):
            if isinstance(getattr(self, name), os.PathLike):
                setattr(self, name, os.fspath(getattr(self, name)))
        problems = training_problems(self)
        problems += number_problems(
            self,
            positive=("learning_rate",),
            non_negative=("weight_decay", "id_scale", "lora_scale", "guidance_scale"),
            unit=("id_drop_prob", "text_drop_prob", "both_drop_prob"),
            whole=("num_tokens", "batch_size", "steps", "num_inference_steps"),
        )
        r = self.lora_rank
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            problems.append(f"lora_rank must be a whole number >= 0, got {r!r}")
        m = self.mlp_dim
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            problems.append(f"mlp_dim must be a whole number >= 1 or unset, got {m!r}")
        if not isinstance(self.log_every, int) or self.log_every < 0:
            problems.append(f"log_every must be a whole number >= 0, got {self.log_every!r}")
        choices = {
            "recognizer": tuple(RECOGNIZER_DIMS),
            "multi_photo": MULTI_PHOTO,
            "lora_targets": LORA_TARGETS,
            "adapter_init": ADAPTER_INITS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                problems.append(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        drops = (self.id_drop_prob, self.text_drop_prob, self.both_drop_prob)
        if all(isinstance(p, (int, float)) for p in drops) and sum(drops) > 1:
            problems.append("id_drop_prob + text_drop_prob + both_drop_prob must be <= 1")
        for name in ("adapter", "world"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not v.strip()):
                problems.append(f"{name} must be a path or unset, got {v!r}")
        betas = self.adam_betas
        if (
            not isinstance(betas, (list, tuple))
            or len(betas) != 2
            or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)
        ):
            problems.append(f"adam_betas must be two numbers in [0, 1), got {betas!r}")
        else:
            self.adam_betas = tuple(float(b) for b in betas)
        if problems:
            raise ValueError("invalid IP-Adapter-FaceID settings: " + "; ".join(problems))

    @property
    def recognizer_dim(self) -> int:
        """Width of the recogniser's embedding (the world's own width for "world")."""
        from ...faces.id_loss import recognizer_dim

        return recognizer_dim(self.recognizer, self.world)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["adam_betas"] = list(self.adam_betas)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> IPAdapterFaceIDConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown IP-Adapter-FaceID setting(s): {', '.join(unknown)}")
        return cls(**data)
