"""Helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SamefaceError

EXIT_INPUT = 1  # some input could not be used (bad image, no face, ...)
EXIT_USAGE = 2  # argparse's own code for bad arguments
EXIT_INTERNAL = 70  # a bug: please report it


def recognizer_kwargs(args) -> dict:
    if args.recognizer == "insightface" and args.insightface_model:
        return {"model_path": args.insightface_model}
    return {}


def add_face_options(p: argparse.ArgumentParser, policy_flag: str = "--face") -> None:
    p.add_argument(
        "--recognizer",
        default="sface",
        choices=["sface", "dlib", "insightface"],
        help="face recogniser for embeddings (default: sface, shipped; dlib needs the `dlib` extra; "
        "insightface needs local antelopev2/buffalo_l files)",
    )
    p.add_argument(
        "--insightface-model", metavar="PATH", help="insightface model-pack folder or ONNX file"
    )
    p.add_argument(
        policy_flag,
        dest="face_policy",
        default="largest",
        metavar="POLICY",
        help="which face to use when a photo has several: largest (default), central, single (error if "
        "several) or an index as listed by inspect",
    )
    p.add_argument(
        "--min-face-size",
        type=float,
        default=32.0,
        metavar="PX",
        help="ignore faces smaller than this (default 32)",
    )


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def expand_images(paths: list[str]) -> list[str]:
    """Paths as given, with folders replaced by the image files directly inside them (sorted)."""
    out = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(
                str(q) for q in path.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                raise SamefaceError(
                    f"{p}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)})"
                )
            out += found
        else:
            out.append(p)
    return out


def ensure_folder(path: str) -> Path:
    """Create an output folder, or fail with one line before any slow work."""
    from ..errors import OutputError

    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{path}: cannot create output folder ({e.strerror or e})") from None
    return folder
