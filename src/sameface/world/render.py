"""Procedural portrait renderer: an identity vector + a context -> a small RGB portrait.

Everything is drawn with PIL at 4x the output size in a canonical frame, warped by a small
random pose jitter, composited over the background, stylised and downsampled. The face box,
the five landmarks and the skin mask are carried through the same affine map, so they are
exact in the output image.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

IDENTITY_FIELDS: tuple[str, ...] = (
    "skin_tone",
    "hair_hue",
    "hair_lightness",
    "hair_style",
    "face_width",
    "face_length",
    "eye_size",
    "eye_spacing",
    "eye_hue",
    "brow_thickness",
    "brow_tilt",
    "nose_length",
    "nose_width",
    "mouth_width",
    "lip_tone",
    "beard",
    "ear_size",
)
"""Names of the identity vector's entries; each value lies in [0, 1]."""

IDENTITY_DIM = len(IDENTITY_FIELDS)

HAIR_STYLES = ("bald", "short crop", "long straight", "bun", "curly", "side part")
BEARDS = ("none", "stubble", "moustache", "full")
_BEARD_EDGES = (0.45, 0.65, 0.8)  # identity["beard"] bins: none < .45 <= stubble < .65 ...

BACKGROUND_RGB = MappingProxyType(
    {
        "red": (212, 34, 40),
        "orange": (244, 132, 18),
        "yellow": (244, 214, 38),
        "green": (42, 158, 58),
        "teal": (18, 148, 148),
        "blue": (38, 78, 208),
        "purple": (118, 48, 168),
        "pink": (246, 138, 190),
        "white": (244, 244, 244),
        "black": (22, 22, 22),
    }
)
BACKGROUNDS: tuple[str, ...] = tuple(BACKGROUND_RGB)
PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted")
ACCESSORIES: tuple[str, ...] = ("hat", "glasses", "scarf")
STYLES: tuple[str, ...] = ("photo", "sketch", "painting")
FRAMINGS: tuple[str, ...] = ("close-up", "portrait", "wide")
FRAMING_SCALE = MappingProxyType({"close-up": 1.25, "portrait": 1.0, "wide": 0.78})
_FRAMING_CENTRE_Y = MappingProxyType({"close-up": 0.5, "portrait": 0.46, "wide": 0.44})

_SKIN = ((255, 226, 200), (243, 198, 165), (226, 174, 132), (200, 138, 96), (160, 102, 66))
_SKIN += ((112, 70, 46), (70, 45, 32))
_IRIS = ((92, 56, 30), (176, 116, 40), (72, 134, 70), (62, 112, 196), (128, 136, 148))
_LIPS = ((226, 142, 142), (204, 84, 96), (178, 40, 58), (118, 38, 70), (134, 76, 66))
_ACCESSORY_COLOURS = (
    (24, 24, 28), (200, 30, 40), (30, 70, 200), (240, 200, 40), (30, 140, 70), (250, 250, 250),
    (130, 60, 170), (240, 120, 20), (110, 70, 40), (20, 160, 170), (240, 130, 180),
)  # fmt: skip
_CANVAS_CY = 0.42  # canonical face centre (units of the drawing size)
_LAYER_H = 1.32  # layer height / drawing size: room for shoulders when zoomed out


@dataclass(frozen=True)
class Context:
    """Everything about a portrait that is not the person.

    Attributes:
        background: one of `BACKGROUNDS`.
        pattern: one of `PATTERNS`.
        hat, glasses, scarf: accessories worn.
        style: one of `STYLES`.
        framing: one of `FRAMINGS`.
    """

    background: str = "white"
    pattern: str = "plain"
    hat: bool = False
    glasses: bool = False
    scarf: bool = False
    style: str = "photo"
    framing: str = "portrait"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("background", BACKGROUNDS),
            ("pattern", PATTERNS),
            ("style", STYLES),
            ("framing", FRAMINGS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected one of {allowed}")
        for name in ACCESSORIES:
            object.__setattr__(self, name, bool(getattr(self, name)))

    @classmethod
    def random(cls, rng: np.random.Generator, **fixed: object) -> Context:
        """A uniformly random context; keyword arguments pin attributes."""
        values: dict[str, object] = {
            "background": BACKGROUNDS[rng.integers(len(BACKGROUNDS))],
            "pattern": PATTERNS[rng.integers(len(PATTERNS))],
            "hat": bool(rng.random() < 0.5),
            "glasses": bool(rng.random() < 0.5),
            "scarf": bool(rng.random() < 0.5),
            "style": STYLES[rng.integers(len(STYLES))],
            "framing": FRAMINGS[rng.integers(len(FRAMINGS))],
        }
        values.update(fixed)
        return cls(**values)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Context:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Render:
    """One rendered portrait.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        box: (x0, y0, x1, y1) face box in pixels (forehead to chin, cheek to cheek).
        landmarks: (5, 2) float32 in `sameface.faces.types.LANDMARK_NAMES` order.
        mask: (H, W) float32 face-skin mask in [0, 1] (hair, beard and hat cut out).
        face_mask: (H, W) float32 facial mask in [0, 1], what a face parser calls the face:
            the face outline with everything on it (moustache, beard, fringe, glasses), the
            hat cut out.
        head_mask: (H, W) float32 face and hair mask in [0, 1] (a face parser's face and hair
            classes), the hat cut out.
    """

    image: np.ndarray
    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    mask: np.ndarray
    face_mask: np.ndarray
    head_mask: np.ndarray


# ----------------------------------------------------------------------------- colours


def _lerp_palette(palette: tuple[tuple[int, int, int], ...], t: float) -> np.ndarray:
    x = float(np.clip(t, 0.0, 1.0)) * (len(palette) - 1)
    i = min(int(x), len(palette) - 2)
    f = x - i
    return np.asarray(palette[i], np.float32) * (1 - f) + np.asarray(palette[i + 1]) * f


def _mix(a: object, b: object, t: float) -> np.ndarray:
    return np.asarray(a, np.float32) * (1 - t) + np.asarray(b, np.float32) * t


def _rgb(c: object, alpha: int = 255) -> tuple[int, int, int, int]:
    r, g, b = (min(255, max(0, round(float(v)))) for v in c)  # type: ignore[attr-defined]
    return (r, g, b, alpha)


def _hair_rgb(hue: float, lightness: float) -> np.ndarray:
    """Realistic hair colours: hue runs ash -> golden -> copper, lightness black -> pale."""
    base = _lerp_palette(((118, 108, 98), (150, 112, 58), (164, 70, 32)), hue)
    pale = _lerp_palette(((226, 222, 214), (236, 210, 146), (228, 152, 96)), hue)
    if lightness < 0.5:
        return _mix((20, 17, 15), base, lightness / 0.5)
    return _mix(base, pale, (lightness - 0.5) / 0.5)


def _distinct_colour(
    rng: np.random.Generator, avoid: list[np.ndarray], min_dist: float = 110.0
) -> np.ndarray:
    """A random accessory colour far (in RGB) from every colour in `avoid`."""
    order = rng.permutation(len(_ACCESSORY_COLOURS))
    best, best_d = None, -1.0
    for i in order:
        c = np.asarray(_ACCESSORY_COLOURS[i], np.float32)
        d = min((float(np.linalg.norm(c - a)) for a in avoid), default=1e9)
        if d >= min_dist:
            return c
        if d > best_d:
            best, best_d = c, d
    return best  # type: ignore[return-value]


# ----------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Geom:
    """Canonical-frame geometry (units of the drawing size) derived from an identity."""

    cx: float
    cy: float
    fw: float  # face half-width
    fh: float  # face half-height
    eye_y: float
    eye_dx: float
    ew: float  # eye half-width
    eh: float
    tip_y: float
    nw: float
    mouth_y: float
    mw: float

    @classmethod
    def of(cls, v: np.ndarray) -> _Geom:
        f = dict(zip(IDENTITY_FIELDS, (float(x) for x in v), strict=True))
        cx, cy = 0.5, _CANVAS_CY
        fw = 0.14 + 0.065 * f["face_width"]
        fh = 0.185 + 0.065 * f["face_length"]
        eye_y = cy - 0.035 * fh / 0.22
        ew = 0.025 + 0.017 * f["eye_size"]
        eye_dx = fw * (0.36 + 0.17 * f["eye_spacing"])
        eye_dx = max(eye_dx, ew + 0.024)
        tip_y = eye_y + 0.065 + 0.05 * f["nose_length"]
        chin = cy + fh
        mouth_y = tip_y + max(0.03, 0.42 * (chin - tip_y))
        return cls(
            cx=cx, cy=cy, fw=fw, fh=fh, eye_y=eye_y, eye_dx=eye_dx, ew=ew, eh=0.6 * ew,
            tip_y=tip_y, nw=0.016 + 0.02 * f["nose_width"], mouth_y=mouth_y,
            mw=min(0.036 + 0.032 * f["mouth_width"], 0.8 * fw),
        )  # fmt: skip

    def face_outline(self, n: int = 56) -> np.ndarray:
        """Face polygon: rounded forehead, cheeks, tapering jaw, chin."""
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        c, s = np.cos(t), np.sin(t)
        lower = s > 0
        w = np.where(lower, 1 - 0.26 * s**2, 1.0)
        x = self.cx + self.fw * np.sign(c) * np.abs(c) ** np.where(lower, 1.0, 0.85) * w
        y = self.cy + self.fh * s
        return np.stack([x, y], 1)

    def half_width_at(self, y: float) -> float:
        s = float(np.clip((y - self.cy) / self.fh, -1, 1))
        w = 1 - 0.26 * s**2 if s > 0 else 1.0
        return self.fw * math.sqrt(max(0.0, 1 - s * s)) * w


def _arc(cx: float, cy: float, rx: float, ry: float, t0: float, t1: float, n: int = 24):
    t = np.linspace(t0, t1, n)
    return list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t), strict=True))


class _Pen:
    """Draws canonical-unit shapes on the RGBA layer and (optionally) the skin, face and head
    masks."""

    def __init__(self, layer: Image.Image, masks: dict[str, Image.Image], scale: float):
        self.d = ImageDraw.Draw(layer)
        self.masks = {k: ImageDraw.Draw(m) for k, m in masks.items()}  # "skin", "face", "head"
        self.s = scale

    def _masks(self, **values: int | None):
        return [(self.masks[k], v) for k, v in values.items() if v is not None]

    def _pts(self, pts) -> list[tuple[float, float]]:
        s = self.s
        return [(float(x) * s - 0.5, float(y) * s - 0.5) for x, y in pts]

    def poly(self, pts, fill, mask: int | None = None, outline=None, width: float = 0,
             face: int | None = None, head: int | None = None) -> None:  # fmt: skip
        p = self._pts(pts)
        w = max(1, round(width * self.s)) if width else 0
        self.d.polygon(p, fill=_rgb(fill), outline=_rgb(outline) if outline is not None else None,
                       width=w)  # fmt: skip
        for draw, value in self._masks(skin=mask, face=face, head=head):
            draw.polygon(p, fill=value)

    def ellipse(self, cx, cy, rx, ry, fill=None, outline=None, width: float = 0, mask=None,
                face=None, head=None):  # fmt: skip
        s = self.s
        box = (cx * s - rx * s - 0.5, cy * s - ry * s - 0.5, cx * s + rx * s - 0.5,
               cy * s + ry * s - 0.5)  # fmt: skip
        w = max(1, round(width * s)) if width else 1
        self.d.ellipse(box, fill=None if fill is None else _rgb(fill),
                       outline=None if outline is None else _rgb(outline), width=w)  # fmt: skip
        for draw, value in self._masks(skin=mask, face=face, head=head):
            draw.ellipse(box, fill=value)

    def line(self, pts, fill, width: float) -> None:
        self.d.line(self._pts(pts), fill=_rgb(fill), width=max(1, round(width * self.s)),
                    joint="curve")  # fmt: skip


# ----------------------------------------------------------------------------- drawing


def _draw_person(
    pen: _Pen, v: np.ndarray, g: _Geom, ctx: Context, colours: dict[str, np.ndarray]
) -> None:
    f = dict(zip(IDENTITY_FIELDS, (float(x) for x in v), strict=True))
    skin = _lerp_palette(_SKIN, f["skin_tone"])
    hair = _hair_rgb(f["hair_hue"], f["hair_lightness"])
    style = HAIR_STYLES[min(int(f["hair_style"] * len(HAIR_STYLES)), len(HAIR_STYLES) - 1)]
    beard = BEARDS[int(np.searchsorted(_BEARD_EDGES, f["beard"], side="right"))]
    shade = skin * 0.82
    cx, cy, fw, fh = g.cx, g.cy, g.fw, g.fh
    chin = cy + fh
    sh_y = chin + 0.085  # shoulder line
    bottom = _LAYER_H + 0.02

    # torso with a round neckline
    shirt = colours["shirt"]
    torso = [(cx - 0.07, sh_y - 0.012), (cx - 0.25, sh_y + 0.02), (cx - 0.36, sh_y + 0.07)]
    torso += [(cx - 0.42, sh_y + 0.16), (cx - 0.45, bottom)]
    torso += [(2 * cx - x, y) for x, y in torso[::-1]]
    pen.poly(torso, shirt)
    pen.poly(_arc(cx, sh_y - 0.012, 0.085, 0.05, 0, np.pi, 16), shirt * 0.8)

    # hair behind the head
    skull = (cx, cy - 0.15 * fh, fw * 1.06, fh * 1.06)
    if style == "long straight":
        back = _arc(cx, cy - 0.15 * fh, fw * 1.16, fh * 1.12, np.pi, 2 * np.pi, 20)
        back = [(cx - fw * 1.3, chin + 0.13), *back, (cx + fw * 1.3, chin + 0.13)]
        back += _arc(cx, chin + 0.13, fw * 1.3, 0.03, 0, np.pi, 10)
        pen.poly(back, hair, outline=hair * 0.7, width=0.006, head=255)
    elif style == "curly":
        ccx, ccy, rx, ry = cx, cy - 0.3 * fh, fw * 1.6, fh * 1.2
        pen.ellipse(ccx, ccy, rx, ry, fill=hair, head=255)
        for k, t in enumerate(np.linspace(0, 2 * np.pi, 22, endpoint=False)):
            r = 0.038 + 0.008 * (k % 3)
            pen.ellipse(ccx + rx * math.cos(t), ccy + ry * math.sin(t), r, r, fill=hair, head=255)
    elif style == "bun":
        pen.ellipse(cx, cy - 1.22 * fh - 0.04, 0.07, 0.06, fill=hair, outline=hair * 0.7,
                    width=0.006, head=255)  # fmt: skip

    # neck
    neck = [(cx - fw * 0.46, cy + 0.4 * fh), (cx + fw * 0.46, cy + 0.4 * fh)]
    neck += [(cx + fw * 0.5, sh_y + 0.01), (cx - fw * 0.5, sh_y + 0.01)]
    pen.poly(neck, shade)
    pen.ellipse(cx, sh_y - 0.005, fw * 0.5, 0.035, fill=shade)

    if ctx.scarf:
        sc = colours["scarf"]
        ys = chin + 0.055
        pen.ellipse(cx, ys, fw * 0.82, 0.05, fill=sc, outline=sc * 0.7, width=0.006)
        tail = [(cx + fw * 0.1, ys), (cx + fw * 0.55, ys), (cx + fw * 0.7, ys + 0.21)]
        tail += [(cx + fw * 0.28, ys + 0.22)]
        pen.poly(tail, sc, outline=sc * 0.7, width=0.006)
        for k in (0.12, 0.17):
            pen.line([(cx + fw * 0.22, ys + k), (cx + fw * 0.64, ys + k - 0.01)], sc * 0.6, 0.01)

    # skull (hair colour, or skin when bald) and ears
    pen.ellipse(*skull, fill=skin if style == "bald" else hair, head=255)
    er = 0.02 + 0.016 * f["ear_size"]
    for sgn in (-1, 1):
        ex = cx + sgn * (g.half_width_at(g.eye_y + 0.03) + er * 0.15)
        pen.ellipse(ex, g.eye_y + 0.035, er, er * 1.7, fill=shade, outline=skin * 0.7,
                    width=0.005)  # fmt: skip

    # face
    outline = g.face_outline()
    pen.poly(outline, skin, mask=255, outline=skin * 0.72, width=0.006, face=255, head=255)
    # soft cheek colour
    for sgn in (-1, 1):
        pen.ellipse(cx + sgn * g.eye_dx, g.tip_y + 0.005, 0.03, 0.018,
                    fill=_mix(skin, (220, 110, 110), 0.12))  # fmt: skip

    # beard below the mouth
    lower = outline[(outline[:, 1] > g.tip_y - 0.01)]
    lower = lower[np.argsort(np.arctan2(lower[:, 1] - cy, lower[:, 0] - cx))]
    if beard in ("stubble", "full"):
        col = _mix(skin, hair, 0.35) if beard == "stubble" else hair
        ring = [tuple(p) for p in lower]  # right cheek -> chin -> left cheek
        ring += [(cx - g.mw * 1.15, g.mouth_y - 0.015), (cx, g.tip_y + 0.02)]
        ring += [(cx + g.mw * 1.15, g.mouth_y - 0.015)]
        pen.poly(ring, col, mask=0 if beard == "full" else None)

    # eyes
    iris = _lerp_palette(_IRIS, f["eye_hue"])
    for sgn in (-1, 1):
        ex = cx + sgn * g.eye_dx
        pen.ellipse(ex, g.eye_y, g.ew, g.eh, fill=(246, 244, 238))
        pen.ellipse(ex, g.eye_y, g.eh * 0.95, g.eh * 0.95, fill=iris)
        pen.ellipse(ex, g.eye_y, g.eh * 0.42, g.eh * 0.42, fill=(12, 10, 10))
        pen.ellipse(ex + g.eh * 0.3, g.eye_y - g.eh * 0.3, g.eh * 0.16, g.eh * 0.16,
                    fill=(255, 255, 255))  # fmt: skip
        lid = _arc(ex, g.eye_y, g.ew * 1.05, g.eh * 1.1, np.pi, 2 * np.pi, 12)
        pen.line(lid, (30, 22, 20), 0.007)

    # brows
    brow = _mix(hair, (40, 28, 20), 0.45 if f["hair_lightness"] > 0.6 else 0.15)
    th = 0.007 + 0.018 * f["brow_thickness"]
    tilt = (f["brow_tilt"] - 0.5) * 0.7  # radians, inner end up when positive
    for sgn in (-1, 1):
        bx, by = cx + sgn * g.eye_dx, g.eye_y - g.eh - 0.02 - th / 2
        half = g.ew * 1.25
        dy = math.sin(tilt) * half
        inner = (bx - sgn * half, by - dy)
        outer = (bx + sgn * half, by + dy)
        mid = (bx, by - 0.008)
        pts = [inner, mid, outer, (outer[0], outer[1] + th * 0.5), (mid[0], mid[1] + th)]
        pts += [(inner[0], inner[1] + th)]
        pen.poly(pts, brow)

    # nose
    nose_shadow = skin * 0.72
    pen.line([(cx + 0.012, g.eye_y + 0.01), (cx + 0.016, g.tip_y - 0.012)], skin * 0.86, 0.007)
    pen.ellipse(cx, g.tip_y + 0.004, g.nw, 0.016, fill=skin * 0.9)
    pen.ellipse(cx, g.tip_y - 0.002, g.nw * 0.55, 0.013, fill=_mix(skin, (255, 255, 255), 0.1))
    for sgn in (-1, 1):
        pen.ellipse(cx + sgn * g.nw * 0.55, g.tip_y + 0.01, g.nw * 0.3, 0.006, fill=nose_shadow)

    # mouth
    lip = _mix(skin * 0.85, _lerp_palette(_LIPS, f["lip_tone"]), 0.7)
    lh = 0.012 + 0.008 * f["mouth_width"]
    my, mw = g.mouth_y, g.mw
    upper = [(cx - mw, my), (cx - mw * 0.45, my - lh), (cx, my - lh * 0.65)]
    upper += [(cx + mw * 0.45, my - lh), (cx + mw, my)]
    lower_lip = [(cx + mw, my), *_arc(cx, my, mw * 0.85, lh * 1.5, 0.15, np.pi - 0.15, 12)]
    lower_lip += [(cx - mw, my)]
    pen.poly(lower_lip, lip)
    pen.poly(upper, lip * 0.88)
    pen.line([(cx - mw, my), (cx, my + 0.002), (cx + mw, my)], lip * 0.45, 0.006)

    if beard == "moustache":
        mo = [(cx - mw * 1.1, my + 0.004), (cx - mw * 0.6, g.tip_y + 0.022), (cx, g.tip_y + 0.018)]
        mo += [(cx + mw * 0.6, g.tip_y + 0.022), (cx + mw * 1.1, my + 0.004)]
        mo += [(cx + mw * 0.5, my - 0.01), (cx, my - 0.012), (cx - mw * 0.5, my - 0.01)]
        pen.poly(mo, hair, mask=0)

    # hair in front
    _draw_front_hair(pen, style, g, hair, skin)

    if ctx.hat:
        hc = colours["hat"]
        big = 1.35 if style == "curly" else 1.0
        yb = cy - 0.72 * fh - (0.06 if style == "curly" else 0.0)
        crown = [(cx - fw * 0.98 * big, yb), *_arc(cx, yb - 0.12, fw * 0.86 * big, 0.07, np.pi,
                                                   2 * np.pi, 16), (cx + fw * 0.98 * big, yb)]  # fmt: skip
        pen.poly(crown, hc, mask=0, outline=hc * 0.7, width=0.005, face=0, head=0)
        band = [(cx - fw * 0.97 * big, yb), (cx - fw * 0.94 * big, yb - 0.035)]
        band += [(cx + fw * 0.94 * big, yb - 0.035), (cx + fw * 0.97 * big, yb)]
        pen.poly(band, colours["hat_band"])
        pen.ellipse(cx, yb, fw * 1.5 * big, 0.026, fill=hc * 0.9, outline=hc * 0.6, width=0.005,
                    mask=0, face=0, head=0)  # fmt: skip

    if ctx.glasses:
        gc = colours["glasses"]
        r = max(g.ew * 1.45, 0.047)
        for sgn in (-1, 1):
            ex = cx + sgn * g.eye_dx
            pen.ellipse(ex, g.eye_y + 0.004, r, r * 0.82, outline=gc, width=0.017)
            pen.line([(ex - r * 0.45, g.eye_y - r * 0.35), (ex - r * 0.1, g.eye_y - r * 0.55)],
                     (255, 255, 255), 0.008)  # fmt: skip
            arm_x = cx + sgn * g.half_width_at(g.eye_y)
            pen.line([(ex + sgn * r, g.eye_y), (arm_x, g.eye_y + 0.006)], gc, 0.012)
        ix = g.eye_dx - r
        pen.line([(cx - ix, g.eye_y - 0.004), (cx, g.eye_y - 0.012), (cx + ix, g.eye_y - 0.004)],
                 gc, 0.012)  # fmt: skip


def _draw_front_hair(pen: _Pen, style: str, g: _Geom, hair: np.ndarray, skin: np.ndarray):
    cx, cy, fw, fh = g.cx, g.cy, g.fw, g.fh
    sy, rx, ry = cy - 0.15 * fh, fw * 1.06, fh * 1.06
    dark, light = hair * 0.72, _mix(hair, (255, 255, 255), 0.18)
    if style == "bald":
        pen.ellipse(
            cx - fw * 0.3, cy - fh * 1.0, fw * 0.25, fh * 0.06, fill=_mix(skin, (255,) * 3, 0.15)
        )
        return
    if style in ("short crop", "bun", "curly"):
        top = 0.3 if style == "bun" else 0.2
        cap = _arc(cx, sy, rx, ry, np.pi + top, 2 * np.pi - top, 24)
        hl = -0.62 if style != "bun" else -0.7
        line = [(cx + fw * 0.92, cy - 0.4 * fh), (cx + fw * 0.45, cy + hl * fh)]
        line += [(cx, cy + (hl - 0.03) * fh), (cx - fw * 0.45, cy + hl * fh)]
        line += [(cx - fw * 0.92, cy - 0.4 * fh)]
        pen.poly(cap + line, hair, mask=0, outline=None if style == "curly" else hair * 0.7,
                 width=0.006, head=255)  # fmt: skip
        if style == "curly":
            for k, t in enumerate(np.linspace(-0.9, 0.9, 9)):
                x = cx + fw * 0.82 * t
                y = cy - fh * (0.62 - 0.22 * t * t)
                r = 0.028 + 0.006 * (k % 2)
                pen.ellipse(x, y, r, r, fill=hair, mask=0, head=255)
            rs = np.random.default_rng(7)  # fixed curl texture, identical for everyone
            for x, y in rs.uniform(-1, 1, (40, 2)):
                px, py = cx + x * fw * 1.4, cy - 0.3 * fh + y * fh * 1.05
                if (x / 1.1) ** 2 + ((y + 0.1) / 1.0) ** 2 > 0.55 or py < cy - 0.75 * fh:
                    pen.ellipse(px, py, 0.012, 0.012, outline=dark, width=0.005)
        else:
            for sgn in (-1, 1):  # sideburns
                sb = [(cx + sgn * fw * 1.0, cy - 0.42 * fh), (cx + sgn * fw * 0.86, cy - 0.42 * fh)]
                sb += [(cx + sgn * fw * 0.9, g.eye_y + 0.01), (cx + sgn * fw * 1.0, g.eye_y + 0.01)]
                pen.poly(sb, hair, mask=0, head=255)
            pen.line(_arc(cx, sy, rx * 0.7, ry * 0.85, np.pi + 0.6, 2 * np.pi - 0.9, 10), light,
                     0.01)  # fmt: skip
        return
    if style == "side part":
        cap = _arc(cx, sy - 0.01, rx * 1.08, ry * 1.1, np.pi + 0.15, 2 * np.pi - 0.15, 24)
        line = [(cx + fw * 0.95, cy - 0.3 * fh), (cx + fw * 0.5, cy - 0.58 * fh)]
        line += [(cx + fw * 0.1, cy - 0.6 * fh), (cx - fw * 0.45, cy - 0.45 * fh)]
        line += [(cx - fw * 0.85, cy - 0.25 * fh), (cx - fw * 1.02, cy - 0.1 * fh)]
        pen.poly(cap + line, hair, mask=0, outline=hair * 0.7, width=0.006, head=255)
        pen.line([(cx + fw * 0.42, sy - ry * 1.05), (cx + fw * 0.38, cy - 0.8 * fh)], dark, 0.008)
        for k in range(3):
            o = 0.15 + 0.18 * k
            pen.line([(cx + fw * (0.3 - o), sy - ry * (0.95 - 0.1 * k)),
                      (cx - fw * (0.1 + o), cy - (0.7 - 0.1 * k) * fh)], light, 0.007)  # fmt: skip
        return
    # long straight: centre-parted curtains over the temples
    for sgn in (-1, 1):
        t = np.linspace(-np.pi / 2, -np.pi / 2 + sgn * (np.pi / 2 + 0.35), 14)
        outer = list(zip(cx + rx * 1.1 * np.cos(t), sy + ry * 1.08 * np.sin(t), strict=True))
        outer += [(cx + sgn * fw * 1.2, cy + 0.5 * fh)]
        inner = [(cx + sgn * fw * 0.95, cy + 0.4 * fh), (cx + sgn * fw * 0.88, cy - 0.2 * fh)]
        inner += [(cx + sgn * fw * 0.5, cy - 0.62 * fh), (cx + sgn * 0.008, cy - 0.8 * fh)]
        pen.poly(outer + inner, hair, mask=0, outline=hair * 0.7, width=0.006, head=255)
        pen.line([(cx + sgn * fw * 0.3, sy - ry * 0.95), (cx + sgn * fw * 1.05, cy + 0.1 * fh)],
                 light, 0.007)  # fmt: skip


# ----------------------------------------------------------------------------- compositing


def _background(ctx: Context, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, n, 3) float32 background with its (anti-aliased) pattern."""
    base = np.asarray(BACKGROUND_RGB[ctx.background], np.float32)
    if ctx.pattern == "plain":
        return np.broadcast_to(base, (n, n, 3))
    luma = float(base @ np.array([0.299, 0.587, 0.114], np.float32))
    tint = _mix(base, (0, 0, 0), 0.32) if luma > 170 else _mix(base, (255, 255, 255), 0.42)
    period = n / 6.4
    off = rng.uniform(0, period, 2).astype(np.float32)
    t = np.arange(n, dtype=np.float32) + 0.5
    if ctx.pattern == "striped":
        ph = ((t[None, :] + t[:, None] + off[0]) / (period * math.sqrt(2))) % 1.0
        cover = np.clip((np.abs(ph - 0.5) - 0.25) * period * 1.4 + 0.5, 0, 1)
    else:
        gy = (t[:, None] + off[1]) / period
        gx = (t[None, :] + off[0]) / period + 0.5 * (np.floor(gy) % 2)
        d = np.hypot(gx % 1.0 - 0.5, gy % 1.0 - 0.5) * period
        cover = np.clip(period * 0.24 - d + 0.5, 0, 1)
    return base + (tint - base) * cover[..., None]


def _luma(img: np.ndarray) -> np.ndarray:
    return img @ np.array([0.299, 0.587, 0.114], np.float32)


def _style_photo(img: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = img.shape[0]
    ang = rng.uniform(0, 2 * np.pi)
    t = (np.arange(n, dtype=np.float32) + 0.5) / n * 2 - 1
    grad = t[None, :] * math.cos(ang) + t[:, None] * math.sin(ang)
    soft = Image.fromarray((alpha * 255).astype(np.uint8)).filter(ImageFilter.BoxBlur(n / 40))
    soft_a = np.asarray(soft, np.float32) / 255
    light = 1 + 0.05 * grad + alpha * (0.1 * grad - 0.2 * (1 - soft_a))
    out = img * light[..., None]
    out += (rng.random((n, n, 1), dtype=np.float32) - 0.5) * 10.0  # sensor noise
    return out


def _style_sketch(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Coloured pencil: lightened, slightly desaturated fills, hatching and dark edge lines."""
    n = img.shape[0]
    lum = _luma(img)
    mag = np.zeros_like(lum)
    mag[:, 1:] = np.abs(np.diff(lum, axis=1))
    mag[1:, :] = np.maximum(mag[1:, :], np.abs(np.diff(lum, axis=0)))
    edge = np.clip((mag - 14) / 40, 0, 0.8)
    col = img * 0.8 + lum[..., None] * 0.2
    col = 255 - (255 - col) * 0.62
    t = np.arange(n)
    hatch = ((t[:, None] + t[None, :]) % 4 < 1) * (1 - lum / 255)
    grain = (rng.random((n, n), dtype=np.float32) - 0.5) * 0.1
    col = col * (1 - 0.16 * hatch + grain)[..., None]
    ink = np.array([40, 34, 30], np.float32)
    return col + (ink - col) * edge[..., None]


def _style_painting(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gouache look: smoothed, saturated, softly posterised, with brush streaks."""
    n = img.shape[0]
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.SMOOTH)
    pil = ImageEnhance.Color(pil).enhance(1.4)
    pil = Image.blend(ImageOps.posterize(pil, 3), pil, 0.45)
    small = rng.standard_normal((max(2, n // 16), n), dtype=np.float32)
    streak = np.asarray(Image.fromarray(small).resize((n, n), Image.BILINEAR))
    streak = streak if rng.random() < 0.5 else streak.T
    tex = 1 + 0.05 * streak + (np.arange(n)[:, None] % 2) * 0.02
    return np.asarray(pil, np.float32) * tex[..., None]


def _stylise(
    img: np.ndarray, alpha: np.ndarray, style: str, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Apply `style` at 2x and downsample to (size, size, 3) uint8."""
    if style == "photo":
        img = _style_photo(img, alpha, rng)
    elif style == "sketch":
        img = _style_sketch(img, rng)
    else:
        img = _style_painting(img, rng)
    out = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8))
    return np.asarray(out.resize((size, size), Image.LANCZOS))


def render_background(
    context: Context, *, size: int = 64, rng: np.random.Generator | None = None
) -> np.ndarray:
    """A (size, size, 3) uint8 image of the context with nobody in it (background, style)."""
    rng = np.random.default_rng(0) if rng is None else rng
    n2 = 2 * size
    img = np.array(_background(context, n2, rng), np.float32)
    return _stylise(img, np.zeros((n2, n2), np.float32), context.style, size, rng)


def _jitter_params(
    rng: np.random.Generator, jitter: bool, size: int
) -> tuple[float, float, float, float]:
    if not jitter:
        return 0.0, 1.0, 0.0, 0.0
    ang = math.radians(rng.uniform(-8, 8))
    sc = rng.uniform(0.94, 1.06)
    tx, ty = rng.uniform(-3, 3, 2) / 64.0
    return ang, sc, float(tx), float(ty)


def render(
    identity: np.ndarray,
    context: Context,
    *,
    size: int = 64,
    rng: np.random.Generator | None = None,
    jitter: bool = True,
) -> Render:
    """Draw one portrait of `identity` (a vector over `IDENTITY_FIELDS`) in `context`.

    `rng` drives the pose jitter, accessory/shirt colours and style noise; None means
    `np.random.default_rng(0)`. The same inputs and seed give identical pixels.
    """
    v = np.clip(np.asarray(identity, np.float32).reshape(-1), 0, 1)
    if v.shape[0] != IDENTITY_DIM:
        raise ValueError(f"identity has {v.shape[0]} values; expected {IDENTITY_DIM}")
    if size < 16:
        raise ValueError(f"size={size} is too small")
    rng = np.random.default_rng(0) if rng is None else rng
    S = 4 * size
    g = _Geom.of(v)

    bg_rgb = np.asarray(BACKGROUND_RGB[context.background], np.float32)
    hair = _hair_rgb(float(v[1]), float(v[2]))
    shirt = _distinct_colour(rng, [bg_rgb], 120.0) * rng.uniform(0.75, 1.0)
    colours = {
        "shirt": shirt,
        "hat": _distinct_colour(rng, [bg_rgb, hair], 120.0),
        "glasses": _distinct_colour(rng, [_lerp_palette(_SKIN, float(v[0]))], 120.0),
        "scarf": _distinct_colour(rng, [bg_rgb, shirt], 120.0),
    }
    colours["hat_band"] = _distinct_colour(rng, [colours["hat"]], 150.0)
    ang, jsc, tx, ty = _jitter_params(rng, jitter, size)

    lh = round(_LAYER_H * S)
    layer = Image.new("RGBA", (S, lh), (0, 0, 0, 0))
    masks = {k: Image.new("L", (S, lh), 0) for k in ("skin", "face", "head")}
    _draw_person(_Pen(layer, masks, S), v, g, context, colours)

    # affine map canonical -> output: p = o + M (q - c), in continuous pixel coordinates
    scale = FRAMING_SCALE[context.framing] * jsc
    c = np.array([g.cx * S, g.cy * S])
    o = np.array([(0.5 + tx) * S, (_FRAMING_CENTRE_Y[context.framing] + ty) * S])
    cs, sn = math.cos(ang), math.sin(ang)
    M = scale * np.array([[cs, -sn], [sn, cs]])
    Mi = np.linalg.inv(M)
    data = (Mi[0, 0], Mi[0, 1], c[0] - Mi[0] @ o, Mi[1, 0], Mi[1, 1], c[1] - Mi[1] @ o)
    # nearest sampling at 4x, then box-averaging = supersampled anti-aliasing; the layer is
    # drawn without anti-aliasing, so its RGBA bytes are already premultiplied
    warped = layer.transform((S, S), Image.AFFINE, data, Image.NEAREST)
    warped = Image.frombuffer("RGBa", (S, S), warped.tobytes(), "raw", "RGBa", 0, 1)
    warped_masks = {
        k: np.asarray(m.transform((S, S), Image.AFFINE, data, Image.NEAREST).reduce(4), np.float32)
        / 255
        for k, m in masks.items()
    }

    def to_out(pts: np.ndarray) -> np.ndarray:
        return (o + (pts * S - c) @ M.T) / 4.0

    n2 = 2 * size
    bg2 = _background(context, n2, rng)
    fg = np.asarray(warped.reduce(2), np.float32)
    alpha = fg[..., 3] / 255
    img = bg2 * (1 - alpha[..., None]) + fg[..., :3]
    image = _stylise(img, alpha, context.style, size, rng)

    lm = np.array(
        [
            [g.cx - g.eye_dx, g.eye_y],
            [g.cx + g.eye_dx, g.eye_y],
            [g.cx, g.tip_y],
            [g.cx - g.mw, g.mouth_y],
            [g.cx + g.mw, g.mouth_y],
        ]
    )
    outline = to_out(g.face_outline(96))
    box = (
        float(outline[:, 0].min()),
        float(outline[:, 1].min()),
        float(outline[:, 0].max()),
        float(outline[:, 1].max()),
    )
    return Render(
        image=image,
        box=box,
        landmarks=to_out(lm).astype(np.float32),
        mask=warped_masks["skin"],
        face_mask=warped_masks["face"],
        head_mask=warped_masks["head"],
    )


def contact_sheet(renders: list[Render] | list[np.ndarray], cols: int, gap: int = 2) -> np.ndarray:
    """Tile images (or `Render`s) into a grid with a white gap; returns (H, W, 3) uint8."""
    ims = [r.image if isinstance(r, Render) else np.asarray(r) for r in renders]
    if not ims:
        raise ValueError("no images")
    h = max(i.shape[0] for i in ims)
    w = max(i.shape[1] for i in ims)
    rows = -(-len(ims) // cols)
    sheet = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, 3), 255, np.uint8)
    for k, im in enumerate(ims):
        r, c = divmod(k, cols)
        y, x = gap + r * (h + gap), gap + c * (w + gap)
        sheet[y : y + im.shape[0], x : x + im.shape[1]] = im[..., :3]
    return sheet
