"""The `sameface` command line: a thin layer over the public API.

Every expected failure (bad image, no face, missing model) prints one line on stderr and
exits non-zero; tracebacks appear only for real bugs, and only with --debug. Each module
here adds its sub-commands: `faces` (inspect, identity), `methods` (personalize,
generate), `interop` (export to A1111 / ComfyUI, import released weights), `models` (what
sameface can run, and the licences), `celebs` (the celebrity bank), `bench` (evaluation),
`data` (training data), `train` (encoder methods),
`world` (the proving ground), `demo` (a one-command tour in that world), `ui` (the web UI).
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..errors import SamefaceError, UsageError
from .common import EXIT_INPUT, EXIT_INTERNAL, EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    from . import bench, celebs, data, demo, faces, interop, methods, models, train, ui, world

    parser = argparse.ArgumentParser(
        prog="sameface",
        description="Identity-preserving personalisation of text-to-image diffusion models.",
    )
    parser.add_argument("--version", action="version", version=f"sameface {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks for unexpected errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # `--debug` also after the command; SUPPRESS keeps a top-level --debug from being reset.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    faces.add_parsers(sub, common)
    methods.add_parsers(sub, common)
    interop.add_parsers(sub, common)
    models.add_parsers(sub, common)
    celebs.add_parsers(sub, common)
    bench.add_parsers(sub, common)
    data.add_parsers(sub, common)
    train.add_parsers(sub, common)
    world.add_parsers(sub, common)
    demo.add_parsers(sub, common)
    ui.add_parsers(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    # OpenCV's dnn prints backend notices on stderr; keep the tool's output to its own lines.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault(
        "TRANSFORMERS_VERBOSITY", "error"
    )  # e.g. "torchvision not installed" notices
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from ..training.state import stop_requests_interrupt

    try:
        with stop_requests_interrupt():  # `kill` stops training like Ctrl-C: checkpoint first
            return int(args.func(args) or 0)
    except UsageError as e:  # options that do not fit together: like argparse's usage errors
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SamefaceError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except ValueError as e:  # argument values our API validates (policies, sizes, ...)
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `sameface inspect ... | head`: the reader left, that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:
        if args.debug:
            raise
        print(
            f"internal error: {type(e).__name__}: {e} (rerun with --debug and report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


__all__ = ["build_parser", "main"]
