"""Captions of the miniature world: writing them from a context and parsing prompts back.

Caption grammar (every part but the subject optional)::

    a [close-up |wide-shot ]{photo|sketch|painting|picture} of {subject}
      [ wearing a hat, glasses and a scarf][, [{pattern} ][{colour} ]background]
"""

from __future__ import annotations

import re
from types import MappingProxyType

import numpy as np

from sameface.world.render import ACCESSORIES, BACKGROUNDS, FRAMINGS, PATTERNS, STYLES, Context

MENTIONABLE: tuple[str, ...] = ("background", "pattern", "accessories", "style", "framing")
"""Attribute groups `write_caption(mention=...)` accepts."""

FRAMING_WORDS = MappingProxyType({"close-up": "close-up ", "portrait": "", "wide": "wide-shot "})
ACCESSORY_PHRASES = MappingProxyType({"hat": "a hat", "glasses": "glasses", "scarf": "a scarf"})
NO_STYLE_WORD = "picture"
PERSON = "a person"

_GLUE = ("a", "an", "the", "of", "person", "picture", "wearing", "and", "with", "without")
_GLUE += ("background", "in", "on", "no", "close", "up", "close-up", "closeup", "wide")
_GLUE += ("shot", "wide-shot", "portrait", "photograph", "drawing", "pencil", "oil", "stripes")
_GLUE += ("dots", "polka", "dot", "spectacles", "sunglasses", "someone")
CAPTION_WORDS: tuple[str, ...] = tuple(
    dict.fromkeys((*BACKGROUNDS, *PATTERNS, *ACCESSORIES, *STYLES, *FRAMINGS, *_GLUE))
)
"""Every word the captions (and the parser) use; invented names must avoid them."""

_STYLE_RE = re.compile(r"\b(photo|photograph|sketch|drawing|painting|picture)s?\b")
_STYLE_OF = MappingProxyType(
    {"photo": "photo", "photograph": "photo", "sketch": "sketch", "drawing": "sketch"}
    | {"painting": "painting"}
)
_FRAMING_RE = (
    ("close-up", re.compile(r"\bclose[- ]?ups?\b")),
    ("wide", re.compile(r"\bwide(?:[- ]?shot)?\b")),
    ("portrait", re.compile(r"\bportraits?\b")),
)
_ACCESSORY_RE = MappingProxyType(
    {"hat": r"hats?", "glasses": r"(?:sun)?glasses|spectacles", "scarf": r"scarf|scarves"}
)
_PATTERN_WORDS = r"plain|striped|stripy|dotted|polka[- ]dot(?:ted)?|spotted"
_COLOUR_WORDS = "|".join(BACKGROUNDS)
_BG_RE = re.compile(
    rf"\b(?:({_PATTERN_WORDS})\s+)?(?:({_COLOUR_WORDS})\s+)?(?:({_PATTERN_WORDS})\s+)?"
    r"(?:backgrounds?|backdrops?)\b"
)
_SUBJECT_RE = re.compile(
    r"\bof\s+(.+?)(?=\s+wearing\b|\s+with(?:out)?\b|\s+on\b|\s+in\b|\s+against\b|,|$)"
)


def _pattern_of(word: str | None) -> str | None:
    if not word:
        return None
    if word.startswith(("plain",)):
        return "plain"
    if word.startswith(("strip",)):
        return "striped"
    return "dotted"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def write_caption(
    subject: str,
    context: Context,
    *,
    rng: np.random.Generator | None = None,
    mention: set[str] | frozenset[str] | None = None,
) -> str:
    """Describe `subject` (a name or "a person") in `context`.

    `mention` names the attribute groups to spell out (`MENTIONABLE`); None means all of them,
    or, when `rng` is given, each independently with probability 0.7.
    """
    if mention is None:
        mention = {m for m in MENTIONABLE if rng is None or rng.random() < 0.7}
    unknown = set(mention) - set(MENTIONABLE)
    if unknown:
        raise ValueError(f"cannot mention {sorted(unknown)}; expected some of {MENTIONABLE}")
    style = context.style if "style" in mention else NO_STYLE_WORD
    framing = FRAMING_WORDS[context.framing] if "framing" in mention else ""
    text = f"a {framing}{style} of {subject}"
    worn = [ACCESSORY_PHRASES[a] for a in ACCESSORIES if getattr(context, a)]
    if "accessories" in mention and worn:
        text += " wearing " + _join(worn)
    bg = []
    if "pattern" in mention:
        bg.append(context.pattern)
    if "background" in mention:
        bg.append(context.background)
    if bg:
        text += ", " + " ".join(bg) + " background"
    return text


def parse_caption(text: str, names: list[str] | None = None) -> tuple[str | None, dict]:
    """The subject and the attributes a caption or prompt asks for explicitly.

    Returns (subject, attrs): subject is the matching entry of `names` when one occurs in the
    text, else the phrase after "of" (e.g. "<id>"), or None for "a person"/none. `attrs` holds
    only the keys the text states: background, pattern, style, framing, and hat/glasses/scarf
    (True when worn, False when negated as "without glasses"/"no hat").
    """
    low = " ".join(text.lower().split())
    attrs: dict[str, object] = {}

    m = _STYLE_RE.search(low)
    if m and m.group(1) in _STYLE_OF:
        attrs["style"] = _STYLE_OF[m.group(1)]
    for framing, rx in _FRAMING_RE:
        if rx.search(low):
            attrs["framing"] = framing
            break
    for acc, words in _ACCESSORY_RE.items():
        hit = re.search(rf"(\bwithout\s+(?:an?\s+|any\s+)?|\bno\s+)?\b(?:{words})\b", low)
        if hit:
            attrs[acc] = hit.group(1) is None
    bg = _BG_RE.search(low)
    if bg:
        if bg.group(2):
            attrs["background"] = bg.group(2)
        pattern = _pattern_of(bg.group(1) or bg.group(3))
        if pattern:
            attrs["pattern"] = pattern
    if "pattern" not in attrs:
        if re.search(r"\bstripe[sd]?\b|\bstripy\b", low):
            attrs["pattern"] = "striped"
        elif re.search(r"\b(?:polka[- ])?dots\b|\bdotted\b", low):
            attrs["pattern"] = "dotted"

    subject: str | None = None
    for name in names or ():
        if re.search(rf"(?<!\w){re.escape(name.lower())}(?!\w)", low):
            subject = name
            break
    if subject is None:
        sm = _SUBJECT_RE.search(low)
        if sm:
            phrase = sm.group(1).strip()
            if phrase not in (PERSON, "person", "someone", "somebody", "a man", "a woman"):
                start = low.find(phrase, sm.start(1))
                subject = " ".join(text.split())[start : start + len(phrase)]
    return subject, attrs


def context_from_caption(text: str, rng: np.random.Generator) -> Context:
    """A full context: what `text` asks for, everything else sampled from `rng`."""
    _, attrs = parse_caption(text)
    return Context.random(rng, **attrs)


def random_mention(rng: np.random.Generator, p: float = 0.7) -> set[str]:
    """Each attribute group of `MENTIONABLE` independently with probability `p`."""
    return {m for m in MENTIONABLE if rng.random() < p}
