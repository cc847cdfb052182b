"""PuLID: tuning-free ID customisation via contrastive alignment (seed 004_9d021940ababaf46;
Guo et al. 2024).

Importing this package is cheap (the CLI lists world recipes without torch): every name,
`METHOD` included, loads on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ...errors import DependencyMissingError

_EXPORTS = {
    "ClipVision": "sameface.models.clip_vision",
    "tiny_clip_vision": "sameface.models.clip_vision",
    "PuLIDConfig": f"{__name__}.config",
    "PuLIDModel": f"{__name__}.model",
    "personalize": f"{__name__}.personalize",
    "PuLIDPipeline": f"{__name__}.pipeline",
}

if TYPE_CHECKING:
    from ...models.clip_vision import ClipVision, tiny_clip_vision
    from ..spec import MethodSpec
    from .config import PuLIDConfig
    from .model import PuLIDModel
    from .personalize import personalize
    from .pipeline import PuLIDPipeline

    METHOD: MethodSpec


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


def _method() -> Any:
    from ..spec import MethodSpec
    from .config import PuLIDConfig
    from .personalize import personalize
    from .pipeline import PuLIDPipeline
    from .world import RECIPE

    # Importing the submodule `personalize` bound the package attribute to the module.
    globals()["personalize"] = personalize
    return MethodSpec(
        name="pulid",
        kind="encoder",
        paper="Guo et al. 2024, PuLID: Pure and Lightning ID Customization via Contrastive Alignment",
        config_cls=PuLIDConfig,
        personalize=personalize,
        pipeline_cls=PuLIDPipeline,
        train=train,
        world=RECIPE,
    )


def __getattr__(name: str) -> Any:
    if name == "METHOD":
        value = _method()
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
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
    "train",
]
