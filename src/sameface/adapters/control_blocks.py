"""Control blocks beside a frozen UNet's transformer blocks (FeedFace's face-controlnet, seed 002 §2.1.2).

Every `BasicTransformerBlock` (the *origin block*) of an SD1.x / SD2.x / SDXL UNet gets a
trainable *control block* that takes the same hidden states h:

    control(h, c) = W_zero · Block_ctl(h, c)
    Block_ctl:  x = h + SelfAttn(LN(h));  x = x + CrossAttn(LN(x), c);  x = x + MLP(LN(x))
    output      = origin(h, text) + s · control(h, c)

with c the condition tokens (FeedFace: projected CLIP features of the reference faces), s a
strength (1 in training) and W_zero a linear layer that starts at zero, so an untouched
adapter gives the base model's output exactly. The blocks attach through forward hooks: the
UNet's modules, parameter names and attention processors (diffusers' SDPA kernels) stay as
they are, and `remove()` takes the hooks off.

Per call the UNet reads `cross_attention_kwargs={"control_tokens": (B, N, D) or None,
"control_scale": float}`; the hooks take these keys out before the origin block (and its
attention processors) sees them. Without "control_tokens" the UNet is the base model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import SamefaceError

TOKENS_KEY = "control_tokens"
SCALE_KEY = "control_scale"
CONTROL_KWARGS = (TOKENS_KEY, SCALE_KEY)
"""The `cross_attention_kwargs` keys the control blocks read (and remove)."""

INITS = ("copy", "random")
"""How a control block's attention and MLP start: copies of its origin block's (ControlNet's
practice) or fresh random weights. The output layer starts at zero either way."""

# Positional index of `cross_attention_kwargs` in BasicTransformerBlock.forward (gradient
# checkpointing in diffusers calls the blocks with positional arguments only).
_KWARGS_POS = 5


def transformer_blocks(unet: Any) -> dict[str, nn.Module]:
    """The UNet's transformer blocks (diffusers `BasicTransformerBlock`) by module name, in order."""
    from diffusers.models.attention import BasicTransformerBlock

    return {n: m for n, m in unet.named_modules() if isinstance(m, BasicTransformerBlock)}


class ControlBlock(nn.Module):
    """Self-attention, cross-attention over the condition, MLP, and a zero-initialised output.

    Args:
        dim: the origin block's width.
        heads: attention heads (the origin block's).
        cond_dim: width of the condition tokens.
        origin: the origin block to copy attention / MLP weights from (init "copy"), or None.
    """

    def __init__(self, dim: int, heads: int, cond_dim: int, origin: nn.Module | None = None):
        super().__init__()
        from diffusers.models.attention import Attention, FeedForward

        head_dim = dim // heads
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(query_dim=dim, heads=heads, dim_head=head_dim, bias=False)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(
            query_dim=dim, cross_attention_dim=cond_dim, heads=heads, dim_head=head_dim, bias=False
        )
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.out = nn.Linear(dim, dim)
        if origin is not None:
            self._copy_from(origin, cond_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _copy_from(self, origin: nn.Module, cond_dim: int) -> None:
        """Start from the origin block's weights where the shapes agree (ControlNet's init)."""
        for name in ("norm1", "attn1", "norm2", "norm3", "ff"):
            src, dst = getattr(origin, name, None), getattr(self, name)
            if src is not None and _same_shapes(src, dst):
                dst.load_state_dict(src.state_dict())
        src = getattr(origin, "attn2", None)
        if src is not None:
            own = self.attn2.state_dict()
            own.update(
                {k: v for k, v in src.state_dict().items() if k in own and own[k].shape == v.shape}
            )
            self.attn2.load_state_dict(own)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = h + self.attn1(self.norm1(h))
        x = x + self.attn2(self.norm2(x), encoder_hidden_states=cond)
        x = x + self.ff(self.norm3(x))
        return self.out(x)


def _same_shapes(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)


class ControlBlocks(nn.Module):
    """The control blocks of one UNet; `state_dict()` is the adapter checkpoint.

    Args:
        unet: the (frozen) UNet whose transformer blocks get a control block each.
        cond_dim: width of the condition tokens; default the UNet's cross-attention width.
        init: "copy" (from the origin blocks) or "random"; the output layers start at zero.
    """

    def __init__(self, unet: Any, cond_dim: int | None = None, init: str = "copy"):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        origins = transformer_blocks(unet)
        if not origins:
            raise SamefaceError("this UNet has no transformer blocks to attach control blocks to")
        cond_dim = cond_dim or _cross_attention_dim(unet)
        self.cond_dim = cond_dim
        self.names = list(origins)
        self.blocks = nn.ModuleDict()
        for name, block in origins.items():
            dim, heads = block.norm1.normalized_shape[0], block.attn1.heads
            src = block if init == "copy" else None
            self.blocks[_key(name)] = ControlBlock(dim, heads, cond_dim, origin=src)
        param = next(unet.parameters())
        self.to(param.device, param.dtype)
        # Plain attributes, not submodules: the UNet is not part of this adapter's state.
        object.__setattr__(self, "_unet", unet)
        object.__setattr__(self, "_handles", [])

    @property
    def installed(self) -> bool:
        return bool(self._handles)

    def install(self) -> ControlBlocks:
        """Attach the hooks (once); the UNet's own modules are not touched."""
        if self._handles:
            return self
        origins = transformer_blocks(self._unet)
        if list(origins) != self.names:
            raise SamefaceError("these control blocks were made for a UNet with other blocks")
        for name, block in origins.items():
            if any(isinstance(h, _Hook) for h in block._forward_hooks.values()):
                raise SamefaceError(
                    f"{name} already has control blocks attached; remove them before attaching others"
                )
            hook = _Hook(self.blocks[_key(name)])
            self._handles.append(block.register_forward_pre_hook(hook.before, with_kwargs=True))
            self._handles.append(block.register_forward_hook(hook, with_kwargs=True))
        return self

    def remove(self) -> None:
        """Take every hook off: the UNet computes exactly what it did before `install`."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> ControlBlocks:
        return self.install()

    def __exit__(self, *exc: Any) -> None:
        self.remove()


class _Hook:
    """The pair of hooks on one origin block; carries (h, tokens, scale) from before to after.

    A stack, not a slot: gradient checkpointing may run a block again inside its backward.
    """

    def __init__(self, control: ControlBlock):
        self.control = control
        self.pending: list[tuple[torch.Tensor, torch.Tensor | None, float]] = []

    def before(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        h = args[0] if args else kwargs["hidden_states"]
        positional = len(args) > _KWARGS_POS
        cak = args[_KWARGS_POS] if positional else kwargs.get("cross_attention_kwargs")
        tokens, scale = None, 1.0
        if cak and any(k in cak for k in CONTROL_KWARGS):
            tokens, scale = cak.get(TOKENS_KEY), float(cak.get(SCALE_KEY, 1.0))
            rest = {k: v for k, v in cak.items() if k not in CONTROL_KWARGS} or None
            if positional:
                args = (*args[:_KWARGS_POS], rest, *args[_KWARGS_POS + 1 :])
            else:
                kwargs = kwargs | {"cross_attention_kwargs": rest}
        self.pending.append((h, tokens, scale))
        return args, kwargs

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        h, tokens, scale = self.pending.pop()
        if tokens is None or scale == 0.0:
            return None  # the origin block's output as it is
        if tokens.shape[0] != h.shape[0]:
            raise SamefaceError(
                f"control tokens have batch {tokens.shape[0]} but the UNet batch is {h.shape[0]}"
            )
        return output + scale * self.control(h, tokens.to(h.dtype))


def _key(name: str) -> str:
    return name.replace(".", "__")


def _cross_attention_dim(unet: Any) -> int:
    dim = unet.config.cross_attention_dim
    return int(dim[0] if isinstance(dim, (list, tuple)) else dim)


__all__ = [
    "CONTROL_KWARGS",
    "INITS",
    "ControlBlock",
    "ControlBlocks",
    "transformer_blocks",
]
