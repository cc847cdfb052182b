"""How the ID attention joins the text attention: PuLID v1.1's options, as pure functions.

With H the text attention output and I the ID attention output of a cross-attention layer
(both (B, L_img, C), heads merged) and s the ID scale:

    plain      H + s · I                                       (PuLID's paper)
    ortho v1   H + s · (I − P),          P = (Σ_L H⊙I / Σ_L H⊙H) ⊙ H
    ortho v2   H + s · (I − (1 − a) · P), a = the mean over heads of the softmax mass the
                                              query puts on the first 5 ID tokens

P is I's projection onto H along the image-token axis, per sample and channel: "orthogonal"
adds only what the text branch does not already say. `num_zero` appends zero key/value
tokens to the ID branch, a fixed softmax sink that shrinks I. These are the options of the
released PuLID v1.1 (`num_zero` 20, `ortho` v2 in its demo); the formulas follow its
attention processor (docs/pulid.md).
"""

from __future__ import annotations

import torch

ORTHO_MODES = ("off", "v1", "v2")
V2_TOKENS = 5
"""ortho v2 reads the attention mass on the first 5 ID tokens (the released code's constant)."""


def pad_zero_tokens(key: torch.Tensor, value: torch.Tensor, num_zero: int) -> tuple:
    """`num_zero` zero tokens appended to (B, heads, T, d) keys and values."""
    if num_zero <= 0:
        return key, value
    zeros = key.new_zeros(*key.shape[:2], num_zero, key.shape[-1])
    return torch.cat([key, zeros], dim=2), torch.cat([value, zeros.to(value.dtype)], dim=2)


def projection_on(hidden: torch.Tensor, id_out: torch.Tensor) -> torch.Tensor:
    """P = (Σ_L H⊙I / Σ_L H⊙H) ⊙ H: I projected onto H along the token axis (float32)."""
    h, i = hidden.float(), id_out.float()
    return (h * i).sum(dim=-2, keepdim=True) / (h * h).sum(dim=-2, keepdim=True) * h


def id_mass(query: torch.Tensor, id_key: torch.Tensor, tokens: int = V2_TOKENS) -> torch.Tensor:
    """a: softmax(Q·K_idᵀ) (unscaled, as released) summed over the first `tokens` ID tokens,
    averaged over heads: (B, L_img, 1)."""
    probs = (query @ id_key.transpose(-1, -2)).softmax(dim=-1)
    return probs.mean(dim=1)[:, :, :tokens].sum(dim=-1, keepdim=True)


def join(
    hidden: torch.Tensor,
    id_out: torch.Tensor,
    scale: torch.Tensor | float,
    mode: str = "off",
    mass: torch.Tensor | None = None,
) -> torch.Tensor:
    """What the ID branch adds to H under `mode` (see the module doc); same dtype as H.

    Args:
        hidden: H, the text attention output (B, L, C).
        id_out: I, the ID attention output (B, L, C), unscaled.
        scale: s, a number or a per-sample (B, 1, 1) tensor.
        mode: "off", "v1" or "v2".
        mass: a from `id_mass` (needed by "v2").
    """
    if mode == "off":
        return scale * id_out
    if mode not in ORTHO_MODES:
        raise ValueError(f"ortho mode must be one of {', '.join(ORTHO_MODES)}, got {mode!r}")
    proj = projection_on(hidden, id_out)
    if mode == "v1":
        add = id_out.float() - proj
    else:
        if mass is None:
            raise ValueError("ortho v2 needs the ID attention mass")
        add = id_out.float() - (1.0 - mass.float()) * proj
    return (scale * add).to(hidden.dtype)
