"""FeedFace's mask losses (seed 002, appendix B.1): where the face conditioning may act.

With m the face mask on the latent grid, ε the target the UNet should predict (the noise for
ε-prediction; `diffusion_target` otherwise), ε_θ the face-conditioned prediction and ε_θ̂ the
frozen base model's prediction for the same input:

    standard:        ‖ε − ε_θ‖²
    mask:            ‖m·(ε − ε_θ)‖²
    regularisation:  ‖m·(ε − ε_θ) + (1 − m)·(ε_θ̂ − ε_θ)‖²

All are means over every element, computed in float32. The regularisation loss equals the
squared error against the blended target m·ε + (1 − m)·ε_θ̂ for any m in [0, 1], so outside
the face the conditioned model is pulled toward what the base model would have drawn.
"""

from __future__ import annotations

from typing import Any

MASK_LOSSES = ("regularization", "mask", "standard")
"""The loss kinds of FeedFace's ablation (appendix B.1, Figure 2)."""


def _check(pred: Any, target: Any, mask: Any) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if (
        mask.dim() != pred.dim()
        or mask.shape[0] != pred.shape[0]
        or mask.shape[2:] != pred.shape[2:]
    ):
        raise ValueError(
            f"mask {tuple(mask.shape)} does not match the prediction {tuple(pred.shape)}: "
            "expected (B, 1 or C, h, w) on the latent grid"
        )


def mask_diffusion_loss(pred: Any, target: Any, mask: Any) -> Any:
    """‖m·(ε − ε_θ)‖² (seed 002, B.1 "mask diffusion loss"): only the face is constrained."""
    _check(pred, target, mask)
    m = mask.float()
    return (m * (target.float() - pred.float())).pow(2).mean()


def regularization_mask_loss(pred: Any, target: Any, frozen_pred: Any, mask: Any) -> Any:
    """‖m·(ε − ε_θ) + (1 − m)·(ε_θ̂ − ε_θ)‖² (seed 002, §2.2 / B.1 "regularization mask loss")."""
    _check(pred, target, mask)
    if frozen_pred.shape != pred.shape:
        raise ValueError(
            f"frozen prediction {tuple(frozen_pred.shape)} and prediction {tuple(pred.shape)} differ"
        )
    m = mask.float()
    p = pred.float()
    return (m * (target.float() - p) + (1 - m) * (frozen_pred.float().detach() - p)).pow(2).mean()


def feedface_loss(
    kind: str, pred: Any, target: Any, mask: Any = None, frozen_pred: Any = None
) -> Any:
    """The loss `kind` ("regularization", "mask" or "standard") of FeedFace's ablation."""
    if kind == "standard":
        return (target.float() - pred.float()).pow(2).mean()
    if mask is None:
        raise ValueError(f"the {kind} loss needs a face mask")
    if kind == "mask":
        return mask_diffusion_loss(pred, target, mask)
    if kind == "regularization":
        if frozen_pred is None:
            raise ValueError("the regularization loss needs the frozen model's prediction")
        return regularization_mask_loss(pred, target, frozen_pred, mask)
    raise ValueError(f"unknown mask loss {kind!r}; choose one of {', '.join(MASK_LOSSES)}")
