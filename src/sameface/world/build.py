"""`sameface world build`: render the world, train its models, check them, write the folder.

Stages run in order and each records completion under `<work>/done/`; a rerun skips the
finished ones and resumes the interrupted one from its last checkpoint. Output layout:

    DIR/world.json          sizes, people counts, build settings, versions
    DIR/people.json         known people (names + identity vectors) and new people
    DIR/base/               the text-to-image model (a StableDiffusionPipeline folder)
    DIR/clip/               the world's CLIP (CLIPModel folder)
    DIR/faces/              recognizer, judge (scores benchmarks), detector, context classifier
    DIR/references/         4 reference portraits of each evaluation new person
    DIR/quality.json        the world's own quality checks (docs/proving-ground.md)
    DIR/<method>/           a method's trained parts (`sameface world <method>`, e.g. pulid/; not part of the build)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..fileio import write_json_atomic
from .models import WorldSizes
from .trainer import LoopSettings

WORLD_VERSION = 1


@dataclass
class BuildConfig:
    """Everything that decides the world. Defaults are the shipped world's recipe (~3 h on 2 cores)."""

    seed: int = 0
    sizes: WorldSizes = field(default_factory=WorldSizes)
    n_known: int = 2000
    n_new: int = 200
    images_per_known: int = 16
    n_anonymous: int = 16000
    n_negatives: int = 3000
    heldout_per_new: int = 4
    n_reference_people: int = 16
    vae: LoopSettings = field(default_factory=lambda: LoopSettings(steps=2000, lr=1e-3, warmup=100))
    text: LoopSettings = field(default_factory=lambda: LoopSettings(steps=8000, lr=1e-3))
    unet: LoopSettings = field(
        default_factory=lambda: LoopSettings(steps=15000, lr=4e-4, warmup=200, ema=0.999)
    )
    recognizer: LoopSettings = field(default_factory=lambda: LoopSettings(steps=2000, lr=2e-3))
    detector: LoopSettings = field(default_factory=lambda: LoopSettings(steps=1200, lr=2e-3))
    context: LoopSettings = field(default_factory=lambda: LoopSettings(steps=1200, lr=2e-3))
    clip: LoopSettings = field(default_factory=lambda: LoopSettings(steps=1500, lr=1e-3))
    batch: int = 64
    noise_offset: float = 0.1  # UNet training noise (train_base.diffusion_loss)
    vae_batch: int = 24
    workers: int = 2
    eval_people: int = 200

    @classmethod
    def tiny(cls) -> BuildConfig:
        """A few steps of everything (tests)."""

        def few(n: int = 3, **kw) -> LoopSettings:
            return LoopSettings(steps=n, lr=1e-3, warmup=1, checkpoint_every=2, **kw)

        return cls(
            sizes=WorldSizes.tiny(),
            n_known=12,
            n_new=6,
            images_per_known=3,
            n_anonymous=20,
            n_negatives=8,
            heldout_per_new=2,
            n_reference_people=2,
            vae=few(),
            text=few(),
            unet=few(ema=0.9),
            recognizer=few(),
            detector=few(),
            context=few(),
            clip=few(),
            batch=4,
            vae_batch=4,
            workers=1,
            eval_people=4,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sizes"] = self.sizes.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BuildConfig:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}  # older worlds' extras
        d["sizes"] = WorldSizes.from_dict(d["sizes"])
        for k, v in d.items():
            if isinstance(v, dict) and "steps" in v:
                d[k] = LoopSettings(**v)
        return cls(**d)


def build_world(
    out: str | os.PathLike,
    config: BuildConfig | None = None,
    *,
    work: str | os.PathLike | None = None,
    progress: bool = True,
    stages: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Build (or resume building) the world into `out`.

    Args:
        out: the world folder.
        config: build settings; on a rerun the settings saved in `out/world.json` must match.
        work: scratch folder for the pool, checkpoints and logs (default `out/.build`).
        progress: progress bars.
        stages: run only these stages (default all, in order).
        log: where one-line stage messages go.
    """
    import torch

    from ..errors import SamefaceError
    from . import train_vision, train_world

    out = Path(out)
    config = config or BuildConfig()
    work = Path(work) if work is not None else out / ".build"
    meta_path = out / "world.json"
    settings = config.to_dict()
    if meta_path.is_file():
        saved = json.loads(meta_path.read_text()).get("build")
        # Settings this version no longer has (an older world's) do not count.
        saved = {k: v for k, v in (saved or {}).items() if k in settings} or None
        if saved is not None and _without_steps(saved) != _without_steps(settings):
            raise SamefaceError(
                f"{out} was started with other build settings; use a new folder or the same settings"
            )
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        meta_path,
        {
            "world_version": WORLD_VERSION,
            "build": settings,
            "torch": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    # All cores unless OMP_NUM_THREADS says otherwise (e.g. two builds side by side).
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    plan = [
        ("people", train_world.stage_people),
        ("pool", train_world.stage_pool),
        ("vae", train_world.stage_vae),
        ("latents", train_world.stage_latents),
        ("text", train_world.stage_text),
        ("unet", train_world.stage_unet),
        ("faces", train_vision.stage_faces_data),
        ("recognizer", train_vision.stage_recognizer),
        ("judge", train_vision.stage_judge),
        ("detector", train_vision.stage_detector),
        ("context", train_vision.stage_context),
        ("clip", train_vision.stage_clip),
        ("references", train_world.stage_references),
        ("quality", train_world.stage_quality),
    ]
    unknown = set(stages or []) - {n for n, _ in plan}
    if unknown:
        raise SamefaceError(
            f"unknown stage(s) {sorted(unknown)}; stages: {', '.join(n for n, _ in plan)}"
        )
    for name, fn in plan:
        marker = work / "done" / f"{name}.json"
        if stages and name not in stages:
            continue
        if marker.is_file() and not stages:
            log(f"[{name}] done earlier")
            continue
        t0 = time.perf_counter()
        log(f"[{name}] ...")
        info = fn(config, out, work, progress) or {}
        write_json_atomic(marker, info | {"seconds": round(time.perf_counter() - t0, 1)})
        log(f"[{name}] finished in {time.perf_counter() - t0:.0f} s")
    return out


def _without_steps(settings: dict) -> dict:
    """Build settings minus step counts: training longer continues from the last checkpoint
    (rerun the stage, e.g. `--stage unet --unet-steps 12000`, then `--stage quality`)."""
    return {
        k: ({kk: vv for kk, vv in v.items() if kk != "steps"} if isinstance(v, dict) else v)
        for k, v in settings.items()
    }
