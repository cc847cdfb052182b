"""Loss functions: pure functions of tensors (no modules, no state)."""

from .alignment import align_layout_loss, align_semantic_loss, alignment_loss
from .attention import attention_refocusing_loss
from .diffusion import diffusion_target, l_simple, sample_timesteps
from .embedding import embedding_regularization
from .identity import face_id_loss
from .masked import MASK_LOSSES, feedface_loss, mask_diffusion_loss, regularization_mask_loss

__all__ = [
    "MASK_LOSSES",
    "align_layout_loss",
    "align_semantic_loss",
    "alignment_loss",
    "attention_refocusing_loss",
    "diffusion_target",
    "embedding_regularization",
    "face_id_loss",
    "feedface_loss",
    "l_simple",
    "mask_diffusion_loss",
    "regularization_mask_loss",
    "sample_timesteps",
]
