"""sameface: identity-preserving personalisation of text-to-image diffusion models.

`import sameface` is light: heavy parts (torch, diffusers, OpenCV models) load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "Identity": "sameface.identity",
    "FaceAnalyzer": "sameface.faces",
    "get_recognizer": "sameface.faces",
    "load_image": "sameface.imageio",
    "load_base_model": "sameface.models",
    "SamefaceError": "sameface.errors",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sameface' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
