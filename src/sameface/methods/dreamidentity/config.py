"""Settings of DreamIdentity (seed 000_4d906c31227f05f2; Chen et al. 2023, "DreamIdentity:
Improved Editability for Efficient Face-identity Preserved Image Generation").

One dataclass holds the M² ID encoder's shape, the inference defaults and the training
settings `train.py` reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

SCALES = ("multi", "last")
PROJECTIONS = ("linear", "mlp")
UNTRAINED = "untrained"
"""`adapter` value that makes `personalize` use a freshly initialised encoder (tests, smoke runs)."""


@dataclass
class DreamIdentityConfig:
    """DreamIdentity (seed 000): a face becomes K pseudo-words in one forward pass.

    Encoder (seed "Method", "Detailed Pseudo Code"):

    Attributes:
        backbone: the face-recognition backbone read at several depths: "sface" (the shipped
            SFace network: works offline on a fresh machine; pooled at its 4 resolution
            stages + its embedding), "world" (the proving-ground world's recogniser), a local
            arcface_torch ViT weights file (the paper's kind of backbone: blocks
            `feature_layers` + the embedding), or "tiny-vit" (tests).
        feature_layers: ViT blocks read as features, 1-based (the paper: 3, 6, 9, 12; "the
            last", the embedding, is always added). Ignored by the CNN backbones.
        vit_heads: attention heads of a ViT backbone (arcface_torch weights do not record it;
            8 in every arcface_torch vit_*).
        scales: "multi" (word k from depth k: the paper's multi-scale features) or "last" (every
            word from the last feature: the ablation).
        projection: the map from one depth's feature to its word: "mlp" (LayerNorm → Linear →
            GELU → Linear, hidden width = the word's: the seed's high-level pseudo code,
            `word_emb = MLP(f)`) or "linear" (LayerNorm → Linear, its detailed pseudo code).
            "mlp" is the default: in the world it gained more identity, in every person, on
            people no setting was chosen on (docs/dreamidentity.md).
        init_word: the word every pseudo-word starts at; a word is init_word's embedding plus
            its projection (zero-initialised), so an untrained encoder reads as init_word.
        placeholder: the prompt word that stands for the person.
        adapter: the trained DreamIdentity folder (`sameface train dreamidentity`) that
            `personalize` encodes with (`--adapter`, as for every encoder method); "untrained" for a fresh one.
        max_references: reference photos `personalize` reads; their backbone features are
            averaged (one identity, K words, whatever the number of photos).

    Inference:

    Attributes:
        guidance_scale: CFG scale (diffusers' convention; 7.5, SDXL 5.0 when None).
        num_inference_steps: sampling steps (50).

    Training (seed "Self-Augmented Editability Learning"):

    Attributes:
        augmented_share: share of samples drawn from the self-augmented triplets when a
            triplet folder is given (the rest: reconstruction on the face dataset).
        reg_weight: λ of the embedding regularisation λ·mean_k ‖S*_k − e(init_word)‖²
            (keeps the words near the vocabulary: editability).
        learning_rate: AdamW learning rate of the projections.
        adam_betas, weight_decay: AdamW's (torch defaults; the paper names none).
        batch_size: samples per step and process.
        steps: optimisation steps.
        resolution: training image side; None = the base model's.
        mixed_precision: "no" or "bf16" autocast.
        gradient_checkpointing: trade compute for memory in the UNet.
        seed: the run's random seed (and the projections' initialisation).
        checkpoint_every: checkpoint interval in steps.
        log_every: `train_log.jsonl` interval in steps.
    """

    backbone: str = "sface"
    feature_layers: tuple[int, ...] = (3, 6, 9, 12)
    vit_heads: int = 8
    scales: str = "multi"
    projection: str = "mlp"
    init_word: str = "person"
    placeholder: str = "<id>"
    adapter: str | None = None
    max_references: int = 4
    guidance_scale: float | None = None
    num_inference_steps: int = 50
    augmented_share: float = 0.5
    reg_weight: float = 0.01
    learning_rate: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    batch_size: int = 8
    steps: int = 20_000
    resolution: int | None = None
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 10

    def __post_init__(self) -> None:
        self.adam_betas = tuple(float(b) for b in self.adam_betas)  # YAML gives lists
        self.feature_layers = tuple(int(i) for i in self.feature_layers)
        problems = []
        if self.scales not in SCALES:
            problems.append(f"scales must be one of {', '.join(SCALES)}")
        if self.projection not in PROJECTIONS:
            problems.append(f"projection must be one of {', '.join(PROJECTIONS)}")
        if not self.feature_layers or min(self.feature_layers) < 1:
            problems.append("feature_layers must be block numbers >= 1")
        if len(set(self.feature_layers)) != len(self.feature_layers):
            problems.append("feature_layers must not repeat")
        if not self.init_word.strip():
            problems.append("init_word must be a word")
        if not self.placeholder.strip() or " " in self.placeholder.strip():
            problems.append("placeholder must be one word, e.g. <id>")
        if not 0.0 <= self.augmented_share <= 1.0:
            problems.append("augmented_share must be in [0, 1]")
        if not (self.reg_weight == self.reg_weight and self.reg_weight >= 0):
            problems.append("reg_weight must be >= 0")
        for name in ("steps", "batch_size", "max_references", "num_inference_steps", "vit_heads"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        for name in ("checkpoint_every", "log_every"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if not self.learning_rate > 0:
            problems.append("learning_rate must be > 0")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            problems.append("adam_betas must be two numbers in [0, 1)")
        g = self.guidance_scale
        if g is not None and not (g == g and 0 <= g <= 100):
            problems.append("guidance_scale must be a number in [0, 100]")
        if self.mixed_precision not in ("no", "bf16"):
            problems.append("mixed_precision must be 'no' or 'bf16'")
        if self.resolution is not None and (self.resolution < 64 or self.resolution % 8):
            problems.append("resolution must be a multiple of 8 and at least 64")
        if problems:
            raise ValueError("invalid DreamIdentity settings: " + "; ".join(problems))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["adam_betas"] = list(self.adam_betas)
        out["feature_layers"] = list(self.feature_layers)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> DreamIdentityConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown DreamIdentity setting(s): {', '.join(unknown)}")
        return cls(**data)
