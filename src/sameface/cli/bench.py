"""`sameface bench`: run a benchmark suite over methods, score it, write the report."""

from __future__ import annotations

import importlib.util

from ..locks import FolderLock
from .common import add_device_options, process_device, recognizer_kwargs

DEFAULT_CLIP = "openai/clip-vit-large-patch14"


def default_evaluator_recognizer() -> str:
    """dlib when installed (different from SFace, which identities and methods use), else SFace."""
    return (
        "dlib"
        if importlib.util.find_spec("dlib") and importlib.util.find_spec("face_recognition_models")
        else "sface"
    )


def method_settings(items: list[str] | None) -> dict:
    """`--set METHOD.KEY=VALUE` pairs as {method: {key: value}}."""
    import yaml

    out: dict = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot:
            raise ValueError(f"--set expects METHOD.KEY=VALUE, got {item!r}")
        out.setdefault(method.strip(), {})[name.strip().replace("-", "_")] = yaml.safe_load(raw)
    return out


def parse_methods(text: str | None) -> list[str]:
    """`M1,M2@variant` as a list of row labels whose methods are registered (ValueError naming
    the unknown ones; whether a variant is declared is the suite's to say)."""
    from ..eval.variants import check_label, method_of
    from ..methods import available_methods

    methods = [m.strip() for m in (text or "").split(",") if m.strip()]
    unknown = [m for m in methods if method_of(m) not in available_methods()]
    if unknown:
        raise ValueError(
            f"unknown method(s) {', '.join(unknown)}; available: {', '.join(available_methods())}"
        )
    for label in methods:
        check_label(label)
    return methods


def cmd_bench(args) -> int:
    from ..eval.report import write_report
    from ..eval.runner import run_benchmark
    from ..training.distributed import distributed_context

    world = _load_world(args)
    if world is None and not args.base:
        raise ValueError("give the base model with --base MODEL, or use --world [DIR]")
    suite = _load_suite(args, world)
    methods = parse_methods(args.methods) if args.methods else parse_methods(",".join(suite.run))
    _check_rows(methods, suite, method_settings(args.set))
    ctx = distributed_context()
    if ctx.num_processes == 1:  # fail now, not after loading models; the runner holds the lock
        FolderLock(args.out, "sameface bench").acquire().release()
    device, dtype = process_device(args, ctx)
    if world is not None:
        evaluator, settings = _world_setup(args, world, suite, methods)
    else:
        evaluator, settings = _plain_setup(args, methods, device)
    base = _load_base(args, world, device, dtype)
    out = run_benchmark(
        suite,
        base,
        args.out,
        evaluator,
        settings,
        process_index=ctx.process_index,
        num_processes=ctx.num_processes,
        wait_fn=ctx.wait,
    )
    if ctx.is_main:
        md, html = write_report(out)
        print(f"results: {out / 'results.jsonl'}\nreport: {md}\n        {html}")
    return 0


def _check_rows(methods: list[str], suite, sets: dict) -> None:
    """Fail before any model loads: an undeclared variant, or `--set` for a row not run."""
    from ..eval.variants import method_of, method_runs

    method_runs(methods, suite.methods)
    unused = [k for k in sets if k not in methods and k not in {method_of(m) for m in methods}]
    if unused:
        raise ValueError(
            f"--set names {', '.join(unused)}, which this run does not run "
            f"(rows: {', '.join(methods) or 'only the baselines'})"
        )


def _load_world(args):
    """The world `--world` names (None without the flag)."""
    if args.world is None:
        return None
    if args.recognizer or args.clip or args.identity_recognizer:
        raise ValueError(
            "--world scores with the world's own recogniser, detector and CLIP; "
            "drop --recognizer, --identity-recognizer and --clip"
        )
    from ..world.world import World

    return World.load(args.world or None)


def _load_suite(args, world):
    """The suite, with the world's people and style references when `--world` is given."""
    from pathlib import Path

    from ..eval.style import STYLE_REFERENCES, world_style_references
    from ..eval.suite import load_suite

    if world is None:
        return load_suite(args.suite)
    styles = world_style_references(world, Path(args.out) / STYLE_REFERENCES)
    return load_suite(args.suite, world.reference_people(), styles)


def _load_base(args, world, device, dtype):
    from ..models import load_base_model

    spec = args.base or str(world.folder / "base")
    return load_base_model(spec, device=device, dtype=dtype)


def _world_setup(args, world, suite, methods):
    """Evaluator and settings of a run in the miniature world."""
    import sys

    from ..eval.variants import method_of
    from ..eval.world_bench import world_evaluator, world_settings
    from ..methods import get_method

    if world.judge is None and any(get_method(method_of(m)).kind == "encoder" for m in methods):
        print(
            "note: in the world one recogniser builds the identities and scores the images; "
            "encoder methods condition on it, so their face similarity is flattered",
            file=sys.stderr,
        )
    settings = world_settings(
        world,
        args.out,
        methods,
        known_people=args.known_people or len(suite.identities),
        method_settings=method_settings(args.set),
        base_spec=args.base,
        bank=_celeb_bank(args),  # None: the world's own (WORLD/celebs), when it has one
    )
    return world_evaluator(world), settings


def _celeb_bank(args):
    from ..data.celebs import CelebrityBank

    return CelebrityBank.load(args.celeb_bank) if args.celeb_bank else None


def _plain_setup(args, methods, device):
    """Evaluator and settings of a run on real photos."""
    import sys

    from ..eval.runner import BenchSettings, Evaluator
    from ..faces import FaceAnalyzer
    from ..models.clip import ClipScorer, tiny_clip

    identity_recognizer = args.identity_recognizer or "sface"
    recognizer = args.recognizer or default_evaluator_recognizer()
    if recognizer == identity_recognizer:
        print(
            f"warning: the evaluator recogniser ({recognizer}) is the one identities are built with; "
            "scores of methods that condition on it are inflated (install the dlib extra, or pass --recognizer)",
            file=sys.stderr,
        )
    analyzer = FaceAnalyzer(recognizer, recognizer_kwargs=recognizer_kwargs(args))
    clip_spec = args.clip or DEFAULT_CLIP
    clip = tiny_clip() if clip_spec == "tiny-random" else ClipScorer.load(clip_spec, device=device)
    bank = _celeb_bank(args)
    settings = BenchSettings(
        methods=methods,
        base_spec=args.base,
        method_settings=method_settings(args.set),
        bank=bank,
        identity_recognizer=identity_recognizer,
    )
    return Evaluator(analyzer, clip), settings


def add_parsers(sub, common) -> None:
    """Add `bench` to the sub-command parser."""
    p = sub.add_parser(
        "bench",
        parents=[common],
        help="run a benchmark suite over methods and write a report",
        description="Personalise each identity once per method, generate every prompt × seed, score "
        "(face similarity with an evaluator recogniser, CLIP-T, CLIP-I, face CLIP-I, normalised "
        "scores, aggregate) and write results.jsonl, report.md and report.html. A no-identity "
        "baseline is always included. Resumable (finished cells are not recomputed); shards "
        "identities across processes under `accelerate launch -m sameface.cli bench ...`. "
        "With --world the run happens in the miniature world (docs/evaluation.md): its base "
        "model, its recogniser, detector, CLIP and context classifier (context accuracy), "
        "whole-portrait identities, and two more baselines: known-by-name and copy-reference.",
    )
    p.add_argument(
        "--suite", required=True, metavar="FILE", help="suite YAML (see benchmarks/suites/)"
    )
    p.add_argument(
        "--methods",
        default="",
        metavar="M1,M2@VARIANT",
        help="comma-separated methods, or variants the suite declares as `method@variant` "
        "(default: the suite's `run` list; the baseline always runs)",
    )
    p.add_argument(
        "--base",
        metavar="MODEL",
        help="base model: diffusers folder, .safetensors or hub id (default with --world: the "
        "world's model; required otherwise)",
    )
    p.add_argument(
        "--world",
        nargs="?",
        const="",
        metavar="DIR",
        help="run in the miniature world: DIR, else $SAMEFACE_WORLD, else the shipped world "
        "(suites may then say `identities: world`)",
    )
    p.add_argument(
        "--known-people",
        type=int,
        metavar="N",
        help="with --world: known people the known-by-name baseline cycles through "
        "(default: one per suite identity)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="run folder")
    p.add_argument(
        "--recognizer",
        choices=["sface", "dlib", "insightface"],
        help="evaluator recogniser (default: dlib if installed, else sface; not with --world)",
    )
    p.add_argument(
        "--insightface-model", metavar="PATH", help="insightface model-pack folder or ONNX file"
    )
    p.add_argument(
        "--identity-recognizer",
        choices=["sface", "dlib", "insightface"],
        help="recogniser identities are built with, i.e. what methods condition on (default "
        "sface; not with --world)",
    )
    p.add_argument(
        "--clip",
        metavar="MODEL",
        help=f"CLIP for CLIP-T / CLIP-I: local folder or hub id in the HF cache (default "
        f"{DEFAULT_CLIP}; not with --world); 'tiny-random' for plumbing tests (meaningless scores)",
    )
    p.add_argument(
        "--celeb-bank",
        metavar="DIR",
        help="celebrity bank for textual inversion's id/rand2 inits (with --world: default the "
        "world's own, WORLD/celebs, when it has one)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="METHOD.KEY=VALUE",
        help="method setting, e.g. textual-inversion.steps=100 (a METHOD@VARIANT sets only "
        "that variant)",
    )
    add_device_options(p)
    p.set_defaults(func=cmd_bench)


__all__ = ["add_parsers", "cmd_bench", "parse_methods"]
