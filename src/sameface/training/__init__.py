"""Small shared helpers for training loops: checkpoints, optimiser state, RNG state."""

from .checkpoint import CheckpointManager
from .state import (
    generator_from_state,
    optimizer_state_dict_to_tensors,
    tensors_to_optimizer_state_dict,
)

__all__ = [
    "CheckpointManager",
    "generator_from_state",
    "optimizer_state_dict_to_tensors",
    "tensors_to_optimizer_state_dict",
]
