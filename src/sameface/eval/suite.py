"""Benchmark suites: who, which prompts, which seeds, at what settings (a YAML file)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OutputError, SamefaceError
from ..fileio import safe_name
from ..imageio import IMAGE_SUFFIXES
from .style import StyleReference, WorldStyles, parse_style, style_problems

WORLD_IDENTITIES = "world"
"""`identities: world` in a suite: every reference person of the miniature world in use."""


@dataclass
class SuiteIdentity:
    """One person: a name, their reference photos, and optionally a style reference
    (`sameface.eval.style`) for prompts that name `<style>`."""

    name: str
    photos: list[Path]
    style: StyleReference | None = None


@dataclass
class Suite:
    """A benchmark protocol.

    Attributes:
        name: suite name (reports use it).
        identities: people and their reference photos.
        prompts: prompts naming the person with `placeholder`.
        seeds: one image per seed per prompt.
        resolution: image size in pixels; None = the base model's.
        num_inference_steps: sampling steps.
        guidance_scale: CFG scale; None = the pipeline's default.
        negative_prompt: optional negative prompt.
        placeholder: the word prompts use for the person.
        methods: per-method settings, e.g. {"textual-inversion": {"steps": 400}}; a
            `method@variant` key declares a variant with its own settings on top
            (`sameface.eval.variants`).
        run: the methods and variants `bench` runs when it is given no `--methods`.
        training_seeds: config seeds an optimisation method personalises with, one artifact
            each (the report shows the spread between them); None = once, at the config's seed.
        description: free text (the protocol's source).
        path: the YAML file it came from.
    """

    name: str
    identities: list[SuiteIdentity]
    prompts: list[str]
    seeds: list[int]
    resolution: int | None = None
    num_inference_steps: int = 50
    guidance_scale: float | None = None
    negative_prompt: str | None = None
    placeholder: str = "<id>"
    methods: dict = field(default_factory=dict)
    run: list[str] = field(default_factory=list)
    training_seeds: list[int] | None = None
    description: str = ""
    path: Path | None = None

    def __post_init__(self) -> None:
        errors = []
        if not self.identities:
            errors.append("no identities")
        if not self.prompts:
            errors.append("no prompts")
        missing = [p for p in self.prompts if self.placeholder not in p]
        if missing:
            errors.append(f"prompt {missing[0]!r} does not contain {self.placeholder}")
        if not self.seeds:
            errors.append("no seeds")
        for i in self.identities:  # names become folders and files of the run
            try:
                safe_name(i.name, what="identity name")
            except OutputError as e:
                errors.append(str(e))
                break
        if len({i.name for i in self.identities}) != len(self.identities):
            errors.append("identity names must be unique")
        if self.num_inference_steps < 1:
            errors.append("num_inference_steps must be >= 1")
        errors += self._method_problems()
        errors += style_problems(self.prompts, [i.style for i in self.identities], self.placeholder)
        if errors:
            where = f"{self.path}: " if self.path else ""
            raise SamefaceError(f"{where}invalid suite: " + "; ".join(errors))

    def _method_problems(self) -> list[str]:
        """Bad variant labels, and `run` entries naming an undeclared variant."""
        from .variants import check_label, split_label

        errors = []
        for label in [*self.methods, *self.run]:
            try:
                check_label(label)
            except SamefaceError as e:
                errors.append(str(e))
        for label in self.run:
            if split_label(label)[1] is not None and label not in self.methods:
                errors.append(f"run names {label!r}, which `methods:` does not declare")
        if len(set(self.run)) != len(self.run):
            errors.append("run lists a method twice")
        if self.training_seeds is not None and (
            not self.training_seeds or len(set(self.training_seeds)) != len(self.training_seeds)
        ):
            errors.append("training_seeds must be distinct seeds, at least one")
        return errors

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "identities": [
                {"name": i.name, "photos": [str(p) for p in i.photos]}
                | (
                    {}
                    if i.style is None
                    else {
                        "style_reference": {"image": str(i.style.image), "prompt": i.style.prompt}
                    }
                )
                for i in self.identities
            ],
            "prompts": self.prompts,
            "seeds": self.seeds,
            "resolution": self.resolution,
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "negative_prompt": self.negative_prompt,
            "placeholder": self.placeholder,
            "methods": self.methods,
            "run": self.run,
            "training_seeds": self.training_seeds,
            "description": self.description,
        }


def load_suite(
    path: str | os.PathLike,
    world_people: Mapping[str, list[Path]] | None = None,
    world_styles: WorldStyles | None = None,
) -> Suite:
    """Read a suite YAML file; photo paths are relative to the file.

    YAML keys: name, description, identities (list of {name, photos: [files or folders]}, a
    folder holding one sub-folder per person, or `world`: the reference people of the world
    in use), max_identities (only the first N people), photos_per_identity (use only each
    person's first N photos), prompts, seeds or
    images_per_prompt, resolution, num_inference_steps, guidance_scale, negative_prompt,
    placeholder, methods (settings per method, and per `method@variant`), run (the methods and
    variants to run when `bench` gets no `--methods`), training_seeds, style_reference (for the
    suite, or per identity; `sameface.eval.style`).

    Args:
        path: the YAML file.
        world_people: {name: photo paths} that `identities: world` stands for
            (`World.reference_people()`); None when no world is in use.
        world_styles: draws the references of a `style_reference: {world: [...]}` suite
            (`sameface.eval.style.world_style_references`); None when no world is in use.

    Raises:
        SamefaceError: unreadable file, missing photos, `identities: world` without a world,
            or an invalid protocol.
    """
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SamefaceError(f"{path}: cannot read suite ({e})") from None
    if not isinstance(doc, dict):
        raise SamefaceError(f"{path}: a suite is a YAML mapping")
    from .suite_check import check_suite_fields

    check_suite_fields(path, doc)
    root = path.parent
    ids = doc.get("identities")
    if ids == WORLD_IDENTITIES:
        if world_people is None:
            raise SamefaceError(
                f"{path}: `identities: world` needs a world; run it with `sameface bench --world`"
            )
        ids = [{"name": n, "photos": [str(p) for p in ps]} for n, ps in world_people.items()]
    elif isinstance(ids, str):  # a folder with one sub-folder per person
        folder = _resolve(root, ids)
        ids = [
            {"name": d.name, "photos": [str(d)]}
            for d in sorted(folder.iterdir())
            if d.is_dir() and not d.name.startswith(".")
        ]
    per_identity = doc.get("photos_per_identity")
    max_identities = doc.get("max_identities")
    for key, val in (("photos_per_identity", per_identity), ("max_identities", max_identities)):
        if val is not None and (not isinstance(val, int) or val < 1):
            raise SamefaceError(f"{path}: {key} must be a positive integer")
    ids = (ids or [])[:max_identities] if isinstance(ids, list) else ids
    identities = []
    for item in ids or []:
        if not isinstance(item, dict) or "name" not in item or "photos" not in item:
            raise SamefaceError(f"{path}: each identity needs a name and photos")
        photos = []
        for p in item["photos"] if isinstance(item["photos"], list) else [item["photos"]]:
            q = _resolve(root, p)
            photos += (
                sorted(x for x in q.iterdir() if x.suffix.lower() in IMAGE_SUFFIXES)
                if q.is_dir()
                else [q]
            )
        if not photos:
            raise SamefaceError(f"{path}: identity {item['name']!r} has no photos")
        style = item.get("style_reference")
        if style is not None:
            where = f"{path}: identity {item['name']!r} style_reference"
            style = parse_style(style, where, lambda p: _resolve(root, p))
        identities.append(SuiteIdentity(str(item["name"]), photos[:per_identity], style))
    _suite_style(doc, path, identities, world_styles, lambda p: _resolve(root, p))
    seeds = doc.get("seeds")
    if seeds is None:
        seeds = list(range(int(doc.get("images_per_prompt", 1))))
    return Suite(
        name=str(doc.get("name", path.stem)),
        identities=identities,
        prompts=[str(p) for p in doc.get("prompts") or []],
        seeds=[int(s) for s in seeds],
        resolution=doc.get("resolution"),
        num_inference_steps=int(doc.get("num_inference_steps", 50)),
        guidance_scale=doc.get("guidance_scale"),
        negative_prompt=doc.get("negative_prompt"),
        placeholder=str(doc.get("placeholder", "<id>")),
        methods=dict(doc.get("methods") or {}),
        run=[str(m) for m in doc.get("run") or []],
        training_seeds=None
        if doc.get("training_seeds") is None
        else [int(s) for s in doc["training_seeds"]],
        description=str(doc.get("description", "")),
        path=path,
    )


def _suite_style(doc: dict, path: Path, identities: list, world_styles, resolve) -> None:
    """Give the suite's `style_reference` to every identity without one of its own."""
    value = doc.get("style_reference")
    if value is None:
        return
    where = f"{path}: style_reference"
    style = parse_style(value, where, resolve, world_ok=doc.get("identities") == WORLD_IDENTITIES)
    if isinstance(style, list) and world_styles is None:
        raise SamefaceError(f"{where}: `world:` references need a world; run with --world")
    for i, ident in enumerate(identities):
        if ident.style is None:
            if isinstance(style, list):
                placeholder = str(doc.get("placeholder", "<id>"))
                ident.style = world_styles(i, style[i % len(style)], placeholder)
            else:
                ident.style = style


def _resolve(root: Path, p: str) -> Path:
    q = Path(os.path.expandvars(str(p))).expanduser()
    q = q if q.is_absolute() else root / q
    if not q.exists():
        raise SamefaceError(f"suite photo path not found: {q}")
    return q


def shipped_suites() -> dict[str, Path]:
    """Suites that ship with sameface, by name."""
    from importlib.resources import files

    folder = Path(str(files("sameface") / "eval" / "suites"))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}
