"""Loss functions: pure functions of tensors (no modules, no state)."""

from .alignment import align_layout_loss, align_semantic_loss, alignment_loss
from .diffusion import diffusion_target, l_simple, sample_timesteps
from .identity import face_id_loss

__all__ = [
    "align_layout_loss",
    "align_semantic_loss",
    "alignment_loss",
    "diffusion_target",
    "face_id_loss",
    "l_simple",
    "sample_timesteps",
]
