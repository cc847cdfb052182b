"""Base models: resolve local files, detect the family, load SD1.x / SD2.x / SDXL, tokenise.

Importing this package is cheap: names are loaded on first use, so torch, diffusers and
transformers are imported only when a function that needs them runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "BaseModel": "base",
    "load_base_model": "base",
    "save_base_model": "base",
    "check_consistency": "base",
    "FamilyInfo": "family",
    "detect_family": "family",
    "family_from_diffusers_folder": "family",
    "family_from_single_file": "family",
    "ResolvedModel": "resolve",
    "resolve_model_source": "resolve",
    "resolve_config_folder": "resolve",
    "hub_cache_dir": "resolve",
    "clip_tokenizer": "tokenizer",
    "find_bpe_file": "tokenizer",
    "tiny_base_model": "builders",
    "real_config_base_model": "builders",
    "real_configs": "configs",
    "write_config_folder": "configs",
}

__all__ = [
    "BaseModel",
    "FamilyInfo",
    "ResolvedModel",
    "check_consistency",
    "clip_tokenizer",
    "detect_family",
    "family_from_diffusers_folder",
    "family_from_single_file",
    "find_bpe_file",
    "hub_cache_dir",
    "load_base_model",
    "real_config_base_model",
    "real_configs",
    "resolve_config_folder",
    "resolve_model_source",
    "save_base_model",
    "tiny_base_model",
    "write_config_folder",
]

if TYPE_CHECKING:
    from sameface.models.base import BaseModel, check_consistency, load_base_model, save_base_model
    from sameface.models.builders import real_config_base_model, tiny_base_model
    from sameface.models.configs import real_configs, write_config_folder
    from sameface.models.family import (
        FamilyInfo,
        detect_family,
        family_from_diffusers_folder,
        family_from_single_file,
    )
    from sameface.models.resolve import (
        ResolvedModel,
        hub_cache_dir,
        resolve_config_folder,
        resolve_model_source,
    )
    from sameface.models.tokenizer import clip_tokenizer, find_bpe_file


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sameface.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sameface.models.{module}"), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
