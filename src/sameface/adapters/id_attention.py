"""Decoupled ID cross-attention on a frozen UNet (IP-Adapter style, as PuLID uses; seed 004).

Every cross-attention layer (attn2) of an SD1.x / SD2.x / SDXL UNet gets a second attention
over ID tokens, added to the text attention before the output projection:

    out = Attn(Q, K_txt, V_txt) + id_scale · Attn(Q, K_id, V_id),
    K_id = to_k_id(id_tokens),  V_id = to_v_id(id_tokens)

(by default; PuLID v1.1's `num_zero` and `ortho` options change how the two join:
`sameface.adapters.id_modes`).

`to_k_id` / `to_v_id` are the only new weights; they live in an `IDAdapter`, whose
`state_dict()` is the adapter checkpoint. The branch is an attention feature
(`sameface.adapters.attention`): installing puts it beside whatever other features the UNet
carries, `remove()` takes it off (the original processors come back with the last feature).

Per call the UNet reads `cross_attention_kwargs={"id_tokens": (B, N, id_dim) or None,
"id_scale": float}`, and, through the attention recorder the adapter also installs,
`"attn_record": dict` (Q and K per layer, for PuLID's alignment loss).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArtifactError, SamefaceError
from .attention import (
    AttentionFeature,
    AttentionRecorder,
    _merge_heads,
    _split_heads,
    attach_feature,
    attention_layers,
    detach_feature,
    is_cross_attention,
)
from .id_modes import ORTHO_MODES, id_mass, join, pad_zero_tokens

__all__ = ["ID_KWARGS", "INITS", "IDAdapter", "IDAttention", "install_id_adapter"]

ID_KWARGS = ("id_tokens", "id_scale")
"""The `cross_attention_kwargs` keys the ID branch reads."""

INITS = ("auto", "copy", "zero_v", "random")
"""How the new K/V projections start; see `IDAdapter`."""

_FORMAT = "sameface.id_adapter"


class IDAttention(AttentionFeature):
    """The ID branch as an attention feature: `id_scale · Attn(Q, to_k_id(id), to_v_id(id))`
    added before each cross-attention layer's output projection. The branch takes no
    attention mask and skips `norm_cross` (that norm belongs to the base's text conditioning).

    Without ID tokens (or with a Python scale of 0) it is inactive: the layer computes exactly
    what the base model does.
    """

    keys = ID_KWARGS
    description = "an ID adapter"

    def __init__(self, adapter: IDAdapter):
        self.adapter = adapter

    def applies_to(self, name: str, attn: Any) -> bool:
        return name in self.adapter.layer_names

    def _scale(self, kwargs: dict) -> Any:
        scale = kwargs.get("id_scale")
        return self.adapter.scale if scale is None else scale

    def active(self, kwargs: dict) -> bool:
        scale = self._scale(kwargs)
        return kwargs.get("id_tokens") is not None and not (
            isinstance(scale, (int, float)) and scale == 0
        )

    def extra(
        self, name: str, attn: Any, query: torch.Tensor, kwargs: dict, text: torch.Tensor
    ) -> torch.Tensor:
        """id_scale · Attn(Q, K_id, V_id) with heads merged, (B, L_img, heads · d), joined to
        the text attention output as the adapter's `ortho` mode says (`adapters.id_modes`)."""
        proj = self.adapter.layers[_layer_key(name)]
        id_tokens = kwargs["id_tokens"]
        batch, heads, head_dim = query.shape[0], query.shape[1], query.shape[-1]
        if id_tokens.ndim != 3:
            raise ValueError(
                f"id_tokens must be (batch, tokens, id_dim), got shape {tuple(id_tokens.shape)}"
            )
        if id_tokens.shape[0] != batch:
            if id_tokens.shape[0] != 1:
                raise ValueError(
                    f"id_tokens has batch {id_tokens.shape[0]} but the UNet batch is {batch}"
                )
            id_tokens = id_tokens.expand(batch, -1, -1)
        # The projections may be kept in fp32 (trainable master weights) beside a bf16/fp16 base.
        id_tokens = id_tokens.to(proj.to_k_id.weight.dtype)
        id_key = _split_heads(proj.to_k_id(id_tokens).to(query.dtype), batch, heads, head_dim)
        id_value = _split_heads(proj.to_v_id(id_tokens).to(query.dtype), batch, heads, head_dim)
        if attn.norm_k is not None:  # qk-norm layers normalise every key they attend to
            id_key = attn.norm_k(id_key)
        id_key, id_value = pad_zero_tokens(id_key, id_value, self.adapter.num_zero)
        out = F.scaled_dot_product_attention(
            query, id_key, id_value, attn_mask=None, dropout_p=0.0, is_causal=False
        )
        out = _merge_heads(out, batch, heads, head_dim).to(query.dtype)
        scale = self._scale(kwargs)
        if isinstance(scale, torch.Tensor) and scale.ndim > 0:
            scale = scale.to(out.dtype).view(-1, 1, 1)  # per-sample scale
        mode = self.adapter.ortho
        mass = id_mass(query, id_key) if mode == "v2" else None
        return join(text, out, scale, mode, mass)


class _IDProjections(nn.Module):
    """The new key/value projections of one cross-attention layer."""

    def __init__(self, id_dim: int, key_dim: int, value_dim: int, *, device: Any, dtype: Any):
        super().__init__()
        self.to_k_id = nn.Linear(id_dim, key_dim, bias=False, device=device, dtype=dtype)
        self.to_v_id = nn.Linear(id_dim, value_dim, bias=False, device=device, dtype=dtype)


def _layer_key(name: str) -> str:
    # ModuleDict keys cannot contain "."; "down_blocks.1.attentions.0....attn2" -> "down_blocks_1_...".
    return name.replace(".", "_")


class IDAdapter(nn.Module):
    """The trainable ID projections of every cross-attention layer of a UNet, and their install.

    Building reads the UNet's layer shapes (and, for `init="copy"`, its K/V weights) but
    changes nothing; `install()` attaches the ID branch (and an attention recorder) as
    attention features, `remove()` detaches them (the original processor objects come back
    with the UNet's last feature). It is also a context manager (`with IDAdapter(unet, 768):`
    installs, leaving the block removes). The UNet is referenced, not registered, so
    `parameters()` and `state_dict()` hold only the adapter's projections, keyed
    `layers.<attention module name with _ for .>.to_{k,v}_id.weight`.

    Init of the new projections (`init`):
        "copy": K_id/V_id start as copies of the layer's to_k/to_v (IP-Adapter's training
            recipe, which PuLID follows): ID tokens begin in the text tokens' key/value space
            and both projections get gradients from the first step. Needs
            id_dim == the UNet's cross_attention_dim (true for PuLID's IDFormer, which emits
            tokens of that width).
        "zero_v": default nn.Linear init for K_id, zeros for V_id: the ID branch adds exactly
            0 at the start (ControlNet-style identity init); V_id gets gradients at once,
            K_id from the second step.
        "random": default nn.Linear init for both.
        "auto" (default): "copy" when id_dim matches the cross-attention width, else "zero_v".

    Args:
        unet: a diffusers `UNet2DConditionModel` (SD1.x, SD2.x or SDXL).
        id_dim: width of the ID tokens.
        scale: default ID scale (a call's `id_scale` overrides it).
        num_zero: zero key/value tokens appended to the ID tokens in every layer, a fixed
            softmax sink that softens the ID (PuLID v1.1's option; 0 = none).
        ortho: how the ID attention joins the text attention: "off" (added), "v1" / "v2"
            (only what is orthogonal to the text output; PuLID v1.1's options,
            `adapters.id_modes`).
        init: one of `INITS`.
        dtype: dtype of the new weights (default float32, also beside a bf16/fp16 base: the
            processor casts).
        freeze_base: on install, turn off `requires_grad` on every UNet parameter (restored
            by `remove()`), so gradients reach only the adapter.
    """

    def __init__(
        self,
        unet: Any,
        id_dim: int,
        *,
        scale: float = 1.0,
        init: str = "auto",
        dtype: torch.dtype | None = None,
        freeze_base: bool = True,
        num_zero: int = 0,
        ortho: str = "off",
    ):
        super().__init__()
        if int(id_dim) != id_dim or id_dim < 1:
            raise ValueError(f"id_dim must be a positive integer, got {id_dim!r}")
        if int(num_zero) != num_zero or num_zero < 0:
            raise ValueError(f"num_zero must be an integer >= 0, got {num_zero!r}")
        if ortho not in ORTHO_MODES:
            raise ValueError(f"ortho must be one of {', '.join(ORTHO_MODES)}, got {ortho!r}")
        self.num_zero, self.ortho = int(num_zero), ortho
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        # Plain attribute, not a submodule: the adapter's state_dict must not include the UNet.
        object.__setattr__(self, "_unet", unet)
        self.id_dim = int(id_dim)
        self.freeze_base = freeze_base
        self._scale = float(scale)
        self._features: list[AttentionFeature] = []
        self._grad_flags: dict[str, bool] = {}

        cross = {n: a for n, a in attention_layers(unet).items() if is_cross_attention(a)}
        if not cross:
            raise ValueError("this UNet has no cross-attention layers to attach ID tokens to")
        self.layer_names: list[str] = list(cross)
        self.layers = nn.ModuleDict()
        for name, attn in cross.items():
            key = _layer_key(name)
            if key in self.layers:
                raise ValueError(f"two attention layers map to the same adapter key {key!r}")
            weight = attn.to_k.weight
            proj = _IDProjections(
                self.id_dim,
                attn.to_k.out_features,
                attn.to_v.out_features,
                device=weight.device,
                dtype=dtype or torch.float32,
            )
            self._init_layer(proj, attn, init)
            self.layers[key] = proj

    def _init_layer(self, proj: _IDProjections, attn: Any, init: str) -> None:
        text_dim = attn.to_k.in_features
        if init == "auto":
            init = "copy" if text_dim == self.id_dim else "zero_v"
        if init == "copy":
            if text_dim != self.id_dim:
                raise ValueError(
                    f"init='copy' needs id_dim == the cross-attention width ({text_dim}), "
                    f"got {self.id_dim}; use init='zero_v' or 'random'"
                )
            with torch.no_grad():
                proj.to_k_id.weight.copy_(attn.to_k.weight)
                proj.to_v_id.weight.copy_(attn.to_v.weight)
        elif init == "zero_v":
            nn.init.zeros_(proj.to_v_id.weight)

    @property
    def unet(self) -> Any:
        """The UNet this adapter was built for."""
        return self._unet

    @property
    def installed(self) -> bool:
        """Whether the ID branch is in the UNet now."""
        return bool(self._features)

    @property
    def scale(self) -> float:
        """Default ID scale of every layer (a call's `id_scale` overrides it)."""
        return self._scale

    @scale.setter
    def scale(self, value: float) -> None:
        self._scale = float(value)

    def install(self) -> IDAdapter:
        """Attach the ID branch and an attention recorder (no-op when installed). Returns self.

        Raises:
            SamefaceError: the UNet already carries an ID adapter.
        """
        if self.installed:
            return self
        layers = attention_layers(self._unet)
        missing = [n for n in self.layer_names if n not in layers]
        if missing:
            raise SamefaceError(f"the UNet no longer has the layers {missing[:3]}")
        feature = IDAttention(self)
        attach_feature(self._unet, feature)
        self._features.append(feature)
        try:
            self._features.append(attach_feature(self._unet, AttentionRecorder()))
        except BaseException:
            self.remove()
            raise
        if self.freeze_base:
            self._grad_flags = {n: p.requires_grad for n, p in self._unet.named_parameters()}
            self._unet.requires_grad_(False)
        return self

    def remove(self) -> None:
        """Detach the ID branch (and restore the `requires_grad` flags). A no-op when not
        installed.

        Raises:
            SamefaceError: a processor was replaced by someone else after install (nothing is
                changed then, so their processors are not silently dropped).
        """
        if not self.installed:
            return
        for feature in reversed(self._features):
            detach_feature(self._unet, feature)
        if self._grad_flags:
            for n, p in self._unet.named_parameters():
                p.requires_grad_(self._grad_flags.get(n, p.requires_grad))
        self._features, self._grad_flags = [], {}

    def __enter__(self) -> IDAdapter:
        return self.install()

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load adapter weights; always strict (keys and shapes must fit this UNet exactly).

        Raises:
            ArtifactError: missing, unexpected or mis-shaped tensors (a checkpoint made for
                another architecture or id_dim).
        """
        if not strict:
            raise ValueError("IDAdapter loads strictly: a partial adapter is a broken adapter")
        own = self.state_dict()
        missing = sorted(set(own) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(own))
        shapes = [
            f"{k}: {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
            for k in own
            if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
        ]
        if missing or unexpected or shapes:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
            if shapes:
                parts.append(f"{len(shapes)} with other shapes (e.g. {shapes[0]})")
            raise ArtifactError(
                "ID adapter weights do not fit this UNet (made for another base model or "
                "id_dim?): " + "; ".join(parts)
            )
        return super().load_state_dict(state_dict, strict=True, assign=assign)

    def save(self, path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> Path:
        """Write the weights as one safetensors file (atomically). Returns the path.

        Args:
            path: the file to write.
            metadata: extra string metadata to store beside `format` and `id_dim`.
        """
        from ..tensorfile import save_safetensors

        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        meta = {**(metadata or {}), "format": _FORMAT, "id_dim": str(self.id_dim)}
        return save_safetensors(tensors, path, meta)

    def load(self, path: str | os.PathLike[str]) -> IDAdapter:
        """Read weights written by `save` (strictly). Returns self.

        Raises:
            ArtifactError: the file is missing, not an ID adapter, or made for another UNet.
        """
        from ..tensorfile import read_safetensors

        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"{path}: no such ID adapter file")
        state, meta = read_safetensors(path, device=str(next(self.parameters()).device))
        if meta.get("format") != _FORMAT:
            raise ArtifactError(
                f"{path}: not a sameface ID adapter (format {meta.get('format')!r})"
            )
        self.load_state_dict(state)
        return self


def install_id_adapter(
    unet: Any,
    id_dim: int,
    *,
    scale: float = 1.0,
    init: str = "auto",
    dtype: torch.dtype | None = None,
    freeze_base: bool = True,
) -> IDAdapter:
    """Build an `IDAdapter` for `unet` and install it (see `IDAdapter` for the arguments).

    Use `adapter.remove()` or `with install_id_adapter(unet, d) as adapter:` to undo it.
    """
    return IDAdapter(
        unet, id_dim, scale=scale, init=init, dtype=dtype, freeze_base=freeze_base
    ).install()
