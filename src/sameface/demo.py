"""The demo: one new person of the miniature world, personalised with every method that can run
there, generated over a few context and style prompts, scored by the benchmark harness.

Offline and CPU-sized: the world (`sameface.world`) brings its own base model, recogniser,
CLIP and context classifier. The work is a benchmark run (`sameface.eval.runner`) over a
built-in suite, so a rerun into the same folder reuses everything already made.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelNotFoundError, SamefaceError

DEMO_PROMPTS: tuple[str, ...] = (
    "a photo of <id>",
    "a sketch of <id>, red background",
    "a painting of <id> wearing a hat",
    "a close-up photo of <id> wearing glasses, striped blue background",
)
DEMO_SEEDS: tuple[int, ...] = (0, 1)
DEMO_SAMPLING_STEPS = 30
DEFAULT_TI_STEPS = 400
"""Textual-inversion steps (the paper's 400)."""
SETTINGS_FILE = "demo.json"


@dataclass
class DemoResult:
    """What a demo run made.

    Attributes:
        out: the run folder.
        report: its `report.html`.
        person: the world's reference person it personalised.
        methods: the methods that ran.
        skipped: methods that could not run in this world, with the reason.
        rows: per method (baselines first): method, id_similarity (misses = 0),
            context_accuracy and clip_t means.
    """

    out: Path
    report: Path
    person: str
    methods: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)

    def table(self) -> str:
        """The rows as a small text table; CLIP-T only where it tells a copied reference
        photo from the no-identity images (as in the report)."""
        from .eval.metrics import CLIP_T_MIN_SEPARATION

        keys = ["id_similarity", "context_accuracy", "clip_t"]
        head = ["method", "ID similarity", "context acc.", "CLIP-T"]
        note = ""
        margin = self._clip_t_margin()
        if margin is not None and margin < CLIP_T_MIN_SEPARATION:
            keys, head = keys[:2], head[:3]
            note = (
                f"\n(CLIP-T left out: the no-identity images beat a copied reference photo by "
                f"{margin:+.3f}, under {CLIP_T_MIN_SEPARATION:g}; context acc. is the measure)"
            )
        cells = [head] + [[r["method"], *(_fmt(r[k]) for k in keys)] for r in self.rows]
        widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
        lines = []
        for row in cells:
            rest = [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
            lines.append("  ".join([row[0].ljust(widths[0]), *rest]))
        return "\n".join(lines) + note

    def _clip_t_margin(self) -> float | None:
        clip = {r["method"]: r.get("clip_t") for r in self.rows}
        none, copy = clip.get("none"), clip.get("copy-reference")
        return None if none is None or copy is None else none - copy


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def load_world(folder: str | os.PathLike | None = None) -> Any:
    """The world in `folder`, else `$SAMEFACE_WORLD`, else the shipped one (clear error if none)."""
    from .world.world import ENV, World

    try:
        return World.load(folder)
    except ModelNotFoundError as e:
        if folder or os.environ.get(ENV):
            raise
        raise ModelNotFoundError(
            "no world found: this installation ships none (or it is incomplete); build one "
            "with `sameface world build --out DIR` and pass --world DIR (or set $SAMEFACE_WORLD)"
        ) from e


def demo_suite(world: Any) -> Any:
    """The built-in suite: the world's first reference person with all their photos."""
    from .eval.suite import Suite, SuiteIdentity

    people = world.reference_people()
    if not people:
        raise SamefaceError(f"{world.folder}: the world has no reference people (references/)")
    name, photos = next(iter(people.items()))
    return Suite(
        name="demo",
        identities=[SuiteIdentity(name, list(photos))],
        prompts=list(DEMO_PROMPTS),
        seeds=list(DEMO_SEEDS),
        num_inference_steps=DEMO_SAMPLING_STEPS,
        guidance_scale=7.5,
        description="sameface demo: one new person of the miniature world, context and "
        "style prompts",
    )


def plan_methods(world: Any, methods: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """(methods that can run in `world`, {skipped method: why}); default all registered."""
    from .eval.world_bench import unavailable_reason
    from .methods import available_methods

    run, skipped = [], {}
    for m in methods or available_methods():
        reason = unavailable_reason(world, m)
        if reason:
            skipped[m] = reason
        else:
            run.append(m)
    return run, skipped


def run_demo(
    out: str | os.PathLike = "sameface-demo",
    *,
    world: Any = None,
    methods: list[str] | None = None,
    steps: int = DEFAULT_TI_STEPS,
    threads: int | None = 1,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Personalise one new person of the world with each method, generate, score, report.

    Args:
        out: run folder (rerunning into it reuses what is there).
        world: a `World`, a world folder, or None for `$SAMEFACE_WORLD` / the shipped world.
        methods: registered methods to try (default all; those that cannot run are skipped).
        steps: textual-inversion optimisation steps.
        threads: torch CPU threads for the run (restored afterwards); None leaves them as
            they are. The world's models are tiny: one thread loses little on a quiet
            machine, while on a busy one more threads can be many times slower.
        progress: progress bars.
        log: where one-line messages go.

    Raises:
        ModelNotFoundError: no world.
        SamefaceError: `out` holds a demo made with other settings, or nothing can run.
    """
    from .eval.report import write_report
    from .eval.runner import run_benchmark
    from .eval.world_bench import world_evaluator, world_settings

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    world = world if hasattr(world, "reference_people") else load_world(world)
    out = Path(out)
    _check_settings(out, world, steps)
    run, skipped = plan_methods(world, methods)
    for m, why in skipped.items():
        log(f"skipping {m}: {why}")
    if not run:
        raise SamefaceError("no method can run in this world (" + "; ".join(skipped.values()) + ")")
    suite = demo_suite(world)
    person = suite.identities[0].name
    log(f"personalising {person} ({len(suite.identities[0].photos)} photos) with {', '.join(run)}")
    settings = world_settings(
        world, out, run, known_people=1, method_settings={"textual-inversion": {"steps": steps}}
    )
    with _torch_threads(threads):
        run_benchmark(suite, world.base, out, world_evaluator(world), settings, progress=progress)
    _, html = write_report(out)
    return DemoResult(out, html, person, run, skipped, summary_rows(out))


@contextmanager
def _torch_threads(n: int | None):
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_settings(out: Path, world: Any, steps: int) -> None:
    """Refuse to mix a rerun's cached work with other settings; record them otherwise."""
    from .fileio import write_json_atomic

    mine = {"world": str(Path(world.folder).resolve()), "textual_inversion_steps": steps}
    path = out / SETTINGS_FILE
    if path.is_file():
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError):
            before = mine
        if before != mine:
            raise SamefaceError(
                f"{out} holds a demo made with other settings ({before}); use another --out "
                "or delete it"
            )
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, mine)


def summary_rows(out: Path) -> list[dict]:
    """Per method of the run (report order): mean ID similarity, context accuracy, CLIP-T."""
    from .eval.report import load_run
    from .eval.stats import summarise

    run = load_run(out)
    rows = []
    for m in run.methods:
        s = summarise(run.images, m)
        mean = {k: (None if s[k].n == 0 else float(s[k].mean)) for k in s}
        rows.append(
            {
                "method": m,
                "id_similarity": mean["face_similarity_with_misses"],
                "context_accuracy": mean["context_accuracy"],
                "clip_t": mean["clip_t"],
            }
        )
    return rows


__all__ = ["DEMO_PROMPTS", "DemoResult", "demo_suite", "load_world", "plan_methods", "run_demo"]
