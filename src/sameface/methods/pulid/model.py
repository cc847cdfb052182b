"""PuLID's trainable parts: the ID encoder and the ID adapter on a frozen UNet (seed 004).

    parsed face (grey face on white) ─► CLIP vision ─► image embedding e_clip, ViT hidden h_1..h_k
    id_vec = recogniser embedding ⊕ e_clip/‖e_clip‖                 (PuLID: id_cond = [ante; vit])
    ID tokens = IDFormer(id_vec, h_1..h_k)   (or MLP(id_vec): the seed's "MLP → 5 tokens")
    UNet cross-attention: Attn(Q, K_txt, V_txt) + id_scale · Attn(Q, K_id(tokens), V_id(tokens))

`PuLIDModel` holds the encoder and the adapter as its only submodules, so `parameters()` and
`state_dict()` are exactly what training updates and checkpoints. The CLIP vision model and
the base model are referenced, never registered; the caller owns (and moves) them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...adapters.id_attention import IDAdapter
from ...adapters.id_encoder import IDEncoderConfig, build_id_encoder
from ...errors import ArtifactError, SamefaceError
from ...faces.aligned_masks import aligned_face_masks, template_face_mask
from ...faces.id_loss import RECOGNIZER_DIMS
from ...faces.parsing import parsed_face_tensor
from ...models.clip_vision import ClipVision
from ..encoded import check_identity_recognizer
from .config import PuLIDConfig

__all__ = [
    "ADAPTER_FILE",
    "ENCODER_FILE",
    "FORMAT",
    "META_FILE",
    "PuLIDModel",
    "read_meta",
]

ADAPTER_FILE = "adapter.safetensors"
ENCODER_FILE = "encoder.safetensors"
META_FILE = "pulid.json"
FORMAT = "sameface.pulid"
FORMAT_VERSION = 1


class PuLIDModel(nn.Module):
    """PuLID's ID encoder + ID adapter, installed on `base.unet` (seed 004).

    Building installs the adapter's attention processors in the UNet (its weights are
    untouched; `remove()` or leaving a `with` block restores the original processors).

    Args:
        base: the `BaseModel` (its UNet gets the adapter; family and cross-attention width
            are recorded).
        config: a `PuLIDConfig` (encoder shape, vit_layers, adapter init, scales, seed).
        vision: the frozen `ClipVision`; needed to encode faces (`condition`,
            `encode_identity`); None builds a model that only turns given conditions into
            tokens (then `encoder_config` is required).
        recognizer_dim: face-embedding width; default from `config.recognizer`.
        encoder_config: the exact `IDEncoderConfig` (as `load` passes it); default derived
            from `config`, the vision model, the recogniser and the UNet.

    Raises:
        ValueError: vit_layers do not fit the vision model, or the shapes disagree.
        SamefaceError: the UNet already carries an ID adapter.
    """

    def __init__(
        self,
        base: Any,
        config: PuLIDConfig | None = None,
        *,
        vision: ClipVision | None = None,
        recognizer_dim: int | None = None,
        encoder_config: IDEncoderConfig | None = None,
    ):
        super().__init__()
        config = config or PuLIDConfig()
        cross = int(base.unet.config.cross_attention_dim)
        if vision is not None:
            vision.check_layers(config.vit_layers)
            config = dataclasses.replace(config, clip_vision=vision.name)
        if encoder_config is None:
            if vision is None:
                raise ValueError("PuLIDModel needs a CLIP vision model or an encoder_config")
            encoder_config = config.encoder_config(
                id_dim=int(recognizer_dim or config.recognizer_dim),
                clip_dim=vision.clip_dim,
                vit_dim=vision.vit_dim,
                num_vit_layers=len(config.vit_layers),
                output_dim=cross,
                normalize_clip=True,  # PuLID: id_cond_vit / ‖id_cond_vit‖
                normalize_id=False,  # PuLID feeds the raw recogniser embedding
            )
        _check_shapes(encoder_config, cross, vision, config, recognizer_dim)
        self.config = config
        self.encoder_config = encoder_config
        self.base = base  # a BaseModel is not an nn.Module: a plain reference
        self.vision = vision  # ClipVision is not an nn.Module either
        self.face_parser = None  # a `FaceParser`: the release's face input instead of masks
        self._vision_meta = vision.describe() if vision is not None else None
        with torch.random.fork_rng(devices=[]):  # same seed, same init; caller's RNG untouched
            torch.manual_seed(config.seed)
            encoder = build_id_encoder(encoder_config)
            adapter = IDAdapter(
                base.unet,
                cross,
                scale=config.id_scale,
                init=config.adapter_init,
                num_zero=config.num_zero,
                ortho=config.ortho,
            )
        self.encoder = encoder.to(base.device)
        self.adapter = adapter.install()

    # ---- shapes ---------------------------------------------------------------------------

    @property
    def id_dim(self) -> int:
        """Face-recognition embedding width."""
        return self.encoder_config.id_dim

    @property
    def cond_dim(self) -> int:
        """Width of one photo's id ⊕ CLIP vector."""
        return self.encoder_config.cond_dim

    @property
    def cross_dim(self) -> int:
        """ID token width = the UNet's cross-attention width."""
        return self.encoder_config.output_dim

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    # ---- conditions and tokens ----------------------------------------------------------

    def _need_vision(self) -> ClipVision:
        if self.vision is None:
            raise SamefaceError(
                "this PuLID model was loaded without its CLIP vision model; load it with "
                "vision=... (a ClipVision or the recorded spec) to encode faces"
            )
        return self.vision

    def condition(
        self,
        aligned: Any,
        masks: Any = None,
        face_embeddings: Any = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """PuLID's ID condition of a batch: (id_vec, ViT hidden states).

        The parsed face (grey face on white, `parsed_face_tensor`) of every aligned crop goes
        through CLIP vision; its normalised image embedding is appended to the recogniser
        embedding (PuLID: `id_cond = cat([id_ante_embedding, id_cond_vit / ‖id_cond_vit‖])`).
        No gradients flow into CLIP; the outputs are plain data for `tokens`.

        Args:
            aligned: an `Identity` (all its photos, batch 1), or ArcFace-aligned crops:
                uint8 (B, P, H, W, 3) / (B, H, W, 3), or float in [0, 1] (B, P, 3, H, W) /
                (B, 3, H, W); numpy or torch.
            masks: face masks aligned the same way, (B, P, H, W) / (B, H, W): uint8 (255 =
                face), bool or float; None = the template ellipse for every crop. Ignored for
                an Identity (its masks are warped into the aligned frame). With a
                `face_parser` set, the parser's masks replace both.
            face_embeddings: recogniser embeddings (B, P, id_dim) / (B, id_dim). Ignored for an
                Identity.

        Returns:
            id_vec (B, P, cond_dim) float32 and one (B, P, L, vit_dim) tensor per vit_layers
            entry, on the encoder's device.
        """
        vision = self._need_vision()
        if hasattr(aligned, "aligned") and hasattr(aligned, "embeddings"):
            identity = aligned
            self.check_identity(identity)
            aligned = identity.aligned[None]
            masks = aligned_face_masks(identity)[None]
            face_embeddings = self._identity_embeddings(identity)[None]
        if face_embeddings is None:
            raise ValueError("condition() needs the face embeddings (or pass an Identity)")
        images = _as_tensor(aligned)
        if images.dtype == torch.uint8:
            if images.shape[-1] != 3:
                raise ValueError(f"uint8 crops must be (..., H, W, 3), got {tuple(images.shape)}")
            images = images.movedim(-1, -3).float() / 255.0
        elif not images.is_floating_point() or images.shape[-3] != 3:
            raise ValueError(
                f"crops must be uint8 (..., H, W, 3) or float (..., 3, H, W), got "
                f"{images.dtype} {tuple(images.shape)}"
            )
        if images.ndim == 4:
            images = images[:, None]  # one photo per sample
        if images.ndim != 5:
            raise ValueError(f"crops must be (B, P, ...) or (B, ...), got {tuple(images.shape)}")
        b, p, _, h, w = images.shape
        if masks is None:
            m = torch.from_numpy(template_face_mask(h)) if h == w else None
            if m is None:
                raise ValueError("crops are not square: pass their masks")
            m = m.expand(b * p, h, w)
        else:
            m = _as_tensor(masks)
            if m.shape[-2:] != (h, w) or m.numel() != b * p * h * w:
                raise ValueError(
                    f"masks {tuple(m.shape)} do not match crops (B={b}, P={p}, {h}, {w})"
                )
            m = m.reshape(b * p, h, w)
        emb = _as_tensor(face_embeddings).float()
        if emb.ndim == 2:
            emb = emb[:, None]
        if emb.shape != (b, p, self.id_dim):
            raise ValueError(
                f"face embeddings must be (B={b}, P={p}, {self.id_dim}), got {tuple(emb.shape)}"
            )
        dev = vision.device
        flat = images.reshape(b * p, 3, h, w).to(dev)
        if self.face_parser is not None:  # PuLID's own face input: the parser's labels
            m = self.face_parser.face_mask(flat)
        parsed = parsed_face_tensor(flat, m.to(dev))
        clip, hidden = vision.features(parsed, self.config.vit_layers)
        out = self.device
        clip = F.normalize(clip.float(), dim=-1).to(out).view(b, p, -1)
        id_vec = torch.cat([emb.to(out), clip], dim=-1)
        vit = [x.to(out).reshape(b, p, *x.shape[1:]) for x in hidden]
        return id_vec, vit

    def _identity_embeddings(self, identity: Any) -> np.ndarray:
        """The identity's embeddings as this model was trained on them: unit, or raw."""
        if not self.config.raw_id_embedding:
            return identity.embeddings
        if "embedding_norms" not in identity.meta:
            raise SamefaceError(
                "this PuLID model takes the recogniser's raw embedding (raw_id_embedding), but "
                "the identity does not record its lengths: build it again with this sameface "
                "(in a bench run folder: delete its identities/<name> folder)"
            )
        return identity.raw_embeddings

    def tokens(self, id_vec: torch.Tensor, vit_hidden: Sequence[torch.Tensor]) -> torch.Tensor:
        """ID tokens (B, N, cross_dim) from `condition`'s output (differentiable in the encoder).

        Args:
            id_vec: (B, P, cond_dim) or (B, cond_dim).
            vit_hidden: one (B, P, L, vit_dim) or (B, L, vit_dim) tensor per vit layer
                (unused by the "mlp" encoder).
        """
        if id_vec.shape[-1] != self.cond_dim:
            raise ValueError(f"id_vec must end in {self.cond_dim}, got {tuple(id_vec.shape)}")
        id_vec = id_vec.to(self.device)
        ids, clip = id_vec[..., : self.id_dim], id_vec[..., self.id_dim :]
        return self.encoder(ids, clip, [h.to(self.device) for h in vit_hidden])

    forward = tokens

    def uncond_condition(
        self, batch: int = 1, photos: int = 1
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The unconditional ID condition: a zero id vector and, per `config.uncond_vit`,
        zero ViT hidden states (PuLID's released code) or those of a black image."""
        dev = self.device
        id_vec = torch.zeros(batch, photos, self.cond_dim, device=dev)
        if self.config.uncond_vit == "black":
            vision = self._need_vision()
            black = torch.zeros(1, 3, vision.image_size, vision.image_size, device=vision.device)
            _, hidden = vision.features(black, self.config.vit_layers)
            vit = [x.to(dev).expand(batch, photos, *x.shape[1:]) for x in hidden]
        else:
            seq = self._seq_len()
            d = self.encoder_config.vit_dim
            vit = [torch.zeros(batch, photos, seq, d, device=dev) for _ in self.config.vit_layers]
        return id_vec, vit

    def uncond_tokens(self, batch: int = 1, photos: int = 1) -> torch.Tensor:
        """(batch, N, cross_dim) unconditional ID tokens (CFG's negative half; dropped IDs).

        PuLID computes them from one photo's shapes; the "mlp" encoder with "concat" emits
        `num_tokens` per photo, so pass `photos` to match a P-photo condition there.
        """
        return self.tokens(*self.uncond_condition(batch, photos))

    def drop_condition(
        self, id_vec: torch.Tensor, vit_hidden: Sequence[torch.Tensor], drop: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Replace the samples where `drop` (B,) is true by the unconditional condition
        (classifier-free guidance training: `config.id_drop_prob`)."""
        if id_vec.ndim != 3 or any(h.ndim != 4 for h in vit_hidden):
            raise ValueError("drop_condition takes (B, P, ...) conditions as `condition` returns")
        b, p = id_vec.shape[:2]
        u_vec, u_vit = self.uncond_condition(b, p)
        keep = ~drop.to(id_vec.device).bool()
        id_vec = torch.where(keep.view(b, 1, 1), id_vec, u_vec.to(id_vec.dtype))
        vit = []
        for h, u in zip(vit_hidden, u_vit, strict=True):
            if u.shape[2] != h.shape[2]:
                u = u[:, :, :1].expand_as(h)  # zeros/black per token; any sequence length
            vit.append(torch.where(keep.view(b, 1, 1, 1).to(h.device), h, u.to(h)))
        return id_vec, vit

    def _seq_len(self) -> int:
        if self.vision is not None:
            return self.vision.seq_len
        meta = self._vision_meta or {}
        if not meta.get("seq_len"):
            raise SamefaceError("the CLIP vision sequence length is unknown; load with vision=...")
        return int(meta["seq_len"])

    def cross_attention_kwargs(
        self, tokens: torch.Tensor | None, id_scale: float | None = None, attn_record: Any = None
    ) -> dict:
        """The UNet's `cross_attention_kwargs` for these ID tokens (see `sameface.adapters.IDAttention`)."""
        kwargs: dict = {"id_tokens": tokens, "id_scale": id_scale}
        if attn_record is not None:
            kwargs["attn_record"] = attn_record
        return kwargs

    # ---- identities ---------------------------------------------------------------------

    def check_identity(self, identity: Any) -> None:
        """Raise SamefaceError unless the identity's embeddings come from this model's recogniser."""
        check_identity_recognizer(identity, self.config.recognizer, self.id_dim, "PuLID")

    @torch.no_grad()
    def encode_identity(self, identity: Any) -> torch.Tensor:
        """(1, N, cross_dim) ID tokens of an identity (all its photos)."""
        return self.tokens(*self.condition(identity))

    @torch.no_grad()
    def identity_tokens(self, identity: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(cond, uncond) tokens of an identity, each (1, N, cross_dim), ready for CFG."""
        cond = self.encode_identity(identity)
        uncond = self.uncond_tokens(1)
        if uncond.shape != cond.shape:  # "mlp" + "concat": tokens per photo
            uncond = self.uncond_tokens(1, identity.num_photos)
        return cond, uncond

    # ---- install / remove ---------------------------------------------------------------

    def remove(self) -> None:
        """Give the UNet back its original attention processors (and grad flags)."""
        self.adapter.remove()

    def install(self) -> PuLIDModel:
        """Put the adapter back into the UNet after `remove()`. Returns self."""
        self.adapter.install()
        return self

    def __enter__(self) -> PuLIDModel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    # ---- persistence --------------------------------------------------------------------

    def meta(self) -> dict:
        """What `pulid.json` records (everything `load` checks)."""
        from ... import __version__

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "method": "pulid",
            "sameface_version": __version__,
            "family": self.base.family,
            "base": self.base.source,
            "cross_attention_dim": self.cross_dim,
            "recognizer": {"name": self.config.recognizer, "dim": self.id_dim},
            "clip_vision": self._vision_meta,
            "vit_layers": list(self.config.vit_layers),
            "encoder": self.encoder_config.to_dict(),
            "adapter_layers": list(self.adapter.layer_names),
            "config": self.config.to_dict(),
        }

    def save(self, folder: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write `adapter.safetensors`, `encoder.safetensors` and `pulid.json` into `folder`.

        Each file is written atomically (temporary file + rename), the JSON last; all three
        carry one save id, so `load` refuses a folder mixing two saves (a run killed half-way
        through overwriting). Other files in the folder (checkpoints) are left alone.

        Args:
            folder: destination (created).
            extra: more JSON-ready entries for `pulid.json` (e.g. training step, losses).
        """
        from ...fileio import write_json_atomic
        from ...tensorfile import save_safetensors

        folder = Path(folder)
        save_id = uuid.uuid4().hex
        tag = {"save_id": save_id, "method": "pulid"}
        self.adapter.save(folder / ADAPTER_FILE, metadata=tag)
        enc = {k: v.detach().cpu().contiguous() for k, v in self.encoder.state_dict().items()}
        meta_enc = {**tag, "format": FORMAT + ".encoder"}
        save_safetensors(enc, folder / ENCODER_FILE, meta_enc)
        write_json_atomic(folder / META_FILE, {**(extra or {}), **self.meta(), "save_id": save_id})
        return folder

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike,
        base: Any,
        vision: ClipVision | str | None = None,
        *,
        local_files_only: bool = True,
    ) -> PuLIDModel:
        """Load a saved PuLID model onto `base` (installs the adapter), strictly.

        Args:
            folder: a folder written by `save`.
            base: the `BaseModel` it was trained for (same family and cross-attention width).
            vision: a `ClipVision`, a spec to load one (e.g. `read_meta(folder)["clip_vision"]
                ["name"]`), or None to load without it (tokens from given conditions only,
                e.g. to generate from cached tokens).
            local_files_only: for a vision spec: never download (default).

        Raises:
            ArtifactError: files missing, from two saves, or made for another base family,
                width, recogniser or vision model.
        """
        from ...tensorfile import check_header, read_safetensors

        folder = Path(folder)
        meta = read_meta(folder)
        family, cross = meta.get("family"), meta.get("cross_attention_dim")
        if family != base.family:
            raise ArtifactError(
                f"{folder}: this PuLID model was trained for a {family} base model, not {base.family}"
            )
        if cross != base.unet.config.cross_attention_dim:
            raise ArtifactError(
                f"{folder}: made for a UNet with cross-attention width {cross}, this one has "
                f"{base.unet.config.cross_attention_dim}"
            )
        try:
            config = PuLIDConfig.from_dict(meta["config"])
            enc_cfg = IDEncoderConfig.from_dict(meta["encoder"])
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{folder / META_FILE}: corrupt settings ({e})") from None
        if meta.get("imported_from") and "raw_id_embedding" not in meta["config"]:
            # Imported before the raw embedding was known: unit vectors would be fed silently.
            raise ArtifactError(
                f"{folder}: imported by an older sameface; run `sameface import pulid` again"
            )
        if isinstance(vision, (str, os.PathLike)):
            vision = ClipVision.load(vision, device=base.device, local_files_only=local_files_only)
        if vision is not None:
            rec = meta.get("clip_vision") or {}
            if rec.get("exact") and vision.name != rec.get("name"):
                # e.g. an imported release on EVA02-CLIP: OpenAI's ViT-L/14-336 has the same
                # shapes and would give wrong features without a word.
                raise ArtifactError(
                    f"{folder}: this PuLID model needs the vision tower {rec.get('name')}, not "
                    f"{vision.name}"
                )
            problems = [
                f"{k} {getattr(vision, k)} (trained with {rec.get(k, getattr(enc_cfg, k, None))})"
                for k in ("clip_dim", "vit_dim", "seq_len")
                if rec.get(k, getattr(enc_cfg, k, None)) not in (None, getattr(vision, k))
            ]
            if problems:
                raise ArtifactError(
                    f"{folder}: CLIP vision model {vision.name} does not fit this PuLID model: "
                    + ", ".join(problems)
                )
            if max(config.vit_layers) > vision.num_layers:
                raise ArtifactError(
                    f"{folder}: vit_layers {list(config.vit_layers)} do not fit {vision.name} "
                    f"({vision.num_layers} layers)"
                )
        tensors = {}
        for name in (ADAPTER_FILE, ENCODER_FILE):
            path = folder / name
            if not path.is_file():
                raise ArtifactError(f"{path}: missing")
            if name == ENCODER_FILE:
                tensors, file_meta = read_safetensors(path)
            else:  # read in full by the adapter's own load below
                file_meta = check_header(path).get("__metadata__", {})
            if file_meta.get("save_id") != meta.get("save_id"):
                raise ArtifactError(
                    f"{folder}: {name} and {META_FILE} come from different saves (a save was "
                    "interrupted?); save the model again"
                )
        try:
            model = cls(base, config, vision=vision, encoder_config=enc_cfg)
        except (ValueError, SamefaceError) as e:
            if isinstance(e, ArtifactError) or "already has an ID adapter" in str(e):
                raise
            raise ArtifactError(f"{folder}: does not fit this base model ({e})") from None
        try:
            model._vision_meta = meta.get("clip_vision") if vision is None else model._vision_meta
            try:
                model.encoder.load_state_dict(tensors, strict=True)
            except RuntimeError as e:
                raise ArtifactError(
                    f"{folder / ENCODER_FILE}: does not fit the recorded encoder "
                    f"({str(e).splitlines()[0]})"
                ) from None
            model.adapter.load(folder / ADAPTER_FILE)
        except BaseException:
            model.remove()  # leave the UNet as it was
            raise
        return model


def read_meta(folder: str | os.PathLike) -> dict:
    """The `pulid.json` of a saved PuLID model.

    Raises:
        ArtifactError: missing, unreadable, or not a PuLID model.
    """
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise ArtifactError(f"{folder}: not a PuLID model folder (no {META_FILE})")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: unreadable ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a sameface PuLID model")
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ArtifactError(f"{path}: corrupt metadata (format_version {version!r})")
    if version > FORMAT_VERSION:
        raise ArtifactError(f"{path}: format {version} is newer; upgrade sameface")
    return meta


def _check_shapes(
    enc: IDEncoderConfig,
    cross: int,
    vision: ClipVision | None,
    config: PuLIDConfig,
    recognizer_dim: int | None,
) -> None:
    problems = []
    if enc.output_dim != cross:
        problems.append(f"encoder output {enc.output_dim} != UNet cross-attention width {cross}")
    if enc.num_vit_layers != len(config.vit_layers) and enc.kind == "idformer":
        problems.append(
            f"encoder reads {enc.num_vit_layers} ViT layers, vit_layers has {len(config.vit_layers)}"
        )
    if vision is not None and (enc.clip_dim, enc.vit_dim) != (vision.clip_dim, vision.vit_dim):
        problems.append(
            f"encoder expects CLIP widths {(enc.clip_dim, enc.vit_dim)}, {vision.name} has "
            f"{(vision.clip_dim, vision.vit_dim)}"
        )
    want = recognizer_dim or RECOGNIZER_DIMS.get(config.recognizer)
    if recognizer_dim is not None and enc.id_dim != want:
        problems.append(f"encoder id_dim {enc.id_dim} != recogniser width {want}")
    if problems:
        raise ValueError("PuLID shapes disagree: " + "; ".join(problems))


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.from_numpy(np.ascontiguousarray(x))
