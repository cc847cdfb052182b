"""A LoRA on a frozen UNet's attention projections (MagiCapture phase 2), through peft, in the
file layout diffusers' `load_lora_weights` reads.

    lora = UNetLora(unet, rank=4, targets=CROSS_ATTENTION)   # injected; base weights untouched
    lora.parameters()                                         # the trainable A/B matrices
    lora.state_dict_diffusers()                               # {"unet.<layer>.lora_A.weight": ...}
    lora.remove()                                             # the UNet's own modules are back

W' = W + (α/r)·B·A (Hu et al. 2021) with α = r, so the scale is 1 (as MagiCapture's code) and
diffusers, which takes α = r when a file records none, computes the same layer. `remove()`
puts every wrapped `nn.Linear` back in its place and the `requires_grad` flags peft changed
back as they were, so the base model is left exactly as it was given (also after a failure
half-way through the injection).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import SamefaceError

ADAPTER = "sameface"
"""peft's adapter name inside the UNet (diffusers' files carry no adapter name)."""
PREFIX = "unet."
"""Key prefix of the UNet's LoRA in diffusers' `pytorch_lora_weights.safetensors`."""
LORA_FILE = "pytorch_lora_weights.safetensors"
"""The file name diffusers' `load_lora_weights(folder)` looks for."""

CROSS_ATTENTION = ("attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0")
"""The cross-attention projections (MagiCapture's paper: "the projection layers in the
cross-attention module")."""
ALL_ATTENTION = (*CROSS_ATTENTION, "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0")
"""Self- and cross-attention projections (MagiCapture's public code wraps both)."""
TARGET_SETS = {"cross-attention": CROSS_ATTENTION, "attention": ALL_ATTENTION}


def target_regex(targets: Sequence[str]) -> str:
    """A peft `target_modules` regex matching module names that end in one of `targets`."""
    return r".*\.(" + "|".join(re.escape(t) for t in targets) + r")$"


class UNetLora:
    """A rank-`rank` LoRA injected into the UNet's `targets` projections (B = 0 at start: the
    UNet computes exactly what it did).

    Args:
        unet: the (frozen) UNet; its modules are wrapped until `remove()`.
        rank: r.
        targets: module-name suffixes (`CROSS_ATTENTION`, `ALL_ATTENTION`).
        dtype: the LoRA weights' dtype (float32 for training).
        generator: draw A (uniform ±1/√fan_in, peft's default) from this generator, so a
            resumed run makes the same LoRA; default torch's global RNG (peft's own init).
    """

    def __init__(
        self,
        unet: Any,
        rank: int,
        targets: Sequence[str] = CROSS_ATTENTION,
        *,
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ):
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError:  # a dependency; a broken install gets a message, not a traceback
            raise SamefaceError(
                "the LoRA needs the peft package: pip install 'peft>=0.17'"
            ) from None
        if any(_lora_layers(unet)):
            raise SamefaceError(
                "this UNet already carries a LoRA (another pipeline with a LoRA, e.g. a "
                "MagiCapture identity or IP-Adapter-FaceID, is attached): close it first"
            )
        self.unet, self.rank, self.targets = unet, int(rank), tuple(targets)
        self.layers: dict[str, Any] = {}
        pattern = re.compile(target_regex(self.targets))
        if not any(pattern.match(n) for n, _ in unet.named_modules()):
            raise SamefaceError(f"no UNet module matches the LoRA targets {list(self.targets)}")
        self._flags = [(p, p.requires_grad) for p in unet.parameters()]
        config = LoraConfig(
            r=self.rank,
            lora_alpha=self.rank,
            target_modules=target_regex(self.targets),
            init_lora_weights=True,
            lora_dropout=0.0,
        )
        try:
            inject_adapter_in_model(config, unet, adapter_name=ADAPTER)
            self.layers = dict(_lora_layers(unet))
            device = next(unet.parameters()).device
            for p in self.parameters():
                p.data = p.data.to(device, dtype)
                p.requires_grad_(True)
            if generator is not None:
                for layer in self.layers.values():
                    a = layer.lora_A[ADAPTER].weight
                    bound = 1 / a.shape[1] ** 0.5
                    values = torch.rand(a.shape, generator=generator) * 2 - 1
                    with torch.no_grad():
                        a.copy_(values * bound)
        except BaseException:
            self.remove()
            raise

    def parameters(self) -> Iterator[nn.Parameter]:
        for layer in self.layers.values():
            yield layer.lora_A[ADAPTER].weight
            yield layer.lora_B[ADAPTER].weight

    def set_scale(self, scale: float) -> None:
        """Scale ΔW = B·A by `scale` (1 = as trained; peft's per-adapter scaling is α/r = 1)."""
        for layer in self.layers.values():
            layer.scaling[ADAPTER] = float(scale)

    def module(self) -> nn.Module:
        """The A/B matrices as one module (for checkpoints: `state_dict` / `load_state_dict`)."""
        holder = nn.ModuleDict()
        for name, layer in self.layers.items():
            key = name.replace(".", "/")
            holder[key + "/A"] = layer.lora_A[ADAPTER]
            holder[key + "/B"] = layer.lora_B[ADAPTER]
        return holder

    def state_dict_diffusers(self) -> dict[str, torch.Tensor]:
        """{"unet.<module>.lora_A.weight" / "...lora_B.weight": tensor}: diffusers' layout."""
        out = {}
        for name, layer in self.layers.items():
            out[f"{PREFIX}{name}.lora_A.weight"] = layer.lora_A[ADAPTER].weight.detach()
            out[f"{PREFIX}{name}.lora_B.weight"] = layer.lora_B[ADAPTER].weight.detach()
        return out

    def load_diffusers(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Set the A/B matrices from `state_dict_diffusers`'s layout (shapes checked)."""
        mine = self.state_dict_diffusers()
        missing = sorted(set(mine) - set(tensors))
        extra = sorted(set(tensors) - set(mine))
        if missing or extra:
            raise SamefaceError(
                "the LoRA file does not fit this UNet: "
                + (f"{len(missing)} layers missing (e.g. {missing[0]})" if missing else "")
                + ("; " if missing and extra else "")
                + (f"{len(extra)} unknown (e.g. {extra[0]})" if extra else "")
                + " - trained on another base model or with other targets?"
            )
        for name, layer in self.layers.items():
            for part, mod in (("A", layer.lora_A[ADAPTER]), ("B", layer.lora_B[ADAPTER])):
                value = tensors[f"{PREFIX}{name}.lora_{part}.weight"]
                if value.shape != mod.weight.shape:
                    raise SamefaceError(
                        f"LoRA {name}.lora_{part}: shape {tuple(value.shape)}, this UNet needs "
                        f"{tuple(mod.weight.shape)} (another rank or base model?)"
                    )
                with torch.no_grad():
                    mod.weight.copy_(value.to(mod.weight))

    def remove(self) -> None:
        """Put the wrapped layers back and restore every `requires_grad` flag (idempotent)."""
        for name, layer in list(_lora_layers(self.unet)):
            parent_name, _, child = name.rpartition(".")
            parent = self.unet.get_submodule(parent_name) if parent_name else self.unet
            setattr(parent, child, layer.get_base_layer())
        if hasattr(self.unet, "peft_config"):
            self.unet.peft_config.pop(ADAPTER, None)
            if not self.unet.peft_config:
                del self.unet.peft_config
        for p, flag in getattr(self, "_flags", []):
            p.requires_grad_(flag)
        self._flags = []  # once: a second remove() must not undo later changes
        self.layers = {}

    def __enter__(self) -> UNetLora:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def _lora_layers(unet: Any) -> Iterator[tuple[str, Any]]:
    from peft.tuners.lora import LoraLayer

    for name, module in unet.named_modules():
        if isinstance(module, LoraLayer):
            yield name, module
