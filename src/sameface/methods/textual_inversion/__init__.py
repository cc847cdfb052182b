"""Modified textual inversion for faces (seed 001_908721e677f5a139; Livshits 2023).

Importing this package is cheap: every name, `METHOD` included, loads on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "TextualInversionConfig": f"{__name__}.config",
    "TextualInversionPipeline": f"{__name__}.pipeline",
    "personalize": f"{__name__}.train",
}

if TYPE_CHECKING:
    from ..spec import MethodSpec
    from .config import TextualInversionConfig
    from .pipeline import TextualInversionPipeline
    from .train import personalize

    METHOD: MethodSpec


def _method() -> Any:
    from ..spec import MethodSpec
    from .config import TextualInversionConfig
    from .pipeline import TextualInversionPipeline
    from .train import personalize

    return MethodSpec(
        name="textual-inversion",
        kind="optimisation",
        paper="Livshits 2023, Personalized generation of facial images using modified textual inversion",
        config_cls=TextualInversionConfig,
        personalize=personalize,
        pipeline_cls=TextualInversionPipeline,
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


__all__ = ["METHOD", "TextualInversionConfig", "TextualInversionPipeline", "personalize"]
