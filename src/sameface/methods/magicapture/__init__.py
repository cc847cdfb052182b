"""MagiCapture (Hyeon et al., AAAI 2024; seed 003_0322ab1b36c87e54): a person's selfies and an
optional style reference portrait -> words [V1] / [V2] and a UNet LoRA, trained in two phases
(textual inversion, then LoRA) with masked reconstruction, composed-prompt learning with an ID
loss, and the Attention Refocusing loss.

Importing this package is cheap (the registry and the CLI read `METHOD` without torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..spec import MethodSpec
from .config import MagiCaptureConfig

METHOD = MethodSpec(
    name="magicapture",
    kind="optimisation",
    paper="Hyeon et al. 2024, MagiCapture: High-Resolution Multi-Concept Portrait Customization",
    config_cls=MagiCaptureConfig,
    personalize=f"{__name__}.train:personalize",
    pipeline_cls=f"{__name__}.pipeline:MagiCapturePipeline",
    generate_options={"lora_scale": "lora_scale"},
    uses_recognizer=True,  # the ID loss on x̂0 runs the identity's recogniser
)

if TYPE_CHECKING:
    from .pipeline import MagiCapturePipeline


def personalize(*args: Any, **kwargs: Any) -> Any:
    """Learn an identity's words and LoRA (`sameface.methods.magicapture.train.personalize`)."""
    return METHOD.personalize(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "MagiCapturePipeline":
        return METHOD.pipeline_cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHOD", "MagiCaptureConfig", "MagiCapturePipeline", "personalize"]
