"""The shapes of PuLID's ID encoders as plain dataclasses (no torch: configs and the CLI read
them); the modules are in `sameface.adapters.id_encoder`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["ENCODER_KINDS", "MULTI_PHOTO", "IDEncoderConfig", "IDEncoderSettings"]

ENCODER_KINDS = ("idformer", "mlp", "faceid")
MULTI_PHOTO = ("concat", "mean")


@dataclass
class IDEncoderSettings:
    """The ID encoder's shape as a method's settings spell it; the widths come from the models
    (`encoder_config`). A method's config dataclass inherits it, so its YAML keys are these.

    Attributes:
        encoder: "idformer" (PuLID's released encoder: MLP tokens + learned queries attending
            to several CLIP ViT layers), "mlp" (PuLID's paper text: MLP → tokens) or "faceid"
            (IP-Adapter-FaceID's Linear-GELU-Linear projection, tokens LayerNorm-ed).
        num_tokens: ID tokens the encoder emits (PuLID's released model: 32; the paper: 5).
        num_id_tokens: IDFormer tokens made by the MLP from id ⊕ CLIP (PuLID: 5).
        encoder_dim: IDFormer width (PuLID: 1024).
        depth_per_layer: perceiver blocks per ViT layer (PuLID: 2).
        heads: IDFormer attention heads (PuLID: 16).
        dim_head: width per head (PuLID: 64).
        ff_mult: IDFormer feed-forward expansion (PuLID: 4).
        mlp_dim: hidden width of the mapping MLPs (PuLID: 1024).
        multi_photo: several reference photos: "concat" (PuLID's code: every photo's tokens,
            ViT tokens joined along the sequence) or "mean" (averaged first).
    """

    encoder: str = "idformer"
    num_tokens: int = 32
    num_id_tokens: int = 5
    encoder_dim: int = 1024
    depth_per_layer: int = 2
    heads: int = 16
    dim_head: int = 64
    ff_mult: int = 4
    mlp_dim: int = 1024
    multi_photo: str = "concat"

    def encoder_config(
        self,
        *,
        id_dim: int,
        clip_dim: int,
        vit_dim: int,
        num_vit_layers: int,
        output_dim: int,
        normalize_clip: bool = True,
        normalize_id: bool = False,
    ) -> IDEncoderConfig:
        """The exact `IDEncoderConfig` for these settings and the models' widths."""
        return IDEncoderConfig(
            kind=self.encoder,
            id_dim=int(id_dim),
            clip_dim=int(clip_dim),
            vit_dim=int(vit_dim),
            num_vit_layers=int(num_vit_layers),
            output_dim=int(output_dim),
            num_tokens=self.num_tokens,
            num_id_tokens=self.num_id_tokens,
            dim=self.encoder_dim,
            depth_per_layer=self.depth_per_layer,
            heads=self.heads,
            dim_head=self.dim_head,
            ff_mult=self.ff_mult,
            mlp_dim=self.mlp_dim,
            multi_photo=self.multi_photo,
            normalize_clip=normalize_clip,
            normalize_id=normalize_id,
        )


@dataclass
class IDEncoderConfig:
    """Shape of PuLID's ID encoder (seed 004; defaults = PuLID's released SDXL IDFormer).

    Attributes:
        kind: "idformer" (PuLID's released encoder), "mlp" (the paper text's MLP → tokens) or
            "faceid" (IP-Adapter-FaceID's projection: Linear-GELU-Linear → tokens, each
            LayerNorm-ed; reads id_dim, mlp_dim, num_tokens, output_dim, multi_photo).
        id_dim: face-recognition embedding width (512 antelopev2/ArcFace, 128 SFace).
        clip_dim: CLIP image embedding width (768 for EVA02-CLIP-L-14-336); 0 = no CLIP vector.
        vit_dim: width of the CLIP ViT hidden states (1024 for EVA02-CLIP-L).
        num_vit_layers: ViT hidden-state layers the IDFormer reads, one stage each (PuLID: 5).
        output_dim: ID token width = the UNet's cross_attention_dim (768 SD1.x, 1024 SD2.x,
            2048 SDXL).
        num_tokens: ID tokens out (PuLID's released model: 32; the paper text: 5).
        num_id_tokens: IDFormer tokens made by the MLP from each photo's id ⊕ CLIP vector
            (PuLID: 5); they join the learned queries and the context of every stage.
        dim: IDFormer width (PuLID: 1024).
        depth_per_layer: perceiver blocks per ViT layer (PuLID: 2, i.e. depth 10 over 5 layers).
        heads: attention heads in the IDFormer (PuLID: 16).
        dim_head: width per head (PuLID: 64).
        ff_mult: feed-forward expansion (PuLID: 4).
        mlp_dim: hidden width of the mapping MLPs (PuLID: 1024).
        multi_photo: "concat" (PuLID's code) or "mean"; see the module docstring.
        normalize_clip: L2-normalise the CLIP embedding first (PuLID does).
        normalize_id: L2-normalise the face-recognition embedding first (PuLID feeds the raw
            antelopev2 embedding).
        proj_bias: the output projection has a bias (ours; PuLID's released IDFormer: none).
        out_norm: a LayerNorm on the output tokens (ours, so token scales match text tokens
            from the start of training; PuLID's release: none).
    """

    kind: str = "idformer"
    id_dim: int = 512
    clip_dim: int = 768
    vit_dim: int = 1024
    num_vit_layers: int = 5
    output_dim: int = 2048
    num_tokens: int = 32
    num_id_tokens: int = 5
    dim: int = 1024
    depth_per_layer: int = 2
    heads: int = 16
    dim_head: int = 64
    ff_mult: int = 4
    mlp_dim: int = 1024
    multi_photo: str = "concat"
    normalize_clip: bool = True
    normalize_id: bool = False
    proj_bias: bool = True
    out_norm: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ENCODER_KINDS:
            raise ValueError(f"kind must be one of {', '.join(ENCODER_KINDS)}, got {self.kind!r}")
        if self.multi_photo not in MULTI_PHOTO:
            raise ValueError(
                f"multi_photo must be one of {', '.join(MULTI_PHOTO)}, got {self.multi_photo!r}"
            )
        positive = ["id_dim", "output_dim", "num_tokens", "mlp_dim"]
        if self.kind == "idformer":  # "mlp" and "faceid" read only the widths above
            positive += ["vit_dim", "num_vit_layers", "num_id_tokens", "dim", "depth_per_layer"]
            positive += ["heads", "dim_head", "ff_mult"]
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.clip_dim, int) or self.clip_dim < 0:
            raise ValueError(f"clip_dim must be an integer >= 0, got {self.clip_dim!r}")

    @property
    def cond_dim(self) -> int:
        """Width of one photo's id ⊕ CLIP vector."""
        return self.id_dim + self.clip_dim

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IDEncoderConfig:
        """Build from `to_dict()` output; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ID encoder settings: {', '.join(unknown)}")
        return cls(**data)
