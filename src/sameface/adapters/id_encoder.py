"""PuLID's ID encoders: face-recognition embedding ⊕ CLIP image features → ID tokens (seed 004).

The seed: "faceid and clip image embeds concatenate and use MLP to map them into 5 tokens"
(`IDMLPEncoder`). PuLID's released model refines this into an IDFormer (`IDFormer`): the MLP
tokens join learned query tokens, and these latents cross-attend, one perceiver stage per
layer, to the CLIP ViT hidden states of several layers (5 layers of EVA02-CLIP-L in PuLID),
ending in 32 tokens of the UNet's cross-attention width.

Several reference photos of one person (`multi_photo`):
    "concat" (PuLID's code): every photo's id ⊕ CLIP vector becomes its own MLP tokens, and
        the photos' ViT tokens are concatenated along the sequence, so the latents attend to
        all photos at once. IDFormer still returns `num_tokens` tokens; `IDMLPEncoder`
        returns `num_tokens` per photo (the cross-attention takes any token count).
    "mean": the photos' id ⊕ CLIP vectors and ViT hidden states are averaged first, so the
        output is the same size as for one photo.

Inputs take one photo as (B, dim) / (B, L, vit_dim) or P photos as (B, P, dim) /
(B, P, L, vit_dim). A ViT hidden state given as (B, L, vit_dim) with P > 1 photos is taken
as already concatenated along the sequence, as PuLID passes it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .id_encoder_config import ENCODER_KINDS, MULTI_PHOTO, IDEncoderConfig, IDEncoderSettings

__all__ = [
    "ENCODER_KINDS",
    "MULTI_PHOTO",
    "FaceIDProjection",
    "IDEncoderConfig",
    "IDEncoderSettings",
    "IDFormer",
    "IDMLPEncoder",
    "build_id_encoder",
]


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """Linear-LayerNorm-LeakyReLU ×2, then Linear: PuLID's mapping network shape."""
    return nn.Sequential(
        nn.Linear(d_in, hidden),
        nn.LayerNorm(hidden),
        nn.LeakyReLU(),
        nn.Linear(hidden, hidden),
        nn.LayerNorm(hidden),
        nn.LeakyReLU(),
        nn.Linear(hidden, d_out),
    )


def _per_photo(x: torch.Tensor, name: str, width: int) -> torch.Tensor:
    """(B, width) or (B, P, width) -> (B, P, width)."""
    if x.ndim == 2:
        x = x[:, None]
    if x.ndim != 3 or x.shape[-1] != width:
        raise ValueError(
            f"{name} must be (B, {width}) or (B, photos, {width}), got {tuple(x.shape)}"
        )
    return x


def id_condition(
    cfg: IDEncoderConfig, id_embedding: torch.Tensor, clip_embedding: torch.Tensor | None
) -> torch.Tensor:
    """Each photo's id ⊕ (normalised) CLIP vector, (B, P, cond_dim); P = 1 with "mean"."""
    ids = _per_photo(id_embedding, "id_embedding", cfg.id_dim)
    if cfg.normalize_id:
        ids = F.normalize(ids, dim=-1)
    parts = [ids]
    if cfg.clip_dim:
        if clip_embedding is None:
            raise ValueError(f"this encoder needs a CLIP image embedding (clip_dim={cfg.clip_dim})")
        clip = _per_photo(clip_embedding, "clip_embedding", cfg.clip_dim)
        if clip.shape[:2] != ids.shape[:2]:
            raise ValueError(
                f"id_embedding has (batch, photos) {tuple(ids.shape[:2])}, "
                f"clip_embedding {tuple(clip.shape[:2])}"
            )
        parts.append(F.normalize(clip, dim=-1) if cfg.normalize_clip else clip)
    cond = torch.cat([p.to(ids.dtype) for p in parts], dim=-1)
    return cond.mean(dim=1, keepdim=True) if cfg.multi_photo == "mean" else cond


class IDMLPEncoder(nn.Module):
    """The paper text's encoder: MLP(id ⊕ CLIP) → `num_tokens` ID tokens per photo (seed 004).

    Args:
        config: an `IDEncoderConfig` (reads id_dim, clip_dim, mlp_dim, num_tokens, output_dim,
            multi_photo and the normalisation flags).
    """

    def __init__(self, config: IDEncoderConfig):
        super().__init__()
        self.config = config
        self.mlp = _mlp(config.cond_dim, config.mlp_dim, config.num_tokens * config.output_dim)
        # token scale comparable to text tokens (PuLID's released encoders have no such norm)
        self.norm_out = nn.LayerNorm(config.output_dim) if config.out_norm else nn.Identity()

    def forward(
        self,
        id_embedding: torch.Tensor,
        clip_embedding: torch.Tensor | None = None,
        vit_hidden_states: Any = None,
    ) -> torch.Tensor:
        """ID tokens (B, tokens, output_dim); tokens = num_tokens × photos ("concat") or num_tokens.

        Args:
            id_embedding: (B, id_dim) or (B, photos, id_dim).
            clip_embedding: (B, clip_dim) or (B, photos, clip_dim); None when clip_dim is 0.
            vit_hidden_states: unused (accepted so both encoders are called alike).
        """
        cond = id_condition(self.config, id_embedding, clip_embedding)
        b = cond.shape[0]
        tokens = self.mlp(cond).reshape(b, -1, self.config.output_dim)
        return self.norm_out(tokens)


class _FeedForward(nn.Sequential):
    def __init__(self, dim: int, mult: int):
        super().__init__(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * mult, bias=False),
            nn.GELU(),
            nn.Linear(dim * mult, dim, bias=False),
        )


class _PerceiverAttention(nn.Module):
    """Latents attend to [context; latents] (Flamingo's perceiver resampler, as IP-Adapter-Plus
    and PuLID's IDFormer use): the latents read the ViT tokens and each other in one step."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.norm_context = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, latents: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, n, _ = latents.shape
        lat = self.norm_latents(latents)
        kv_in = torch.cat([self.norm_context(context), lat], dim=1)
        q = self.to_q(lat).view(b, n, self.heads, self.dim_head).transpose(1, 2)
        k, v = self.to_kv(kv_in).chunk(2, dim=-1)
        k = k.view(b, -1, self.heads, self.dim_head).transpose(1, 2)
        v = v.view(b, -1, self.heads, self.dim_head).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class _PerceiverBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: int):
        super().__init__()
        self.attn = _PerceiverAttention(dim, heads, dim_head)
        self.ff = _FeedForward(dim, ff_mult)

    def forward(self, latents: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        latents = latents + self.attn(latents, context)
        return latents + self.ff(latents)


class IDFormer(nn.Module):
    """PuLID's IDFormer: ID tokens from id ⊕ CLIP vectors and multi-layer CLIP ViT features.

    1. MLP(id ⊕ normalised CLIP embedding) → `num_id_tokens` tokens per photo.
    2. Latents = [`num_tokens` learned queries; those ID tokens].
    3. For each selected ViT layer i: context = [ID tokens; MLP_i(hidden_i)], and
       `depth_per_layer` perceiver blocks (latents attend to context and themselves, then FFN).
    4. The first `num_tokens` latents → Linear → LayerNorm → (B, num_tokens, output_dim).

    Args:
        config: an `IDEncoderConfig` with kind "idformer".
    """

    def __init__(self, config: IDEncoderConfig):
        super().__init__()
        c = config
        self.config = c
        self.queries = nn.Parameter(torch.randn(1, c.num_tokens, c.dim) * c.dim**-0.5)
        self.id_mlp = _mlp(c.cond_dim, c.mlp_dim, c.num_id_tokens * c.dim)
        self.vit_maps = nn.ModuleList(
            _mlp(c.vit_dim, c.mlp_dim, c.dim) for _ in range(c.num_vit_layers)
        )
        self.stages = nn.ModuleList(
            nn.ModuleList(
                _PerceiverBlock(c.dim, c.heads, c.dim_head, c.ff_mult)
                for _ in range(c.depth_per_layer)
            )
            for _ in range(c.num_vit_layers)
        )
        self.proj_out = nn.Linear(c.dim, c.output_dim, bias=c.proj_bias)
        # token scale comparable to text tokens (PuLID's released IDFormer has no such norm)
        self.norm_out = nn.LayerNorm(c.output_dim) if c.out_norm else nn.Identity()

    def _vit_tokens(self, hidden: torch.Tensor, batch: int, photos: int) -> torch.Tensor:
        """(B, L, D) or (B, P, L, D) -> (B, L', D): photos concatenated or averaged."""
        d = self.config.vit_dim
        if hidden.ndim == 4:
            if hidden.shape[:2] != (batch, photos) or hidden.shape[-1] != d:
                raise ValueError(
                    f"ViT hidden states must be (B={batch}, photos={photos}, L, {d}), "
                    f"got {tuple(hidden.shape)}"
                )
            if self.config.multi_photo == "mean":
                return hidden.mean(dim=1)
            return hidden.reshape(batch, -1, d)
        if hidden.ndim != 3 or hidden.shape[0] != batch or hidden.shape[-1] != d:
            raise ValueError(
                f"ViT hidden states must be (B={batch}, L, {d}), got {tuple(hidden.shape)}"
            )
        return hidden

    def forward(
        self,
        id_embedding: torch.Tensor,
        clip_embedding: torch.Tensor | None,
        vit_hidden_states: list[torch.Tensor] | tuple[torch.Tensor, ...],
    ) -> torch.Tensor:
        """ID tokens (B, num_tokens, output_dim), whatever the number of photos.

        Args:
            id_embedding: (B, id_dim) or (B, photos, id_dim).
            clip_embedding: (B, clip_dim) or (B, photos, clip_dim); None when clip_dim is 0.
            vit_hidden_states: `num_vit_layers` tensors, each (B, L, vit_dim) or
                (B, photos, L, vit_dim).
        """
        c = self.config
        if len(vit_hidden_states) != c.num_vit_layers:
            raise ValueError(
                f"expected {c.num_vit_layers} ViT hidden states, got {len(vit_hidden_states)}"
            )
        photos = 1 if id_embedding.ndim == 2 else id_embedding.shape[1]
        cond = id_condition(c, id_embedding, clip_embedding)
        b = cond.shape[0]
        id_tokens = self.id_mlp(cond).reshape(b, -1, c.dim)
        latents = torch.cat([self.queries.expand(b, -1, -1).to(id_tokens.dtype), id_tokens], dim=1)
        for vit_map, blocks, hidden in zip(
            self.vit_maps, self.stages, vit_hidden_states, strict=True
        ):
            vit = vit_map(self._vit_tokens(hidden, b, photos).to(id_tokens.dtype))
            context = torch.cat([id_tokens, vit], dim=1)
            for block in blocks:
                latents = block(latents, context)
        return self.norm_out(self.proj_out(latents[:, : c.num_tokens]))


class FaceIDProjection(nn.Module):
    """IP-Adapter-FaceID's projection (Ye et al. 2023, `MLPProjModel` of the FaceID release):
    tokens = LayerNorm(reshape(W₂·GELU(W₁·id + b₁) + b₂, num_tokens × output_dim)).

    The submodule names are the release's (`proj.0`, `proj.2`, `norm`), so its `image_proj`
    tensors load unchanged. Several photos follow `multi_photo` ("concat": `num_tokens` per
    photo; "mean": the unit embeddings averaged, then made unit again, as the release only
    ever saw unit inputs).

    Args:
        config: an `IDEncoderConfig` of kind "faceid" (the release: id_dim 512, mlp_dim 1024,
            num_tokens 4, output_dim = the UNet's cross-attention width).
    """

    def __init__(self, config: IDEncoderConfig):
        super().__init__()
        self.config = config
        self.proj = nn.Sequential(
            nn.Linear(config.cond_dim, config.mlp_dim),
            nn.GELU(),
            nn.Linear(config.mlp_dim, config.num_tokens * config.output_dim),
        )
        self.norm = nn.LayerNorm(config.output_dim)

    def forward(
        self,
        id_embedding: torch.Tensor,
        clip_embedding: torch.Tensor | None = None,
        vit_hidden_states: Any = None,
    ) -> torch.Tensor:
        """ID tokens (B, tokens, output_dim) from (B, id_dim) or (B, photos, id_dim) embeddings
        (`clip_embedding` and `vit_hidden_states` unused: the FaceID projection reads none)."""
        cond = id_condition(self.config, id_embedding, clip_embedding)
        if self.config.normalize_id and self.config.multi_photo == "mean":
            cond = F.normalize(cond, dim=-1)  # the mean of unit vectors, unit again (0 stays 0)
        tokens = self.proj(cond).reshape(cond.shape[0], -1, self.config.output_dim)
        return self.norm(tokens)


def build_id_encoder(config: IDEncoderConfig) -> IDFormer | IDMLPEncoder | FaceIDProjection:
    """The encoder `config.kind` names, with fresh random weights (CPU, float32)."""
    kinds = {"idformer": IDFormer, "mlp": IDMLPEncoder, "faceid": FaceIDProjection}
    return kinds[config.kind](config)
