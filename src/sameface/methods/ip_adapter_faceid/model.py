"""IP-Adapter-FaceID's parts on a frozen UNet (Ye et al. 2023; the FaceID release):

    face embedding e (unit, 512-d buffalo_l in the release) ─► FaceIDProjection ─► 4 ID tokens
    attn2:  out = Attn(Q', K'_txt, V'_txt) + id_scale · Attn(Q', K_id(tokens), V_id(tokens))
    every projection W of the LoRA targets:  W' = W + lora_scale · up · down   (rank 128)

Q', K', V' are the LoRA'd projections: the ID branch reads the same (LoRA'd) query, as the
release's `LoRAIPAttnProcessor` does. The unconditional tokens are the projection of a zero
embedding (the release's `uncond_image_prompt_embeds`).

`FaceIDModel` holds the projection, the ID adapter and the LoRA's A/B matrices as its only
submodules, so `parameters()` and `state_dict()` are exactly what training updates and
checkpoints. Building installs the ID branch and injects the LoRA; `remove()` (or leaving a
`with` block) gives the UNet back exactly as it was.

A saved folder holds `ip_adapter_faceid.safetensors` in the release's layout (`layout.py`),
so diffusers' `load_ip_adapter` reads our trained weights as it reads the release, and
`ip_adapter_faceid.json` (base, family, shapes, settings).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...adapters.id_attention import IDAdapter
from ...adapters.id_encoder import FaceIDProjection, IDEncoderConfig
from ...adapters.lora import TARGET_SETS, UNetLora
from ...errors import ArtifactError
from ..encoded import check_identity_recognizer
from ..trained import save_trained
from .config import IPAdapterFaceIDConfig
from .layout import from_release, to_release

__all__ = ["FORMAT", "META_FILE", "WEIGHTS_FILE", "FaceIDModel", "read_meta"]

WEIGHTS_FILE = "ip_adapter_faceid.safetensors"
META_FILE = "ip_adapter_faceid.json"
FORMAT = "sameface.ip_adapter_faceid"
FORMAT_VERSION = 1
METHOD = "ip-adapter-faceid"


def encoder_config(cfg: IPAdapterFaceIDConfig, id_dim: int, cross: int) -> IDEncoderConfig:
    """The projection's shape for these settings, embedding width and UNet."""
    return IDEncoderConfig(
        kind="faceid",
        id_dim=int(id_dim),
        clip_dim=0,
        output_dim=int(cross),
        num_tokens=cfg.num_tokens,
        mlp_dim=cfg.mlp_dim or 2 * int(id_dim),
        multi_photo=cfg.multi_photo,
        normalize_id=True,  # the release feeds insightface's `normed_embedding`
    )


class FaceIDModel(nn.Module):
    """The FaceID projection + ID adapter + LoRA, installed on `base.unet`.

    Args:
        base: the `BaseModel` (its UNet gets the ID branch and the LoRA).
        config: an `IPAdapterFaceIDConfig`.
        encoder: the projection's exact shape (as `load` passes it); default from `config`,
            its recogniser and the UNet.
    """

    def __init__(
        self,
        base: Any,
        config: IPAdapterFaceIDConfig | None = None,
        *,
        encoder: IDEncoderConfig | None = None,
    ):
        super().__init__()
        config = config or IPAdapterFaceIDConfig()
        cross = int(base.unet.config.cross_attention_dim)
        encoder = encoder or encoder_config(config, config.recognizer_dim, cross)
        if encoder.output_dim != cross:
            raise ArtifactError(
                f"the projection makes {encoder.output_dim}-d tokens, the UNet's cross-attention "
                f"width is {cross}"
            )
        self.config, self.encoder_config, self.base = config, encoder, base
        self.recorded: dict = {}  # the loaded folder's JSON (its recogniser pack, licence)
        with torch.random.fork_rng(devices=[]):  # same seed, same init; caller's RNG untouched
            torch.manual_seed(config.seed)
            self.encoder = FaceIDProjection(encoder).to(base.device)
            self.adapter = IDAdapter(
                base.unet, cross, scale=config.id_scale, init=config.adapter_init
            ).install()
        self._lora: UNetLora | None = None
        if config.lora_rank:
            try:
                self._lora = UNetLora(
                    base.unet,
                    config.lora_rank,
                    TARGET_SETS[config.lora_targets],
                    generator=torch.Generator().manual_seed(config.seed),
                )
                self._lora.set_scale(config.lora_scale)
                self.lora = self._lora.module()
            except BaseException:
                self.adapter.remove()
                raise

    @property
    def id_dim(self) -> int:
        return self.encoder_config.id_dim

    @property
    def cross_dim(self) -> int:
        return self.encoder_config.output_dim

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    # ---- tokens --------------------------------------------------------------------------

    def tokens(self, embeddings: torch.Tensor) -> torch.Tensor:
        """ID tokens (B, N, cross_dim) of (B, id_dim) or (B, photos, id_dim) embeddings."""
        return self.encoder(embeddings.to(self.device, torch.float32))

    forward = tokens

    def uncond_tokens(self, batch: int = 1, photos: int = 1) -> torch.Tensor:
        """The projection of zero embeddings: CFG's negative half (and dropped samples)."""
        return self.tokens(torch.zeros(batch, photos, self.id_dim))

    def check_identity(self, identity: Any) -> None:
        """Raise SamefaceError unless the identity was built with this model's recogniser."""
        pack = (self.recorded.get("recognizer") or {}).get("pack")
        check_identity_recognizer(identity, self.config.recognizer, self.id_dim, METHOD, pack)

    @torch.no_grad()
    def identity_tokens(self, identity: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(cond, uncond) tokens of an identity (all its photos), each (1, N, cross_dim)."""
        self.check_identity(identity)
        emb = torch.from_numpy(identity.embeddings).float()[None]  # (1, P, id_dim), unit rows
        cond = self.tokens(emb)
        photos = emb.shape[1] if self.encoder_config.multi_photo == "concat" else 1
        return cond, self.uncond_tokens(1, photos)

    def cross_attention_kwargs(self, tokens: torch.Tensor | None, id_scale: Any = None) -> dict:
        """The UNet's `cross_attention_kwargs` for these ID tokens (`adapters.IDAttention`)."""
        return {"id_tokens": tokens, "id_scale": id_scale}

    def set_lora_scale(self, scale: float) -> None:
        """Scale the LoRA's ΔW (1 = as trained; a model without a LoRA ignores it)."""
        if self._lora is not None:
            self._lora.set_scale(scale)

    # ---- install / remove ----------------------------------------------------------------

    def remove(self) -> None:
        """Take the LoRA and the ID branch off: the UNet computes exactly what it did (final:
        load the folder again to use the model again)."""
        if self._lora is not None:
            self._lora.remove()
        self.adapter.remove()

    def __enter__(self) -> FaceIDModel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    # ---- persistence ---------------------------------------------------------------------

    def release_state(self) -> dict[str, torch.Tensor]:
        """All weights in the release's layout (`layout.py`), float32 on the CPU."""
        state = to_release(
            self.encoder.state_dict(),
            self.adapter.state_dict(),
            self._lora.state_dict_diffusers() if self._lora is not None else {},
            list(self.base.unet.attn_processors),
        )
        return {k: v.detach().float().cpu() for k, v in state.items()}

    def load_release_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Set every weight from the release's layout; strict (each tensor used once).

        Raises:
            ArtifactError: keys left over or missing, or other shapes.
        """
        encoder, adapter, lora = from_release(tensors, list(self.base.unet.attn_processors))
        try:
            self.encoder.load_state_dict(encoder, strict=True)
        except RuntimeError as e:
            raise ArtifactError(f"the projection does not fit ({str(e).splitlines()[0]})") from None
        self.adapter.load_state_dict(adapter)
        if self._lora is None:
            if lora:
                raise ArtifactError("LoRA tensors in a model without a LoRA (lora_rank 0)")
            return
        try:
            self._lora.load_diffusers(lora)
        except Exception as e:
            raise ArtifactError(str(e)) from None

    def meta(self) -> dict:
        """What `ip_adapter_faceid.json` records (everything `load` checks)."""
        from ... import __version__

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "method": METHOD,
            "sameface_version": __version__,
            "family": self.base.family,
            "base": self.base.source,
            "cross_attention_dim": self.cross_dim,
            # a loaded folder's record (e.g. the release's insightface pack) is kept
            "recognizer": {
                **(self.recorded.get("recognizer") or {}),
                "name": self.config.recognizer,
                "dim": self.id_dim,
            },
            "encoder": self.encoder_config.to_dict(),
            "config": self.config.to_dict(),
        }

    def save(self, folder: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write the weights (release layout) and the JSON record, each atomically, the JSON
        last, both with one save id (`methods.trained.save_trained`)."""
        meta = {**(extra or {}), **self.meta()}
        return save_trained(folder, WEIGHTS_FILE, META_FILE, self.release_state(), meta)

    @classmethod
    def load(cls, folder: str | os.PathLike, base: Any) -> FaceIDModel:
        """Load a saved (or imported) folder onto `base`, strictly.

        Raises:
            ArtifactError: files missing, from two saves, or made for another base family,
                width or shape.
        """
        from ...tensorfile import read_safetensors

        folder = Path(folder)
        meta = read_meta(folder)
        if meta.get("family") != base.family:
            raise ArtifactError(
                f"{folder}: made for a {meta.get('family')} base model, not {base.family}"
            )
        cross = int(base.unet.config.cross_attention_dim)
        if meta.get("cross_attention_dim") != cross:
            raise ArtifactError(
                f"{folder}: made for a UNet with cross-attention width "
                f"{meta.get('cross_attention_dim')}, this one has {cross}"
            )
        path = folder / WEIGHTS_FILE
        if not path.is_file():
            raise ArtifactError(f"{path}: missing")
        tensors, file_meta = read_safetensors(path)
        if file_meta.get("save_id") != meta.get("save_id"):
            raise ArtifactError(
                f"{folder}: {WEIGHTS_FILE} and {META_FILE} come from different saves (a save "
                "was interrupted?); save the model again"
            )
        try:
            config = IPAdapterFaceIDConfig.from_dict(meta["config"])
            enc = IDEncoderConfig.from_dict(meta["encoder"])
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{folder / META_FILE}: corrupt settings ({e})") from None
        model = cls(base, config, encoder=enc)
        model.recorded = meta
        try:
            model.load_release_state(tensors)
        except ArtifactError as e:
            model.remove()
            raise ArtifactError(f"{folder}: {e}") from None
        except BaseException:
            model.remove()
            raise
        return model


def read_meta(folder: str | os.PathLike) -> dict:
    """The `ip_adapter_faceid.json` of a saved folder.

    Raises:
        ArtifactError: missing, unreadable, not this method's, or from a newer sameface.
    """
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise ArtifactError(f"{folder}: not an IP-Adapter-FaceID folder (no {META_FILE})")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: unreadable ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a sameface IP-Adapter-FaceID folder")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise ArtifactError(f"{path}: unknown format_version {version!r}; upgrade sameface")
    return meta
