"""MagiCapture (Hyeon et al., AAAI 2024; seed 003_0322ab1b36c87e54): a person's selfies and an
optional style reference portrait -> words [V1] / [V2] and a UNet LoRA, trained in two phases
(textual inversion, then LoRA) with masked reconstruction, composed-prompt learning with an ID
loss, and the Attention Refocusing loss.

Importing this package is cheap (the registry and the CLI read `METHOD` without torch).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..spec import MethodSpec
from .config import MagiCaptureConfig

WORLD_SETTINGS = MappingProxyType(
    {
        "ti_steps": 400,
        "ti_learning_rate": 5e-3,
        "lora_steps": 200,
        # Measured on the development suites: the code's norm pull of the words gained no
        # identity (+0.01 ± 0.03) and lost context (−0.035 ± 0.018) in the ordinary suite, and
        # left the style suite's context as it was (0.69 against 0.68); 500 LoRA steps (the
        # code's 1,200 : 1,500 ratio) overfit (identity −0.32, context −0.28).
        "ti_norm_decay": False,
        "reference_expand": None,
        "instance_templates": (
            "a photo of {id}",
            "a close-up portrait of {id}",
            "a photo of the face of {id}",
            "a cropped photo of {id}",
            "a good photo of {id}",
            "a portrait photo of {id}",
            "a headshot of {id}",
            "a close-up photo of {id}",
        ),
        # The reference's style, background, framing and accessories in one word where the
        # world's captions name the medium ("a sketch of ..."); suites ask "a <style> of <id>".
        "style_templates": ("a {style} of a person",),
        "composed_templates": ("a {style} of {id}",),
    }
)
"""MagiCapture in the proving-ground world: textual inversion's 400 steps and learning rate
there (the world's scale), 200 LoRA steps, no norm pull of the words (it cost context on the
development suite), whole-portrait references, and source, reference and composed prompts in
the world's caption grammar (its text encoder never saw "a photo of a X person" or "in the
style of")."""

METHOD = MethodSpec(
    name="magicapture",
    kind="optimisation",
    paper="Hyeon et al. 2024, MagiCapture: High-Resolution Multi-Concept Portrait Customization",
    config_cls=MagiCaptureConfig,
    personalize=f"{__name__}.train:personalize",
    pipeline_cls=f"{__name__}.pipeline:MagiCapturePipeline",
    generate_options={"lora_scale": "lora_scale"},
    uses_recognizer=True,  # the ID loss on x̂0 runs the identity's recogniser
    world_settings=WORLD_SETTINGS,
    style_field="style_reference",
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
