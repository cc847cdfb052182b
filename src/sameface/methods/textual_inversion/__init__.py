"""Modified textual inversion for faces (seed 001_908721e677f5a139; Livshits 2023).

Importing this package is cheap (the registry and the CLI read `METHOD` without torch): the
training and pipeline code load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..spec import MethodSpec
from .config import TextualInversionConfig

METHOD = MethodSpec(
    name="textual-inversion",
    kind="optimisation",
    paper="Livshits 2023, Personalized generation of facial images using modified textual inversion",
    config_cls=TextualInversionConfig,
    personalize=f"{__name__}.train:personalize",
    pipeline_cls=f"{__name__}.pipeline:TextualInversionPipeline",
)

if TYPE_CHECKING:
    from .pipeline import TextualInversionPipeline


def personalize(*args: Any, **kwargs: Any) -> Any:
    """Learn an identity's vectors (`sameface.methods.textual_inversion.train.personalize`)."""
    return METHOD.personalize(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "TextualInversionPipeline":
        return METHOD.pipeline_cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHOD", "TextualInversionConfig", "TextualInversionPipeline", "personalize"]
