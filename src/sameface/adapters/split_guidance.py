"""Separate text and identity guidance scales inside a diffusers pipeline's own CFG loop.

Three predictions per step: ε_u (negative/empty prompt, no identity), ε_t (prompt, no
identity) and ε_f (prompt + identity). Two-scale guidance (`losses.diffusion.cfg_combine_two`):

    ε = ε_u + w_t·(ε_t − ε_u) + w_f·(ε_f − ε_t)

w_f = w_t is ordinary CFG between (empty, no identity) and (prompt, identity); w_f = 0 is
text-only CFG with the identity's "off" condition. A diffusers pipeline computes
ε_u + w·(ε_c − ε_u) from a batch [uncond, cond]; with w = w_t, returning

    ε_c' = ε_t + (w_f / w_t)·(ε_f − ε_t)

for the cond half makes the pipeline's own update the two-scale one exactly. `SplitGuidance`
does that with a forward hook on the UNet: after the pipeline's call it runs the cond half
once more with the identity off (`identity_off(cross_attention_kwargs)`), so a step costs
1.5 UNet batches, and the pipeline (scheduler, callbacks, SDXL micro-conditioning) is
diffusers' own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class SplitGuidance:
    """While active, the UNet's cond half becomes ε_t + r·(ε_f − ε_t) with r = w_f / w_t.

    Args:
        unet: the UNet the pipeline calls (with `[uncond, cond]` batches).
        ratio: r = face (identity) guidance scale / text guidance scale.
        identity_off: maps the cond half's `cross_attention_kwargs` to those of the same
            prompt without the identity (e.g. zero face tokens).
    """

    def __init__(self, unet: Any, ratio: float, identity_off: Callable[[dict], dict]):
        self.unet, self.ratio, self.identity_off = unet, float(ratio), identity_off
        self._handle = None
        self._inside = False

    def __enter__(self) -> SplitGuidance:
        self._handle = self.unet.register_forward_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
        if self._inside:
            return None  # our own extra call
        tuple_out = isinstance(output, tuple)
        eps = output[0] if tuple_out else output.sample
        if eps.shape[0] % 2:
            raise ValueError("split guidance needs the pipeline's [uncond, cond] CFG batch")
        n = eps.shape[0] // 2
        call_args = tuple(_cond_half(a, n) for a in args)
        call_kwargs = {k: _cond_half(v, n) for k, v in kwargs.items()}
        call_kwargs["cross_attention_kwargs"] = self.identity_off(
            call_kwargs.get("cross_attention_kwargs") or {}
        )
        call_kwargs["return_dict"] = False
        self._inside = True
        try:
            with torch.no_grad():
                text_only = module(*call_args, **call_kwargs)[0]
        finally:
            self._inside = False
        full = eps[n:]
        cond = text_only + self.ratio * (full - text_only)
        eps = torch.cat([eps[:n], cond.to(eps.dtype)])
        if tuple_out:
            return (eps, *output[1:])
        output.sample = eps
        return output


def _cond_half(value: Any, n: int) -> Any:
    """The cond half of a CFG-batched argument (tensors of batch 2n, dicts of them)."""
    if isinstance(value, torch.Tensor):
        return value[n:] if value.ndim and value.shape[0] == 2 * n else value
    if isinstance(value, dict):
        return {k: _cond_half(v, n) for k, v in value.items()}
    return value


__all__ = ["SplitGuidance"]
