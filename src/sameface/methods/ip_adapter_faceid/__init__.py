"""IP-Adapter-FaceID (Ye et al. 2023, "IP-Adapter: Text Compatible Image Prompt Adapter for
Text-to-Image Diffusion Models"; the FaceID release, h94/IP-Adapter-FaceID): a face-recognition
embedding becomes 4 tokens in a decoupled cross-attention, with a LoRA on the UNet's attention.

Not one of the five seed methods: it runs the weights many people already use (`sameface
import ip-adapter-faceid`) through sameface's identities, pipelines, UI and evaluation, and
trains its own (`sameface train ip-adapter-faceid`).

Importing this package is cheap (the registry and the CLI read `METHOD` without torch).
"""

from __future__ import annotations

from typing import Any

from ..spec import MethodSpec
from .config import IPAdapterFaceIDConfig
from .world import RECIPE

METHOD = MethodSpec(
    name="ip-adapter-faceid",
    kind="encoder",
    paper="Ye et al. 2023, IP-Adapter: Text Compatible Image Prompt Adapter for Text-to-Image "
    "Diffusion Models (the FaceID release)",
    config_cls=IPAdapterFaceIDConfig,
    personalize=f"{__name__}.encode:personalize",
    pipeline_cls=f"{__name__}.pipeline:IPAdapterFaceIDPipeline",
    train=f"{__name__}.train:train",
    trained_meta="ip_adapter_faceid.json",
    generate_options={"id_scale": "id_scale", "lora_scale": "lora_scale"},
    world=RECIPE,
)


def personalize(*args: Any, **kwargs: Any) -> Any:
    """Encode an identity with IP-Adapter-FaceID (`sameface.methods.ip_adapter_faceid.encode`)."""
    return METHOD.personalize(*args, **kwargs)


__all__ = ["METHOD", "IPAdapterFaceIDConfig", "personalize"]
