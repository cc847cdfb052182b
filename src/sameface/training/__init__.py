"""Shared training machinery: one resumable loop (`TrainingRun`), checkpoints, optimiser and RNG state."""

from .checkpoint import CheckpointManager
from .ema import Ema
from .run import (
    Phase,
    TrainingRun,
    adamw,
    dataset_fingerprint,
    dataset_run,
    fingerprint,
    loss_summary,
)
from .state import (
    generator_from_state,
    optimizer_state_dict_to_tensors,
    tensors_to_optimizer_state_dict,
)

__all__ = [
    "CheckpointManager",
    "Ema",
    "Phase",
    "TrainingRun",
    "adamw",
    "dataset_fingerprint",
    "dataset_run",
    "fingerprint",
    "generator_from_state",
    "loss_summary",
    "optimizer_state_dict_to_tensors",
    "tensors_to_optimizer_state_dict",
]
