"""Typed exceptions. The CLI turns any `SamefaceError` into one line on stderr."""

from __future__ import annotations


class SamefaceError(Exception):
    """Base class for every error sameface raises on purpose (bad input, missing files)."""


class ImageLoadError(SamefaceError, ValueError):
    """A file could not be read as an image (missing, corrupt, truncated, not an image, too large)."""


class FaceNotFoundError(SamefaceError, ValueError):
    """No usable face was found in an image."""


class ModelNotFoundError(SamefaceError, FileNotFoundError):
    """Model files are missing locally; the message names them and how to get them."""


class DependencyMissingError(SamefaceError, ImportError):
    """An optional dependency (an extra) is not installed; the message says which extra."""


class ArtifactError(SamefaceError, ValueError):
    """A saved artifact (identity folder, weights) is missing parts or inconsistent."""


class TrainingError(SamefaceError, RuntimeError):
    """Training stopped: non-finite losses, or an interruption (a checkpoint was saved first)."""


class OutputError(SamefaceError, OSError):
    """An output file or folder cannot be written."""


class UsageError(SamefaceError, ValueError):
    """A command was given options that do not fit (the CLI exits 2, as for argparse errors)."""


class ModelError(SamefaceError, ValueError):
    """Base-model files are present but unsafe or malformed (crafted safetensors, pickles,
    a `model_index.json` naming a class its component cannot be)."""
