"""Decoupled ID cross-attention on a frozen UNet (IP-Adapter style, as PuLID uses; seed 004).

Every cross-attention layer (attn2) of an SD1.x / SD2.x / SDXL UNet gets a second attention
over ID tokens, added to the text attention before the output projection:

    out = Attn(Q, K_txt, V_txt) + id_scale · Attn(Q, K_id, V_id),
    K_id = to_k_id(id_tokens),  V_id = to_v_id(id_tokens)

`to_k_id` / `to_v_id` are the only new weights; they live in an `IDAdapter`, whose
`state_dict()` is the adapter checkpoint. The UNet's own modules are never replaced: only
the layers' attention processors are swapped, and `IDAdapter.remove()` puts the original
processor objects back.

Per call, the UNet reads `cross_attention_kwargs={"id_tokens": (B, N, id_dim) or None,
"id_scale": float, "attn_record": dict}`; see `IDAttnProcessor`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArtifactError, SamefaceError

__all__ = [
    "ID_KWARGS",
    "INITS",
    "CrossAttnRecord",
    "IDAdapter",
    "IDAttnProcessor",
    "attention_layers",
    "install_id_adapter",
]

ID_KWARGS = ("id_tokens", "id_scale", "attn_record")
"""The `cross_attention_kwargs` keys the ID processors read."""

INITS = ("auto", "copy", "zero_v", "random")
"""How the new K/V projections start; see `IDAdapter`."""

_FORMAT = "sameface.id_adapter"


class CrossAttnRecord(NamedTuple):
    """What PuLID's alignment losses need from one cross-attention layer (seed 004, L_align).

    L_align-layout = ‖Q_tid − Q_t‖₂ and
    L_align-sem = ‖Softmax(K Q_tidᵀ/√d) Q_tid − Softmax(K Q_tᵀ/√d) Q_t‖₂
    need only the layer's query Q (in the path with and without ID) and the text key K.

    Attributes:
        query: Q = to_q(UNet features), per head: (B, heads, L_img, d).
        key: K = to_k(text tokens), per head: (B, heads, L_txt, d); the same in both paths.
    """

    query: torch.Tensor
    key: torch.Tensor


def attention_layers(unet: Any) -> dict[str, Any]:
    """The UNet's diffusers `Attention` modules by module name (e.g. `...attn2`), in order."""
    # Duck-typed so it survives diffusers moving the Attention class between modules.
    return {
        name: mod
        for name, mod in unet.named_modules()
        if hasattr(mod, "set_processor") and hasattr(mod, "processor") and hasattr(mod, "to_q")
    }


def _is_cross(attn: Any) -> bool:
    return bool(getattr(attn, "is_cross_attention", False))


def _split_heads(x: torch.Tensor, batch: int, heads: int, head_dim: int) -> torch.Tensor:
    return x.view(batch, -1, heads, head_dim).transpose(1, 2)


def _merge_heads(x: torch.Tensor, batch: int, heads: int, head_dim: int) -> torch.Tensor:
    return x.transpose(1, 2).reshape(batch, -1, heads * head_dim)


class IDAttnProcessor:
    """Cross-attention processor with an extra ID branch (PuLID / IP-Adapter decoupled attention).

    Mirrors diffusers' `AttnProcessor2_0` (spatial/group norm, `norm_cross`, q/k norms,
    residual connection, `rescale_output_factor`, `F.scaled_dot_product_attention`) and adds
    `id_scale · Attn(Q, to_k_id(id_tokens), to_v_id(id_tokens))` before the output projection.
    The ID branch takes no attention mask and skips `norm_cross` (that norm belongs to the
    base's text conditioning). Not an `nn.Module`, so the projections it uses stay out of the
    UNet's parameters and `state_dict`; their owner is the `IDAdapter`.

    Without ID tokens (or with a Python scale of 0) and without a recorder, the call goes to
    the layer's original processor, so the output is exactly the base model's.

    Args:
        to_k_id: Linear(id_dim → the layer's key width), bias-free.
        to_v_id: Linear(id_dim → the layer's value width), bias-free.
        name: the attention module's name; the key under which `attn_record` stores.
        scale: ID scale used when a call passes no `id_scale`.
        base_processor: the layer's original processor.
    """

    def __init__(
        self,
        to_k_id: nn.Linear,
        to_v_id: nn.Linear,
        *,
        name: str = "",
        scale: float = 1.0,
        base_processor: Any = None,
    ):
        self.to_k_id = to_k_id
        self.to_v_id = to_v_id
        self.name = name
        self.scale = scale
        self.base_processor = base_processor

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        id_tokens: torch.Tensor | None = None,
        id_scale: float | torch.Tensor | None = None,
        attn_record: dict[str, CrossAttnRecord] | None = None,
    ) -> torch.Tensor:
        """Run the layer.

        Args:
            attn: the diffusers `Attention` module.
            hidden_states: UNet features, (B, L, C) or (B, C, H, W).
            encoder_hidden_states: text tokens (B, L_txt, cross_attention_dim).
            attention_mask: optional mask over the text tokens.
            temb: time embedding (only layers with a spatial norm read it).
            id_tokens: (B, N, id_dim) ID tokens, or (1, N, id_dim) for the whole batch; None = off.
            id_scale: weight of the ID branch (float, or a (B,) tensor per sample); None = the
                processor's `scale`.
            attn_record: a dict; when given, `attn_record[name] = CrossAttnRecord(Q, K)`.
        """
        scale = self.scale if id_scale is None else id_scale
        use_id = id_tokens is not None and not (isinstance(scale, (int, float)) and scale == 0)
        if not use_id and attn_record is None and self.base_processor is not None:
            extra = {} if temb is None else {"temb": temb}
            return self.base_processor(
                attn,
                hidden_states,
                encoder_hidden_states=encoder_hidden_states,
                attention_mask=attention_mask,
                **extra,
            )

        # From here on the structure is AttnProcessor2_0's, so without ID the result is the same.
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(
                attention_mask, sequence_length, batch_size
            )
            attention_mask = attention_mask.view(
                batch_size, attn.heads, -1, attention_mask.shape[-1]
            )
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        heads = attn.heads
        head_dim = key.shape[-1] // heads
        query = _split_heads(query, batch_size, heads, head_dim)
        key = _split_heads(key, batch_size, heads, head_dim)
        value = _split_heads(value, batch_size, heads, head_dim)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if attn_record is not None:
            attn_record[self.name] = CrossAttnRecord(query=query, key=key)

        hidden_states = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False
        )
        hidden_states = _merge_heads(hidden_states, batch_size, heads, head_dim).to(query.dtype)
        if use_id:
            id_out = self._id_attention(attn, query, id_tokens, head_dim)
            if isinstance(scale, torch.Tensor) and scale.ndim > 0:
                scale = scale.to(id_out.dtype).view(-1, 1, 1)  # per-sample scale
            hidden_states = hidden_states + scale * id_out

        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)  # dropout
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(
                batch_size, channel, height, width
            )
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    def _id_attention(
        self, attn: Any, query: torch.Tensor, id_tokens: torch.Tensor, head_dim: int
    ) -> torch.Tensor:
        """Attn(Q, K_id, V_id) with heads merged: (B, L_img, heads · d)."""
        batch, heads = query.shape[0], query.shape[1]
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
        id_tokens = id_tokens.to(self.to_k_id.weight.dtype)
        id_key = _split_heads(self.to_k_id(id_tokens).to(query.dtype), batch, heads, head_dim)
        id_value = _split_heads(self.to_v_id(id_tokens).to(query.dtype), batch, heads, head_dim)
        if attn.norm_k is not None:  # qk-norm layers normalise every key they attend to
            id_key = attn.norm_k(id_key)
        out = F.scaled_dot_product_attention(
            query, id_key, id_value, attn_mask=None, dropout_p=0.0, is_causal=False
        )
        return _merge_heads(out, batch, heads, head_dim).to(query.dtype)


class _IgnoreIDKwargs:
    """A layer's own processor, called unchanged, that also accepts (and drops) the ID kwargs.

    diffusers passes `cross_attention_kwargs` to every attention layer and logs a warning per
    layer and call for keys a processor does not take; self-attention layers get this wrapper
    so that the ID kwargs pass silently while their computation stays the original one.
    """

    def __init__(self, processor: Any):
        self.processor = processor

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        id_tokens: Any = None,
        id_scale: Any = None,
        attn_record: Any = None,
    ) -> torch.Tensor:
        extra = {} if temb is None else {"temb": temb}
        return self.processor(
            attn,
            hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            attention_mask=attention_mask,
            **extra,
        )


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
    changes nothing; `install()` swaps the attention processors, `remove()` reinstates the
    original processor objects. It is also a context manager (`with IDAdapter(unet, 768):`
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
    ):
        super().__init__()
        if int(id_dim) != id_dim or id_dim < 1:
            raise ValueError(f"id_dim must be a positive integer, got {id_dim!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        # Plain attribute, not a submodule: the adapter's state_dict must not include the UNet.
        object.__setattr__(self, "_unet", unet)
        self.id_dim = int(id_dim)
        self.freeze_base = freeze_base
        self._scale = float(scale)
        self._originals: dict[str, Any] = {}
        self._installed: dict[str, Any] = {}
        self._grad_flags: dict[str, bool] = {}

        cross = {n: a for n, a in attention_layers(unet).items() if _is_cross(a)}
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
        """Whether the ID processors are in the UNet now."""
        return bool(self._installed)

    @property
    def scale(self) -> float:
        """Default ID scale of every layer (a call's `id_scale` overrides it)."""
        return self._scale

    @scale.setter
    def scale(self, value: float) -> None:
        self._scale = float(value)
        for proc in self._installed.values():
            if isinstance(proc, IDAttnProcessor):
                proc.scale = self._scale

    def install(self) -> IDAdapter:
        """Put the ID processors into the UNet (no-op when installed). Returns self.

        Raises:
            SamefaceError: the UNet already carries an ID adapter.
        """
        if self.installed:
            return self
        layers = attention_layers(self._unet)
        missing = [n for n in self.layer_names if n not in layers]
        if missing:
            raise SamefaceError(f"the UNet no longer has the layers {missing[:3]}")
        if any(
            isinstance(a.processor, (IDAttnProcessor, _IgnoreIDKwargs)) for a in layers.values()
        ):
            raise SamefaceError(
                "this UNet already has an ID adapter installed; remove it first "
                "(`adapter.remove()` or leave its `with` block)"
            )
        for name, attn in layers.items():
            original = attn.processor
            if name in self.layer_names:
                proj = self.layers[_layer_key(name)]
                proc: Any = IDAttnProcessor(
                    proj.to_k_id,
                    proj.to_v_id,
                    name=name,
                    scale=self._scale,
                    base_processor=original,
                )
            else:
                proc = _IgnoreIDKwargs(original)
            self._originals[name] = original
            self._installed[name] = proc
            attn.set_processor(proc)
        if self.freeze_base:
            self._grad_flags = {n: p.requires_grad for n, p in self._unet.named_parameters()}
            self._unet.requires_grad_(False)
        return self

    def remove(self) -> None:
        """Reinstate the UNet's original processor objects (and `requires_grad` flags).

        A no-op when not installed.

        Raises:
            SamefaceError: a processor was replaced by someone else after install (nothing is
                changed then, so their processors are not silently dropped).
        """
        if not self.installed:
            return
        layers = attention_layers(self._unet)
        changed = [
            n
            for n, p in self._installed.items()
            if layers.get(n) is None or layers[n].processor is not p
        ]
        if changed:
            raise SamefaceError(
                f"{len(changed)} attention processor(s) were replaced after the ID adapter was "
                f"installed (e.g. {changed[0]}); restore them before removing the adapter"
            )
        for name, original in self._originals.items():
            layers[name].set_processor(original)
        if self._grad_flags:
            for n, p in self._unet.named_parameters():
                p.requires_grad_(self._grad_flags.get(n, p.requires_grad))
        self._originals, self._installed, self._grad_flags = {}, {}, {}

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
