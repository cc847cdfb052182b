"""The M² ID encoder (seed 000, "Method"): multi-scale face features → multi-word embeddings.

    aligned faces (B, R, 3, 112, 112) ──backbone (frozen)──> K features (B, R, C_k)
        ──mean over the R photos──> (B, C_k)
        ──per depth k: LayerNorm → Linear, or an MLP (last layer zero-initialised)──> offset_k (B, D)
    pseudo-word S*_k = e(init_word) + offset_k          (one set per text encoder; SDXL: two)

The K words stand where the prompt says the placeholder; the frozen text encoder reads them
like any word, so generation costs exactly what the base model costs. The projections are the
only trained weights; the backbone stays the face recogniser it was trained as.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import ArtifactError
from ..trained import read_trained_meta, read_trained_weights, save_trained
from .backbones import FaceBackbone
from .config import DreamIdentityConfig

WEIGHTS_FILE = "dreamidentity.safetensors"
META_FILE = "dreamidentity.json"
FORMAT = "sameface.dreamidentity"
FORMAT_VERSION = 1


def word_embedding(tokenizer: Any, text_encoder: Any, word: str) -> torch.Tensor:
    """The input embedding of `word` in one text encoder (the mean of its pieces' rows)."""
    ids = tokenizer(word, add_special_tokens=False).input_ids
    if not ids:
        raise ValueError(f"init_word {word!r} has no tokens")
    table = text_encoder.get_input_embeddings().weight
    return table[torch.tensor(ids, device=table.device)].detach().float().mean(0)


def _projection(kind: str, c: int, w: int) -> nn.Sequential:
    """One depth's feature (C) → its word offset (W): "linear" or "mlp" (`DreamIdentityConfig.projection`)."""
    if kind == "mlp":
        return nn.Sequential(nn.LayerNorm(c), nn.Linear(c, w), nn.GELU(), nn.Linear(w, w))
    return nn.Sequential(nn.LayerNorm(c), nn.Linear(c, w))


class M2Encoder(nn.Module):
    """Projections from a frozen face backbone's K features to K pseudo-words per text encoder.

    Args:
        base: the `BaseModel` (its text encoders give the words' widths and init_word).
        config: a `DreamIdentityConfig` (scales, init_word, seed).
        backbone: the frozen `FaceBackbone`; None builds projections only (`dims` required).
        dims: the backbone's feature widths (default `backbone.dims`).
    """

    def __init__(
        self,
        base: Any,
        config: DreamIdentityConfig | None = None,
        *,
        backbone: FaceBackbone | None = None,
        dims: list[int] | None = None,
    ):
        super().__init__()
        self.config = config = config or DreamIdentityConfig()
        if dims is None:
            if backbone is None:
                raise ValueError("M2Encoder needs a backbone or its feature dims")
            dims = list(backbone.dims)
        self.dims = [int(d) for d in dims]
        self.k = len(self.dims)
        self.base, self.backbone = base, backbone  # plain references: neither is trained here
        inputs = self.dims if config.scales == "multi" else [self.dims[-1]] * self.k
        self.widths = [enc.get_input_embeddings().embedding_dim for enc in base.text_encoders]
        with torch.random.fork_rng(devices=[]):  # same seed, same init; caller's RNG untouched
            torch.manual_seed(config.seed)
            self.proj = nn.ModuleList(
                nn.ModuleList(_projection(config.projection, c, w) for c in inputs)
                for w in self.widths
            )
        for per_encoder in self.proj:
            for p in per_encoder:
                nn.init.zeros_(p[-1].weight)
                nn.init.zeros_(p[-1].bias)
        for i, (tok, enc) in enumerate(zip(base.tokenizers, base.text_encoders, strict=True)):
            self.register_buffer(f"anchor_{i}", word_embedding(tok, enc, config.init_word))
        self.to(base.device)

    def anchors(self) -> list[torch.Tensor]:
        """e(init_word) per text encoder, (D,) each."""
        return [getattr(self, f"anchor_{i}") for i in range(len(self.widths))]

    @torch.no_grad()
    def features(self, aligned: torch.Tensor) -> list[torch.Tensor]:
        """Backbone features of each sample's photos, averaged over the photos.

        Args:
            aligned: (B, R, 3, 112, 112) ArcFace-aligned faces, values 0..255.

        Returns:
            K tensors (B, C_k).
        """
        if self.backbone is None:
            raise ValueError("this encoder has no backbone to read faces with")
        if aligned.ndim != 5:
            raise ValueError(
                f"expected aligned faces (B, R, 3, 112, 112), got {tuple(aligned.shape)}"
            )
        b, r = aligned.shape[:2]
        feats = self.backbone.features(aligned.flatten(0, 1).float())
        return [f.float().reshape(b, r, -1).mean(1) for f in feats]

    def words(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """The pseudo-words S* per text encoder, (B, K, D_e) each (seed: "Multi-word projection")."""
        if len(features) != self.k:
            raise ValueError(f"{len(features)} features for a {self.k}-word encoder")
        if self.config.scales == "last":
            features = [features[-1]] * self.k
        out = []
        for per_encoder, anchor in zip(self.proj, self.anchors(), strict=True):
            offsets = [p(f.to(anchor)) for p, f in zip(per_encoder, features, strict=True)]
            out.append(anchor + torch.stack(offsets, 1))
        return out

    # ---- persistence --------------------------------------------------------------------

    def meta(self) -> dict:
        """What `dreamidentity.json` records (everything `load` checks)."""
        from ... import __version__

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "method": "dreamidentity",
            "sameface_version": __version__,
            "family": self.base.family,
            "base": self.base.source,
            "widths": self.widths,
            "dims": self.dims,
            "num_words": self.k,
            "backbone": self.backbone.describe() if self.backbone is not None else None,
            "config": self.config.to_dict(),
        }

    def save(self, folder: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write `dreamidentity.safetensors` and `dreamidentity.json` (last), atomically."""
        weights = {k: v for k, v in self.state_dict().items() if k.startswith("proj.")}
        return save_trained(
            folder, WEIGHTS_FILE, META_FILE, weights, {**(extra or {}), **self.meta()}
        )

    @classmethod
    def load(
        cls, folder: str | os.PathLike, base: Any, backbone: FaceBackbone | None = None
    ) -> M2Encoder:
        """Load a saved encoder for `base`, strictly.

        Raises:
            ArtifactError: files missing or from two saves, or made for another base family,
                text encoder widths or backbone.
        """
        folder = Path(folder)
        meta = read_meta(folder)
        if meta.get("family") != base.family:
            raise ArtifactError(
                f"{folder}: this DreamIdentity encoder was trained for a {meta.get('family')} "
                f"base model, not {base.family}"
            )
        try:
            config = trained_config(meta)
            dims = [int(d) for d in meta["dims"]]
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{folder / META_FILE}: corrupt settings ({e})") from None
        if backbone is not None and list(backbone.dims) != dims:
            raise ArtifactError(
                f"{folder}: the face backbone gives features {list(backbone.dims)}, this encoder "
                f"was trained on {dims}"
            )
        tensors = read_trained_weights(folder, WEIGHTS_FILE, meta, str(base.device))
        model = cls(base, config, backbone=backbone, dims=dims)
        own = {k for k in model.state_dict() if k.startswith("proj.")}
        if set(tensors) != own:
            raise ArtifactError(
                f"{folder / WEIGHTS_FILE}: does not fit this base model's text encoders"
            )
        try:
            model.load_state_dict(tensors, strict=False)
        except RuntimeError as e:
            raise ArtifactError(
                f"{folder / WEIGHTS_FILE}: does not fit this base model's text encoders "
                f"({str(e).splitlines()[0]})"
            ) from None
        return model


def trained_config(meta: dict) -> DreamIdentityConfig:
    """The settings a saved encoder records (folders saved before `projection` existed hold
    linear projections)."""
    return DreamIdentityConfig.from_dict({"projection": "linear"} | meta["config"])


def read_meta(folder: str | os.PathLike) -> dict:
    """The `dreamidentity.json` of a saved encoder."""
    return read_trained_meta(folder, META_FILE, FORMAT, FORMAT_VERSION, "DreamIdentity encoder")
