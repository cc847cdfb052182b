"""`sameface bench`: run a benchmark suite over methods, score it, write the report."""

from __future__ import annotations

import importlib.util

from .common import add_device_options, process_device, recognizer_kwargs


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


def cmd_bench(args) -> int:
    import sys

    from ..eval.clip import ClipScorer, tiny_clip
    from ..eval.report import write_report
    from ..eval.runner import BenchSettings, Evaluator, run_benchmark
    from ..eval.suite import load_suite
    from ..faces import FaceAnalyzer
    from ..methods import available_methods
    from ..models import load_base_model
    from ..training.distributed import distributed_context

    suite = load_suite(args.suite)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else []
    unknown = [m for m in methods if m not in available_methods()]
    if unknown:
        raise ValueError(
            f"unknown method(s) {', '.join(unknown)}; available: {', '.join(available_methods())}"
        )
    ctx = distributed_context()
    device, dtype = process_device(args, ctx)
    recognizer = args.recognizer or default_evaluator_recognizer()
    if recognizer == args.identity_recognizer:
        print(
            f"warning: the evaluator recogniser ({recognizer}) is the one identities are built with; "
            "scores of methods that condition on it are inflated (install the dlib extra, or pass --recognizer)",
            file=sys.stderr,
        )
    analyzer = FaceAnalyzer(recognizer, recognizer_kwargs=recognizer_kwargs(args))
    clip = tiny_clip() if args.clip == "tiny-random" else ClipScorer.load(args.clip, device=device)
    bank = None
    if args.celeb_bank:
        from ..data.celebs import CelebrityBank

        bank = CelebrityBank.load(args.celeb_bank)
    base = load_base_model(args.base, device=device, dtype=dtype)
    settings = BenchSettings(
        methods=methods,
        base_spec=args.base,
        method_settings=method_settings(args.set),
        bank=bank,
        identity_recognizer=args.identity_recognizer,
    )
    out = run_benchmark(
        suite,
        base,
        args.out,
        Evaluator(analyzer, clip),
        settings,
        process_index=ctx.process_index,
        num_processes=ctx.num_processes,
        wait_fn=ctx.wait,
    )
    if ctx.is_main:
        md, html = write_report(out)
        print(f"results: {out / 'results.jsonl'}\nreport: {md}\n        {html}")
    return 0


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
        "identities across processes under `accelerate launch -m sameface.cli bench ...`.",
    )
    p.add_argument(
        "--suite", required=True, metavar="FILE", help="suite YAML (see benchmarks/suites/)"
    )
    p.add_argument(
        "--methods",
        default="",
        metavar="M1,M2",
        help="comma-separated methods (the baseline always runs)",
    )
    p.add_argument(
        "--base",
        required=True,
        metavar="MODEL",
        help="base model: diffusers folder, .safetensors or hub id",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="run folder")
    p.add_argument(
        "--recognizer",
        choices=["sface", "dlib", "insightface"],
        help="evaluator recogniser (default: dlib if installed, else sface)",
    )
    p.add_argument(
        "--insightface-model", metavar="PATH", help="insightface model-pack folder or ONNX file"
    )
    p.add_argument(
        "--identity-recognizer",
        default="sface",
        choices=["sface", "dlib", "insightface"],
        help="recogniser identities are built with, i.e. what methods condition on (default sface)",
    )
    p.add_argument(
        "--clip",
        default="openai/clip-vit-large-patch14",
        metavar="MODEL",
        help="CLIP for CLIP-T / CLIP-I: local folder or hub id in the HF cache (default "
        "openai/clip-vit-large-patch14); 'tiny-random' for plumbing tests (meaningless scores)",
    )
    p.add_argument(
        "--celeb-bank", metavar="DIR", help="celebrity bank for textual inversion's id init"
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="METHOD.KEY=VALUE",
        help="method setting, e.g. textual-inversion.steps=100",
    )
    add_device_options(p)
    p.set_defaults(func=cmd_bench)


__all__ = ["add_parsers", "cmd_bench"]
