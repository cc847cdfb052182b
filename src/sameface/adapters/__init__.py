"""Adapters on a frozen UNet: IP-Adapter-style decoupled ID cross-attention and ID encoders.

Shared by the tuning-free methods (PuLID first; FeedFace and DreamIdentity can reuse the
pieces). Importing this package is cheap: torch and diffusers load on first use of a name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "CrossAttnRecord": "attention",
    "IDAdapter": "attention",
    "IDAttnProcessor": "attention",
    "ID_KWARGS": "attention",
    "install_id_adapter": "attention",
    "IDEncoderConfig": "id_encoder",
    "IDFormer": "id_encoder",
    "IDMLPEncoder": "id_encoder",
    "build_id_encoder": "id_encoder",
}

__all__ = [
    "ID_KWARGS",
    "CrossAttnRecord",
    "IDAdapter",
    "IDAttnProcessor",
    "IDEncoderConfig",
    "IDFormer",
    "IDMLPEncoder",
    "build_id_encoder",
    "install_id_adapter",
]

if TYPE_CHECKING:
    from sameface.adapters.attention import (
        ID_KWARGS,
        CrossAttnRecord,
        IDAdapter,
        IDAttnProcessor,
        install_id_adapter,
    )
    from sameface.adapters.id_encoder import (
        IDEncoderConfig,
        IDFormer,
        IDMLPEncoder,
        build_id_encoder,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sameface.adapters' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sameface.adapters.{module}"), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
