"""Style references in benchmark suites: a portrait whose style and context the outputs should
take (MagiCapture's task), given per suite or per identity.

A prompt that names `STYLE_PLACEHOLDER` ("a <style> of <id>") stands for the reference. A
method that learns from a reference (`MethodSpec.style_field`) gets the reference and the
prompt as written; every other row — the baselines, textual inversion — gets the reference
*described in words* instead, the identity's `StyleReference.prompt` ("a sketch of <id>
wearing a hat, striped red background"). Images are scored against those words (CLIP-T, the
context the classifier should read), and for leakage against the reference's face: how much
the output looks like the person in the reference, who should not come through.

YAML::

    style_reference: {image: ref.png, prompt: "an oil painting of <id>, dark background"}
    identities:
      - {name: ada, photos: [ada/], style_reference: {image: ..., prompt: ...}}  # per identity

    # in the world: each person gets a portrait of another (held-out) world person, drawn in
    # the context the caption asks for (cycled over the identities)
    style_reference:
      world: ["a sketch of a person wearing a hat, striped red background", ...]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SamefaceError

STYLE_PLACEHOLDER = "<style>"
"""The word a suite's prompts use for the style reference."""

WORLD_KEY = "world"
STYLE_REFERENCES = "style_references"
"""Sub-folder of a run holding the references the world drew for it."""


@dataclass(frozen=True)
class StyleReference:
    """A style reference portrait and the same style in words.

    Attributes:
        image: the portrait (its face belongs to someone other than the identity).
        prompt: a whole prompt with the identity's placeholder that describes the reference's
            style and context in words: what rows without a reference are given, and what
            every image is scored against.
    """

    image: Path
    prompt: str


def uses_style(prompts: list[str]) -> bool:
    """Whether any prompt names the style reference."""
    return any(STYLE_PLACEHOLDER in p for p in prompts)


def style_problems(prompts: list[str], styles: list[StyleReference | None], placeholder: str):
    """What is wrong with a suite's style references (an empty list when nothing is)."""
    if not uses_style(prompts):
        if any(s is not None for s in styles):
            return [f"style references are given but no prompt names {STYLE_PLACEHOLDER}"]
        return []
    errors = []
    if any(s is None for s in styles):
        errors.append(
            f"a prompt names {STYLE_PLACEHOLDER}, so every identity needs a style_reference "
            "(per identity, or one for the suite)"
        )
    for s in styles:
        if s is not None and (placeholder not in s.prompt or STYLE_PLACEHOLDER in s.prompt):
            errors.append(
                f"a style_reference prompt names the person with {placeholder} and describes the "
                f"style in words, without {STYLE_PLACEHOLDER}: {s.prompt!r}"
            )
            break
    return errors


def words_prompts(prompts: list[str], style: StyleReference | None) -> list[str]:
    """The prompts with every one naming the style replaced by the style in words."""
    if style is None:
        return list(prompts)
    return [style.prompt if STYLE_PLACEHOLDER in p else p for p in prompts]


def parse_style(
    value: Any, where: str, resolve: Callable[[str], Path], *, world_ok: bool = False
) -> StyleReference | list[str]:
    """A suite's `style_reference` value: a `StyleReference`, or (in the world, `world_ok`) the
    captions of the contexts the world draws references in."""
    if isinstance(value, dict) and set(value) == {WORLD_KEY}:
        captions = value[WORLD_KEY]
        if not world_ok:
            raise SamefaceError(
                f"{where}: `world:` references need `identities: world` and --world"
            )
        if (
            not isinstance(captions, list)
            or not captions
            or not all(isinstance(c, str) and c.strip() and len(c) <= 500 for c in captions)
        ):
            raise SamefaceError(f"{where}.world must be a list of captions (text)")
        return [str(c) for c in captions]
    if not isinstance(value, dict) or set(value) != {"image", "prompt"}:
        raise SamefaceError(f"{where} must be a mapping with image and prompt")
    image, prompt = value["image"], value["prompt"]
    if not isinstance(image, str) or not isinstance(prompt, str) or len(prompt) > 2000:
        raise SamefaceError(
            f"{where}: image is a path and prompt a text of at most 2000 characters"
        )
    if len(image) > 4096:
        raise SamefaceError(f"{where}: image path is {len(image)} characters; at most 4096")
    from ..imageio import IMAGE_SUFFIXES

    path = resolve(image)
    if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
        raise SamefaceError(f"{where}: {path} is not an image file ({', '.join(IMAGE_SUFFIXES)})")
    return StyleReference(path, prompt)


WorldStyles = Callable[[int, str, str], StyleReference]
"""(identity index, caption, the suite's placeholder) -> that identity's reference, drawn by
the world."""


def world_style_references(world: Any, out_dir: Path) -> WorldStyles:
    """References drawn in `world`: identity i's shows held-out new person i (one not among the
    world's reference people, so no suite identity) in the caption's context, saved under
    `out_dir`; its words are the world's caption of that context, naming the person with the
    suite's placeholder."""

    def draw(index: int, caption: str, placeholder: str) -> StyleReference:
        path, context = world.render_style_reference(out_dir, index, caption)
        from ..world.captions import write_caption

        return StyleReference(path, write_caption(placeholder, context))

    return draw


def leakage(face: Any, reference: Any) -> float:
    """Face similarity of a generated face to the style reference's face (a miss counts 0)."""
    if face.embedding is None or reference is None:
        return 0.0
    return float(face.embedding @ reference)


__all__ = [
    "STYLE_PLACEHOLDER",
    "STYLE_REFERENCES",
    "StyleReference",
    "WorldStyles",
    "leakage",
    "parse_style",
    "style_problems",
    "uses_style",
    "words_prompts",
    "world_style_references",
]
