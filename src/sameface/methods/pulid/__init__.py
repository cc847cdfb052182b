"""PuLID: tuning-free ID customisation via contrastive alignment (seed 004_9d021940ababaf46;
Guo et al. 2024).

Importing this package is cheap (the registry and the CLI read `METHOD` without torch): the
model, pipeline and training code load on first use. Training: `METHOD.train`, i.e.
`sameface.methods.pulid.train.train`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ...errors import DependencyMissingError
from ..spec import MethodSpec
from .config import PuLIDConfig
from .world import RECIPE


def _train(*args: Any, **kwargs: Any) -> Any:
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
    personalize=f"{__name__}.encode:personalize",
    pipeline_cls=f"{__name__}.pipeline:PuLIDPipeline",
    train=_train,
    world=RECIPE,
    trained_meta="pulid.json",
    generate_options={"id_scale": "inference_id_scale"},
)

_EXPORTS = {
    "ClipVision": "sameface.models.clip_vision",
    "tiny_clip_vision": "sameface.models.clip_vision",
    "PuLIDModel": f"{__name__}.model",
    "PuLIDPipeline": f"{__name__}.pipeline",
}

if TYPE_CHECKING:
    from ...models.clip_vision import ClipVision, tiny_clip_vision
    from .model import PuLIDModel
    from .pipeline import PuLIDPipeline


def personalize(*args: Any, **kwargs: Any) -> Any:
    """Encode an identity with a trained PuLID model (`sameface.methods.pulid.encode`)."""
    return METHOD.personalize(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


__all__ = [
    "METHOD",
    "ClipVision",
    "PuLIDConfig",
    "PuLIDModel",
    "PuLIDPipeline",
    "personalize",
    "tiny_clip_vision",
]
