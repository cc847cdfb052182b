"""DreamIdentity: an M² ID encoder turns a face into pseudo-words in one forward pass (seed
000_4d906c31227f05f2; Chen et al. 2023).

Importing this package is cheap (the registry and the CLI read `METHOD` without torch).
"""

from __future__ import annotations

from typing import Any

from ..spec import MethodSpec
from .config import DreamIdentityConfig
from .world import RECIPE

METHOD = MethodSpec(
    name="dreamidentity",
    kind="encoder",
    paper="Chen et al. 2023, DreamIdentity: Improved Editability for Efficient Face-identity Preserved Image Generation",
    config_cls=DreamIdentityConfig,
    personalize=f"{__name__}.encode:personalize",
    pipeline_cls=f"{__name__}.pipeline:DreamIdentityPipeline",
    train=f"{__name__}.train:train",
    trained_meta="dreamidentity.json",
    train_inputs={"augmented": "self-augmented triplets (`sameface data self-augment`)"},
    data_commands={"self-augment": f"{__name__}.cli:add_parser"},
    world=RECIPE,
)


def personalize(*args: Any, **kwargs: Any) -> Any:
    """Encode an identity with a trained M² ID encoder (`sameface.methods.dreamidentity.encode`)."""
    return METHOD.personalize(*args, **kwargs)


__all__ = ["METHOD", "DreamIdentityConfig", "personalize"]
