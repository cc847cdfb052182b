"""`sameface demo`: personalise one person of the miniature world with every method, score it."""

from __future__ import annotations


def cmd_demo(args) -> int:
    import time

    from ..demo import DEMO_PROMPTS, DEMO_SEEDS, run_demo
    from .bench import parse_methods

    t0 = time.perf_counter()
    result = run_demo(
        args.out,
        world=args.world,
        methods=parse_methods(args.methods) or None,
        steps=args.steps,
        threads=args.threads,
        progress=not args.quiet,
        log=(lambda s: None) if args.quiet else print,
    )
    if args.quiet:  # otherwise run_demo said so already
        for m, why in result.skipped.items():
            print(f"skipped {m}: {why}")
    n = len(DEMO_PROMPTS) * len(DEMO_SEEDS)
    print(f"\n{result.person}: means over {n} images per method")
    print(result.table())
    print(f"\nreport: {result.report}  ({time.perf_counter() - t0:.0f} s)")
    return 0


def add_parsers(sub, common) -> None:
    """Add `demo` to the sub-command parser."""
    from ..demo import DEFAULT_TI_STEPS, DEMO_PROMPTS, DEMO_SEEDS

    p = sub.add_parser(
        "demo",
        parents=[common],
        help="personalise one person of the miniature world with every method and score it",
        description="Offline demo in the miniature world: personalise its first reference "
        "person (4 photos) with textual inversion and every other method that can run there "
        "(methods with trained parts there, e.g. PuLID with WORLD/pulid/), generate "
        f"{len(DEMO_PROMPTS)} context/style prompts x {len(DEMO_SEEDS)} seeds, score them with "
        "the benchmark harness (ID similarity, context accuracy, CLIP-T; baselines: none, "
        "known-by-name, copy-reference), print a table and write report.html. Rerunning "
        "into the same --out reuses the work done.",
    )
    p.add_argument(
        "--out", default="sameface-demo", metavar="DIR", help="run folder (default ./sameface-demo)"
    )
    p.add_argument(
        "--world",
        metavar="DIR",
        help="world folder (default: $SAMEFACE_WORLD, else the shipped one)",
    )
    p.add_argument(
        "--methods", default="", metavar="M1,M2", help="methods to try (default: all registered)"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_TI_STEPS,
        metavar="N",
        help=f"textual-inversion steps (default {DEFAULT_TI_STEPS})",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch CPU threads (default 1: the world's models are tiny, and on a busy machine "
        "more threads can be many times slower)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    p.set_defaults(func=cmd_demo)


__all__ = ["add_parsers", "cmd_demo"]
