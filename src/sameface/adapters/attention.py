"""Composable attention features on a frozen UNet: one sameface processor per attention layer,
any number of features beside each other.

A *feature* is a small object that adds to some attention layers: an extra attention branch
added before the output projection (PuLID's ID branch, `IDAttention`), a recorder of Q/K and
of the attention maps of chosen text tokens (PuLID's alignment loss, MagiCapture's attention
refocusing: `AttentionRecorder`), later regional masks for several people. Each declares the
`cross_attention_kwargs` keys it reads (`keys`), which layers it applies to, and when a call
makes it active.

`attach_feature(unet, f)` puts a `FeatureAttnProcessor` on every attention layer the first
time (the layer's own processor kept inside) and adds `f`; `detach_feature(unet, f)` takes
it off, and with the last feature the original processor objects come back. The UNet's
modules and weights are never touched. When no feature of a layer is active in a call, the
layer's own processor runs (diffusers' SDPA kernels): the output is the base model's, bit for
bit. A processor's signature names the keys its UNet's features declare; diffusers drops any
other key with a warning (its own rule for processors), so a misspelt key is visible.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from ..errors import SamefaceError

__all__ = [
    "AttentionFeature",
    "AttentionMaps",
    "AttentionRecorder",
    "CrossAttnRecord",
    "FeatureAttnProcessor",
    "IDAttnProcessor",
    "attach_feature",
    "attached_features",
    "attention_layers",
    "detach_feature",
    "is_cross_attention",
]


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


def is_cross_attention(attn: Any) -> bool:
    return bool(getattr(attn, "is_cross_attention", False))


def _split_heads(x: torch.Tensor, batch: int, heads: int, head_dim: int) -> torch.Tensor:
    return x.view(batch, -1, heads, head_dim).transpose(1, 2)


def _merge_heads(x: torch.Tensor, batch: int, heads: int, head_dim: int) -> torch.Tensor:
    return x.transpose(1, 2).reshape(batch, -1, heads * head_dim)


class AttentionFeature:
    """Base class of attention features; subclasses override what they need.

    Attributes:
        keys: the `cross_attention_kwargs` keys this feature reads (no two features attached to
            one UNet may declare the same key, unless they are the same shareable kind).
        description: how messages name it ("an ID adapter").
        shareable: attaching a second feature of this class to the same UNet shares the first
            (counted) instead of being refused.
    """

    keys: tuple[str, ...] = ()
    description: str = "an attention feature"
    shareable: bool = False
    _host: Any = None  # set by `attach_feature`

    def applies_to(self, name: str, attn: Any) -> bool:
        """Whether this feature works on layer `name` (default: the cross-attention layers)."""
        return is_cross_attention(attn)

    def active(self, kwargs: dict) -> bool:
        """Whether this call (its `cross_attention_kwargs`) needs the feature."""
        return any(kwargs.get(k) is not None for k in self.keys)

    def wants_probs(self, kwargs: dict) -> bool:
        """Whether `on_probs` should be called (the maps cost an explicit softmax)."""
        return False

    def on_qk(
        self, name: str, attn: Any, query: torch.Tensor, key: torch.Tensor, kwargs: dict
    ) -> None:
        """Sees Q (B, heads, L_img, d) and K (B, heads, L_txt, d) after any q/k norms."""

    def on_probs(self, name: str, attn: Any, probs: torch.Tensor, kwargs: dict) -> None:
        """Sees the attention probabilities (B, heads, L_img, L_txt), float32."""

    def extra(
        self, name: str, attn: Any, query: torch.Tensor, kwargs: dict, text: torch.Tensor
    ) -> torch.Tensor | None:
        """An output (B, L_img, heads · d) added to the attention before the output projection
        (`text`: the layer's own attention output, heads merged, for features that relate to it)."""
        return None


def _base_call(attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
    """The arguments every attention processor takes (for `_LayerProcessor`'s signature)."""


_BASE_SIGNATURE = inspect.signature(_base_call)


class _LayerProcessor:
    """What every layer of a UNet with features runs: takes the declared keys (so diffusers
    passes them without a warning) and calls the layer's own `processor` (the processor of
    layers no feature applies to)."""

    def __init__(self, processor: Any, name: str, host: _Host):
        self.processor = processor
        self.name = name
        self.host = host

    def _original(self, attn, hidden_states, encoder_hidden_states, attention_mask, temb):
        extra = {} if temb is None else {"temb": temb}
        return self.processor(
            attn,
            hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            attention_mask=attention_mask,
            **extra,
        )

    @property
    def __call__(self) -> Any:
        """The processor call, its signature naming the keys the attached features declare:
        diffusers reads a processor's keyword arguments from `inspect.signature` and drops
        (with a warning per layer and call) every key not named there."""
        run = self._run

        def call(
            attn,
            hidden_states,
            encoder_hidden_states=None,
            attention_mask=None,
            temb=None,
            **kwargs,
        ):
            return run(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)

        kw = inspect.Parameter.KEYWORD_ONLY
        call.__signature__ = _BASE_SIGNATURE.replace(
            parameters=[
                *_BASE_SIGNATURE.parameters.values(),
                *(inspect.Parameter(k, kw, default=None) for k in sorted(self.host.keys())),
            ]
        )
        return call

    def _run(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        return self._original(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class FeatureAttnProcessor(_LayerProcessor):
    """The processor of an attention layer that features apply to.

    Mirrors diffusers' `AttnProcessor2_0` (spatial/group norm, `norm_cross`, q/k norms,
    residual connection, `rescale_output_factor`, `F.scaled_dot_product_attention`) and calls
    the active features' hooks; with none active it calls the layer's own `processor`.
    Not an `nn.Module`, so feature weights stay out of the UNet's parameters and `state_dict`.

    Args:
        processor: the layer's original processor.
        name: the attention module's name (the key recorders store under).
        host: the `_Host` holding the UNet's features.
    """

    def _run(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        active = [f for f in self.host.layer_features(self.name) if f.active(kwargs)]
        if not active:
            return self._original(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

        # From here on the structure is AttnProcessor2_0's, so features adding nothing leave
        # the result the same.
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
        for f in active:
            f.on_qk(self.name, attn, query, key, kwargs)
        if any(f.wants_probs(kwargs) for f in active):
            # The maps for the recorders; the output below still comes from the SDPA kernel.
            logits = query.float() @ key.float().transpose(-1, -2) * attn.scale
            if attention_mask is not None:
                logits = logits + attention_mask.float()
            probs = logits.softmax(dim=-1)
            for f in active:
                if f.wants_probs(kwargs):
                    f.on_probs(self.name, attn, probs, kwargs)

        hidden_states = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False
        )
        hidden_states = _merge_heads(hidden_states, batch_size, heads, head_dim).to(query.dtype)
        text = hidden_states
        for f in active:
            add = f.extra(self.name, attn, query, kwargs, text)
            if add is not None:
                hidden_states = hidden_states + add

        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)  # dropout
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(
                batch_size, channel, height, width
            )
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


IDAttnProcessor = FeatureAttnProcessor
"""The name PuLID's adapter processors had before features composed; the same class."""


class _Host:
    """The features attached to one UNet, and the processors that run them.

    Found through the UNet's live processors (no attribute is stamped on the UNet).
    """

    def __init__(self, unet: Any):
        self.unet = unet
        self.features: list[AttentionFeature] = []
        self.counts: dict[int, int] = {}  # id(shareable feature) -> holders
        self.originals: dict[str, Any] = {}
        self.installed: dict[str, _LayerProcessor] = {}
        self._layers: dict[str, Any] = {}

    @staticmethod
    def find(unet: Any) -> _Host | None:
        for attn in attention_layers(unet).values():
            if isinstance(attn.processor, _LayerProcessor):
                return attn.processor.host
        return None

    def keys(self) -> set[str]:
        return {k for f in self.features for k in f.keys}

    def layer_features(self, name: str) -> list[AttentionFeature]:
        attn = self._layers[name]
        return [f for f in self.features if f.applies_to(name, attn)]

    def refresh(self) -> None:
        """Give each layer the processor its features need (the original inside either)."""
        if not self._layers:
            self._layers = attention_layers(self.unet)
        for name, attn in self._layers.items():
            kind = FeatureAttnProcessor if self.layer_features(name) else _LayerProcessor
            current = self.installed.get(name)
            if type(current) is kind:
                continue
            original = self.originals.setdefault(name, attn.processor)
            proc = kind(original, name, self)
            self.installed[name] = proc
            attn.set_processor(proc)

    def check_in_place(self) -> None:
        layers = attention_layers(self.unet)
        changed = [
            n
            for n, p in self.installed.items()
            if layers.get(n) is None or layers[n].processor is not p
        ]
        if changed:
            raise SamefaceError(
                f"{len(changed)} attention processor(s) were replaced after the attention "
                f"features were attached (e.g. {changed[0]}); restore them before removing "
                "the features"
            )

    def uninstall(self) -> None:
        layers = attention_layers(self.unet)
        for name, original in self.originals.items():
            layers[name].set_processor(original)
        self.originals, self.installed = {}, {}


def attach_feature(unet: Any, feature: AttentionFeature) -> AttentionFeature:
    """Attach `feature` to `unet` beside the features already there. Returns the feature
    attached: `feature`, or for a shareable kind the one already attached (shared).

    Raises:
        SamefaceError: a feature already attached declares one of the same keys.
    """
    host = _Host.find(unet)
    if host is not None:
        for other in host.features:
            if other.shareable and type(other) is type(feature):
                host.counts[id(other)] += 1
                feature._host = host  # a holder of the shared one detaches through it
                return other
            clash = set(other.keys) & set(feature.keys)
            if clash:
                raise SamefaceError(
                    f"this UNet already has {other.description} installed (it reads "
                    f"{', '.join(sorted(clash))}); remove it first (`.remove()` or leave its "
                    "`with` block)"
                )
    else:
        host = _Host(unet)
    if host.installed:
        host.check_in_place()
    host.features.append(feature)
    host.counts[id(feature)] = 1
    feature._host = host
    host.refresh()
    return feature


def detach_feature(unet: Any, feature: AttentionFeature) -> None:
    """Detach `feature`; with the UNet's last feature the original processors come back.

    Raises:
        SamefaceError: processors were replaced by someone else since (nothing is changed).
    """
    host = getattr(feature, "_host", None)
    if host is None or host.unet is not unet:
        return
    if not host.features or not (any(f is feature for f in host.features) or feature.shareable):
        return
    host.check_in_place()
    if feature.shareable:  # the holder may have been handed the shared instance
        feature = next((f for f in host.features if type(f) is type(feature)), feature)
    if id(feature) not in host.counts:
        return  # detached already
    host.counts[id(feature)] -= 1
    if host.counts[id(feature)] > 0:
        return
    del host.counts[id(feature)]
    host.features = [f for f in host.features if f is not feature]
    if host.features:
        host.refresh()
    else:
        host.uninstall()


def attached_features(unet: Any) -> list[AttentionFeature]:
    """The features attached to `unet` now, in attachment order."""
    host = _Host.find(unet)
    return list(host.features) if host is not None else []


class AttentionMaps:
    """A request for the cross-attention maps of chosen text tokens (MagiCapture's refocusing).

    Pass it as `cross_attention_kwargs={"attn_maps": request}`; each cross-attention layer
    then stores `maps[layer] = (B, n, L_img)`: for each sample and each of its `n` token
    positions, the attention probability of every image position on that token, averaged over
    heads (rows of the softmax over text tokens, so they sum to 1 over all tokens).

    Args:
        positions: (B, n) long tensor of text-token indices per sample.
    """

    def __init__(self, positions: torch.Tensor):
        if positions.ndim != 2:
            raise ValueError(f"positions must be (batch, n), got {tuple(positions.shape)}")
        self.positions = positions.long()
        self.maps: dict[str, torch.Tensor] = {}


class AttentionRecorder(AttentionFeature):
    """Records Q/K (`attn_record`: a dict -> `CrossAttnRecord` per layer, PuLID's alignment
    loss) and token attention maps (`attn_maps`: an `AttentionMaps`) of the cross-attention
    layers. Shared by everyone who attaches one."""

    keys = ("attn_record", "attn_maps")
    description = "an attention recorder"
    shareable = True

    def wants_probs(self, kwargs: dict) -> bool:
        return kwargs.get("attn_maps") is not None

    def on_qk(
        self, name: str, attn: Any, query: torch.Tensor, key: torch.Tensor, kwargs: dict
    ) -> None:
        record = kwargs.get("attn_record")
        if record is not None:
            record[name] = CrossAttnRecord(query=query, key=key)

    def on_probs(self, name: str, attn: Any, probs: torch.Tensor, kwargs: dict) -> None:
        request: AttentionMaps = kwargs["attn_maps"]
        pos = request.positions.to(probs.device)
        if pos.shape[0] != probs.shape[0]:
            raise ValueError(
                f"attention-map positions have batch {pos.shape[0]}, the UNet batch is {probs.shape[0]}"
            )
        mean = probs.mean(dim=1)  # (B, L_img, L_txt)
        idx = pos[:, None, :].expand(-1, mean.shape[1], -1)
        request.maps[name] = mean.gather(-1, idx).transpose(1, 2)  # (B, n, L_img)
