"""What methods attach to a frozen base model: pseudo-word tokens in the text encoders,
IP-Adapter-style decoupled ID cross-attention, ID encoders. They know no method. Importing this package is cheap: torch and diffusers load on first use of a name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AttentionFeature": "attention",
    "AttentionMaps": "attention",
    "AttentionRecorder": "attention",
    "CrossAttnRecord": "attention",
    "FeatureAttnProcessor": "attention",
    "IDAttnProcessor": "attention",
    "attach_feature": "attention",
    "detach_feature": "attention",
    "IDAdapter": "id_attention",
    "IDAttention": "id_attention",
    "ID_KWARGS": "id_attention",
    "install_id_adapter": "id_attention",
    "IDEncoderConfig": "id_encoder_config",
    "IDEncoderSettings": "id_encoder_config",
    "IDFormer": "id_encoder",
    "IDMLPEncoder": "id_encoder",
    "build_id_encoder": "id_encoder",
    "EncoderTokens": "tokens",
    "LearnedTokens": "tokens",
    "TokenSplice": "tokens",
}

__all__ = [
    "ID_KWARGS",
    "AttentionFeature",
    "AttentionMaps",
    "AttentionRecorder",
    "CrossAttnRecord",
    "EncoderTokens",
    "FeatureAttnProcessor",
    "IDAdapter",
    "IDAttention",
    "IDAttnProcessor",
    "IDEncoderConfig",
    "IDFormer",
    "IDMLPEncoder",
    "LearnedTokens",
    "TokenSplice",
    "attach_feature",
    "build_id_encoder",
    "detach_feature",
    "install_id_adapter",
]

if TYPE_CHECKING:
    from sameface.adapters.attention import (
        AttentionFeature,
        AttentionMaps,
        AttentionRecorder,
        CrossAttnRecord,
        FeatureAttnProcessor,
        IDAttnProcessor,
        attach_feature,
        detach_feature,
    )
    from sameface.adapters.id_attention import ID_KWARGS, IDAdapter, IDAttention, install_id_adapter
    from sameface.adapters.id_encoder import (
        IDEncoderConfig,
        IDFormer,
        IDMLPEncoder,
        build_id_encoder,
    )
    from sameface.adapters.tokens import EncoderTokens, LearnedTokens, TokenSplice


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sameface.adapters' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sameface.adapters.{module}"), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
