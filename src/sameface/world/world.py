"""Loading a built world: its base model, CLIP, face models, people and reference photos."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError, SamefaceError

ENV = "SAMEFACE_WORLD"
"""Environment variable naming a world folder to use instead of the shipped one."""
CELEBS = "celebs"
"""Sub-folder of a world holding the celebrity bank of its known people (optional)."""


def shipped_world_path() -> Path:
    """The world that ships inside the package (`sameface/world/shipped`)."""
    from importlib.resources import files

    return Path(str(files("sameface.world") / "shipped"))


def resolve_world(folder: str | os.PathLike | None = None) -> Path:
    """`folder`, else `$SAMEFACE_WORLD`, else the shipped world; it must hold a built world.

    Raises:
        ModelNotFoundError: no built world there.
    """
    path = Path(folder or os.environ.get(ENV) or shipped_world_path()).expanduser()
    missing = [
        p for p in ("world.json", "people.json", "base", "faces", "clip") if not (path / p).exists()
    ]
    if missing:
        raise ModelNotFoundError(
            f"{path} is not a built world (missing {', '.join(missing)}); build one with "
            f"`sameface world build --out {path}` (about 3 h on 2 CPU cores)"
        )
    return path


@dataclass
class World:
    """A built world folder. Models load on first use and are cached on the object."""

    folder: Path

    @classmethod
    def load(cls, folder: str | os.PathLike | None = None) -> World:
        return cls(resolve_world(folder))

    @cached_property
    def meta(self) -> dict:
        return json.loads((self.folder / "world.json").read_text())

    @cached_property
    def people(self) -> tuple[Any, Any]:
        """(known, new) `People`."""
        from .people import People

        return People.load(self.folder / "people.json")

    @property
    def image_size(self) -> int:
        return int(self.meta["build"]["sizes"]["image_size"])

    @cached_property
    def base(self) -> Any:
        """The text-to-image model as a sameface `BaseModel` (float32 on the CPU)."""
        import torch

        from ..models import load_base_model

        return load_base_model(self.folder / "base", dtype=torch.float32)

    @cached_property
    def clip(self) -> Any:
        """The world's CLIP as a `ClipScorer` (float32)."""
        from ..models.clip import ClipScorer

        scorer = ClipScorer.load(self.folder / "clip")
        scorer.model.float()
        scorer.name = "world-clip"
        return scorer

    @cached_property
    def recognizer(self) -> Any:
        from .faces import WorldRecognizer

        return WorldRecognizer(self.folder / "faces")

    @cached_property
    def judge(self) -> Any | None:
        """The scoring-only recogniser (`faces/judge.*`), or None in a world built without it."""
        from .faces import JUDGE, WorldRecognizer

        if not (self.folder / "faces" / f"{JUDGE}.json").is_file():
            return None
        return WorldRecognizer(self.folder / "faces", JUDGE)

    @cached_property
    def detector(self) -> Any:
        from .faces import WorldDetector

        return WorldDetector(self.folder / "faces")

    @cached_property
    def context(self) -> Any:
        from .faces import ContextClassifier

        return ContextClassifier(self.folder / "faces")

    @cached_property
    def celebrity_bank(self) -> Any | None:
        """The bank of the world's known people (`sameface celebs build --world --out
        WORLD/celebs`): textual inversion's `id` and `rand2` inits; None when not built."""
        folder = self.folder / CELEBS
        if not (folder / "bank.json").is_file():
            return None  # none, or a build still under way (only its parts/ so far)
        from ..data.celebs import CelebrityBank

        return CelebrityBank.load(folder)

    def analyzer(self, recognizer: Any | None = None) -> Any:
        """A `FaceAnalyzer` with the world's detector and recogniser (or `recognizer`)."""
        from ..faces import FaceAnalyzer
        from .faces import MIN_FACE_SIZE

        return FaceAnalyzer(
            recognizer or self.recognizer, detector=self.detector, min_face_size=MIN_FACE_SIZE
        )

    def reference_people(self) -> dict[str, list[Path]]:
        """Evaluation new people with their shipped reference photos, by folder name."""
        root = self.folder / "references"
        return (
            {d.name: sorted(d.glob("*.png")) for d in sorted(root.iterdir()) if d.is_dir()}
            if root.is_dir()
            else {}
        )

    def render_style_reference(
        self, out_dir: str | os.PathLike, index: int, caption: str, seed: int = 0
    ) -> tuple[Path, Any]:
        """A style reference portrait for suite identity `index`: held-out new person `index`
        (counting past the reference people, so no suite identity) in the context `caption`
        asks for (what it leaves unsaid: `Context`'s defaults), saved as
        `out_dir/<index>_<Name>_<context hash>.png`. Returns (path, context); the same arguments give the
        same pixels."""
        import numpy as np

        from ..imageio import save_image_atomic
        from .captions import CAPTION_WORDS, parse_caption
        from .render import Context, render

        unknown = [w for w in re.findall(r"[a-z-]+", caption.lower()) if w not in CAPTION_WORDS]
        if unknown:
            raise SamefaceError(
                f"the world's captions have no word {unknown[0]!r} ({caption!r}); "
                "see sameface.world.captions for the grammar"
            )
        _, new = self.people
        first = len(self.reference_people())
        if len(new) <= first:
            raise SamefaceError("this world has no held-out people to draw style references of")
        person = first + index % (len(new) - first)
        _, attrs = parse_caption(caption)
        context = Context(**attrs)
        rng = np.random.default_rng([seed, person])
        name = new.names[person].replace(" ", "_")
        # The context and seed are in the name: an edited suite never reuses a stale portrait.
        key = hashlib.sha256(json.dumps([context.to_dict(), seed]).encode()).hexdigest()[:8]
        path = Path(out_dir) / f"{index:03d}_{name}_{key}.png"
        if not path.is_file():
            image = render(new.params[person], context, size=self.image_size, rng=rng).image
            save_image_atomic(image, path)
        return path, context

    def render_known_references(
        self, out_dir: str | os.PathLike, count: int, per_person: int = 4, seed: int = 0
    ) -> list[tuple[str, list[Path]]]:
        """Reference photos of the first `count` known people, rendered deterministically.

        Plain photos (portrait framing, no accessories) over random plain backgrounds, saved as
        `out_dir/<Name_With_Underscores>/<k>.png`; the same arguments give the same pixels.
        """
        import numpy as np

        from ..imageio import save_image_atomic
        from .render import Context, render

        known, _ = self.people
        people = []
        for i, name in enumerate(known.names[:count]):
            params = known.params[i]
            rng = np.random.default_rng([seed, i])
            paths = []
            for k in range(per_person):
                ctx = Context(background=Context.random(rng).background)
                path = Path(out_dir) / name.replace(" ", "_") / f"{k}.png"
                save_image_atomic(render(params, ctx, size=self.image_size, rng=rng).image, path)
                paths.append(path)
            people.append((name, paths))
        return people
