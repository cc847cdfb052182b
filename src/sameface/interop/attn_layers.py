"""How released adapters number a UNet's attention layers: by position in diffusers'
`unet.attn_processors` (every attn1 and attn2, in module order), the convention of
IP-Adapter's and PuLID's code (`torch.nn.ModuleList(unet.attn_processors.values())`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ArtifactError


def processor_layer(index: int, processor_names: Sequence[str], key: str) -> str:
    """The attention module name (e.g. "down_blocks.1.attentions.0.transformer_blocks.0.attn2")
    at `index` of `processor_names` (`list(unet.attn_processors)`).

    Raises:
        ArtifactError: `index` is outside the UNet (`key` names the offending tensor).
    """
    if not 0 <= index < len(processor_names):
        raise ArtifactError(f"{key}: layer {index} of a UNet with {len(processor_names)}")
    return processor_names[index].removesuffix(".processor")


def unet_skeleton(family: str) -> Any:
    """The family's real UNet architecture (`models.configs.real_configs`) with its
    parameters on the meta device: no memory, no weights, the exact layer names and shapes."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    from ..models.configs import real_configs

    with init_empty_weights():
        return UNet2DConditionModel.from_config(real_configs(family)["unet"])


__all__ = ["processor_layer", "unet_skeleton"]
