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


def expand_images(paths: list[str]) -> list[str]:
    """Paths as given, with folders replaced by the image files directly inside them (sorted)."""
    from ..imageio import IMAGE_SUFFIXES  # here: the CLI loads no numpy until it runs

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


def pick_device(device: str, dtype: str, *, training: bool = False) -> tuple[str, object]:
    """('cuda'|'cpu'|..., torch dtype) from the CLI's `auto` defaults, checked.

    `auto` dtype: float32 on the CPU; on a GPU float16 for generation and bfloat16 for
    training (no loss scaling needed).
    """
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda, cuda:1, mps, ...") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SamefaceError(
            f"--device {device}: CUDA is not available here (torch {torch.__version__}); use --device cpu"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise SamefaceError(
            f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here"
        )
    if dtype == "auto":
        dtype = "float32" if dev.type == "cpu" else ("bfloat16" if training else "float16")
    return device, getattr(torch, dtype)


def add_device_options(p: argparse.ArgumentParser) -> None:
    """`--device` and `--dtype`, the same on every command that runs a model."""
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)"
    )
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "float16", "bfloat16"],
        help="weight dtype (default: float32 on the CPU; on a GPU float16, bfloat16 for training)",
    )


def process_device(args, ctx, *, training: bool = False) -> tuple[str, object]:
    """`pick_device` for one process of a (possibly) multi-process run: under `accelerate
    launch` an unindexed `cuda` becomes this process's own GPU."""
    device, dtype = pick_device(args.device, args.dtype, training=training)
    if ctx.num_processes > 1 and device == "cuda":
        from accelerate import PartialState

        device = str(PartialState().device)
    return device, dtype
