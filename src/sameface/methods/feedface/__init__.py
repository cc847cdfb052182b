"""FeedFace: inference-based face personalisation with a face-controlnet (seed
002_3eb7414c52f293a2; Xiang et al. 2024).

Importing this package is cheap (the registry and the CLI read `METHOD` without torch).
"""

from __future__ import annotations

from typing import Any

from ..spec import MethodSpec
from .config import FeedFaceConfig
from .world import RECIPE

METHOD = MethodSpec(
    name="feedface",
    kind="encoder",
    paper="Xiang et al. 2024, FeedFace: Efficient Inference-based Face Personalization via Diffusion Models",
    config_cls=FeedFaceConfig,
    personalize=f"{__name__}.encode:personalize",
    pipeline_cls=f"{__name__}.pipeline:FeedFacePipeline",
    train=f"{__name__}.train:train",
    trained_meta="feedface.json",
    generate_options={"face_scale": "face_scale", "face_guidance_scale": "face_guidance_scale"},
    world=RECIPE,
)


def personalize(*args: Any, **kwargs: Any) -> Any:
    """Encode an identity with a trained FeedFace model (`sameface.methods.feedface.encode`)."""
    return METHOD.personalize(*args, **kwargs)


__all__ = ["METHOD", "FeedFaceConfig", "personalize"]
