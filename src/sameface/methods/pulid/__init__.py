"""PuLID: tuning-free ID customisation via contrastive alignment (seed 004_9d021940ababaf46;
Guo et al. 2024)."""

from __future__ import annotations

import importlib
from typing import Any

from ...errors import DependencyMissingError
from ...models.clip_vision import ClipVision, tiny_clip_vision
from ..spec import MethodSpec
from .config import PuLIDConfig
from .model import PuLIDModel
from .personalize import personalize
from .pipeline import PuLIDPipeline


def train(*args: Any, **kwargs: Any) -> Any:
    """Train PuLID's encoder and adapter on a face dataset (`sameface.methods.pulid.train.train`).

    Imported on first call, so the registry and `personalize` / `generate` work without it.
    """
    try:
        module = importlib.import_module(f"{__name__}.train")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.train":
            raise  # train.py exists but something it imports is missing
        raise DependencyMissingError(
            "PuLID training is not available in this installation "
            "(sameface/methods/pulid/train.py is missing)"
        ) from None
    return module.train(*args, **kwargs)


METHOD = MethodSpec(
    name="pulid",
    kind="encoder",
    paper="Guo et al. 2024, PuLID: Pure and Lightning ID Customization via Contrastive Alignment",
    config_cls=PuLIDConfig,
    personalize=personalize,
    pipeline_cls=PuLIDPipeline,
    train=train,
)

__all__ = [
    "METHOD",
    "ClipVision",
    "PuLIDConfig",
    "PuLIDModel",
    "PuLIDPipeline",
    "personalize",
    "tiny_clip_vision",
    "train",
]
