"""Tests of the miniature world: renderer geometry, contexts, captions, people."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sameface.world.captions import (
    CAPTION_WORDS,
    MENTIONABLE,
    context_from_caption,
    parse_caption,
    write_caption,
)
from sameface.world.people import (
    MIN_IDENTITY_DISTANCE,
    People,
    make_names,
    make_people,
    sample_identities,
    save_people,
)
from sameface.world.render import (
    ACCESSORIES,
    BACKGROUNDS,
    FRAMINGS,
    IDENTITY_DIM,
    IDENTITY_FIELDS,
    PATTERNS,
    STYLES,
    Context,
    contact_sheet,
    render,
    render_background,
)


def _identity(**values: float) -> np.ndarray:
    v = np.full(IDENTITY_DIM, 0.5, np.float32)
    for k, x in values.items():
        v[IDENTITY_FIELDS.index(k)] = x
    return v


def _luma(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def test_deterministic_and_seed_dependent():
    v = np.random.default_rng(0).random(IDENTITY_DIM)
    ctx = Context("red", "striped", True, True, True, "painting", "portrait")
    a = render(v, ctx, rng=np.random.default_rng(5))
    b = render(v, ctx, rng=np.random.default_rng(5))
    c = render(v, ctx, rng=np.random.default_rng(6))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.landmarks, b.landmarks)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("size", [64, 32])
def test_shapes_and_geometry(size):
    rng = np.random.default_rng(size)
    for _ in range(12):
        r = render(rng.random(IDENTITY_DIM), Context.random(rng), size=size, rng=rng)
        assert r.image.shape == (size, size, 3) and r.image.dtype == np.uint8
        assert r.mask.shape == (size, size) and r.mask.dtype == np.float32
        assert r.mask.min() >= 0 and r.mask.max() <= 1 and r.mask.max() > 0.9
        assert r.landmarks.shape == (5, 2) and r.landmarks.dtype == np.float32
        x0, y0, x1, y1 = r.box
        assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
        lm = r.landmarks
        assert (lm[:, 0] > x0).all() and (lm[:, 0] < x1).all()
        assert (lm[:, 1] > y0).all() and (lm[:, 1] < y1).all()
        assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # subject's right on image left
        assert lm[:2, 1].mean() < lm[2, 1] < lm[3:, 1].mean()
        ys, xs = np.nonzero(r.mask > 0.5)
        assert xs.min() >= x0 - 1 and xs.max() + 1 <= x1 + 1
        assert ys.min() >= y0 - 1 and ys.max() + 1 <= y1 + 1


def test_box_and_mask_follow_the_pose_exactly():
    # bald, beardless, no hat: the skin mask is exactly the warped face polygon
    v = _identity(hair_style=0.0, beard=0.0)
    rng = np.random.default_rng(3)
    for framing in FRAMINGS:
        for _ in range(4):
            r = render(v, Context(framing=framing), rng=rng)
            ys, xs = np.nonzero(r.mask > 0.5)
            x0, y0, x1, y1 = r.box
            assert abs(xs.min() - x0) < 1.0 and abs(xs.max() + 1 - x1) < 1.0
            assert abs(ys.min() - y0) < 1.0 and abs(ys.max() + 1 - y1) < 1.0


@pytest.mark.parametrize("beard", [0.7, 0.9])  # moustache, full beard
def test_face_mask_keeps_facial_hair_the_skin_mask_cuts_out(beard):
    # The facial mask is what a face parser calls the face: the moustache / beard are on it
    # (a mask loss must see them), the hat is not; the skin mask is inside it.
    rng = np.random.default_rng(4)
    bare = render(_identity(hair_style=0.0, beard=0.0), Context(framing="close-up"),
                  rng=np.random.default_rng(4))  # fmt: skip
    for _ in range(4):
        seed = int(rng.integers(1 << 30))
        ctx = Context(framing="close-up", hat=True, glasses=True)
        r = render(_identity(hair_style=0.0, beard=beard), ctx, rng=np.random.default_rng(seed))
        assert r.face_mask.shape == r.mask.shape and r.face_mask.dtype == np.float32
        assert (r.face_mask >= r.mask - 1e-6).all()
        hair = (r.face_mask > 0.5) & (r.mask < 0.5)  # on the face, not skin: the facial hair
        assert hair.sum() >= 4
        assert r.face_mask.sum() <= bare.face_mask.sum() * 1.2  # no more than the face
    plain = render(_identity(hair_style=0.0, beard=0.0), Context(framing="close-up"),
                   rng=np.random.default_rng(4))  # fmt: skip
    assert np.array_equal(plain.face_mask > 0.5, plain.mask > 0.5)  # nothing on it: the same


def test_head_mask_is_the_face_and_the_hair():
    rng = np.random.default_rng(8)
    for style in (0.0, 0.3, 0.5, 0.7, 0.95):  # bald: the face and the scalp
        r = render(_identity(hair_style=style), Context(framing="close-up"), rng=rng)
        assert (r.head_mask >= r.face_mask - 1e-6).all()
        assert (r.head_mask > 0.5).sum() >= (r.face_mask > 0.5).sum() + 10  # + the hair
        hatted = render(_identity(hair_style=style), Context(framing="close-up", hat=True),
                        rng=np.random.default_rng(1))  # fmt: skip
        assert hatted.head_mask.sum() < r.head_mask.sum()  # the hat is cut out


def test_landmarks_land_on_the_drawn_features():
    v = _identity(skin_tone=0.1, hair_style=0.0, beard=0.0, eye_hue=0.0, eye_size=1.0)
    rng = np.random.default_rng(11)
    for _ in range(8):
        r = render(v, Context(framing="close-up"), rng=rng)
        lum = _luma(r.image)
        for x, y in r.landmarks[:2]:  # eyes: centroid of the dark iris/pupil pixels
            cx, cy = int(x), int(y)
            win = lum[cy - 2 : cy + 3, cx - 2 : cx + 3]
            dark = np.clip(150 - win, 0, None)
            gy, gx = np.mgrid[cy - 2 : cy + 3, cx - 2 : cx + 3] + 0.5
            ex, ey = (dark * gx).sum() / dark.sum(), (dark * gy).sum() / dark.sum()
            assert np.hypot(ex - x, ey - y) < 1.0
        # mouth: the corners bound the dark lip line along the segment between them
        a, b = r.landmarks[3], r.landmarks[4]
        inner = [lum[int(p[1]), int(p[0])] for p in (a + (b - a) * t for t in (0.3, 0.5, 0.7))]
        outer = [lum[int(p[1]), int(p[0])] for p in (a + (a - b) * 0.35, b + (b - a) * 0.35)]
        assert max(inner) < min(outer) - 10


def test_landmark_pixels_without_jitter():
    v = _identity(skin_tone=0.15, hair_style=0.0, beard=0.0, eye_hue=0.0)
    r = render(v, Context(), jitter=False)
    lum = _luma(r.image)
    cheek = lum[int(r.landmarks[2, 1]), int((r.landmarks[0, 0] + r.box[0]) / 2)]
    for i in (0, 1):
        x, y = r.landmarks[i]
        assert lum[int(y), int(x)] < cheek - 60
    x, y = r.landmarks[3:].mean(0)
    assert r.image[int(y), int(x), 0] > r.image[int(y), int(x), 2] + 20  # lips are red


def test_every_context_attribute_is_visible():
    rng = np.random.default_rng(0)
    v = _identity(hair_style=0.3)
    base = Context("blue", "plain", False, False, False, "photo", "portrait")
    variants = [dataclasses.replace(base, background=b) for b in BACKGROUNDS if b != "blue"]
    variants += [dataclasses.replace(base, pattern=p) for p in PATTERNS if p != "plain"]
    variants += [dataclasses.replace(base, **{a: True}) for a in ACCESSORIES]
    variants += [dataclasses.replace(base, style=s) for s in STYLES if s != "photo"]
    variants += [dataclasses.replace(base, framing=f) for f in FRAMINGS if f != "portrait"]
    for style in STYLES:
        ref = render(v, dataclasses.replace(base, style=style), rng=np.random.default_rng(1))
        for var in variants:
            var = dataclasses.replace(var, style=var.style if var.style != "photo" else style)
            if var == dataclasses.replace(base, style=style):
                continue
            img = render(v, var, rng=np.random.default_rng(1)).image
            changed = (np.abs(img.astype(np.float32) - ref.image).max(-1) > 30).mean()
            assert changed > 0.01, (style, var)
    # backgrounds stay recognisable in every style: corner colour is nearest its own colour
    for style in STYLES:
        corners = {}
        for b in BACKGROUNDS:
            img = render(v, dataclasses.replace(base, background=b, style=style), rng=rng).image
            corners[b] = np.concatenate([img[:6, :6], img[:6, -6:]]).reshape(-1, 3).mean(0)
        for b, c in corners.items():
            others = [np.linalg.norm(c - corners[o]) for o in BACKGROUNDS if o != b]
            assert min(others) > 25, (style, b)


def test_different_identities_look_different():
    rng = np.random.default_rng(2)
    ids = sample_identities(12, rng)
    ctx = Context("white", "plain", False, False, False, "photo", "portrait")
    imgs = [render(v, ctx, rng=np.random.default_rng(0)).image.astype(np.float32) for v in ids]
    for i in range(len(imgs)):
        for j in range(i + 1, len(imgs)):
            assert np.abs(imgs[i] - imgs[j])[12:52, 14:50].mean() > 4.0


def test_context_dict_round_trip_and_validation():
    rng = np.random.default_rng(0)
    for _ in range(20):
        c = Context.random(rng)
        assert Context.from_dict(c.to_dict()) == c
    assert Context.random(rng, style="sketch").style == "sketch"
    with pytest.raises(ValueError):
        Context(background="mauve")


def test_caption_round_trip():
    rng = np.random.default_rng(0)
    names = make_names(20, rng)
    for k in range(400):
        ctx = Context.random(rng)
        subject = names[k % len(names)] if k % 3 else "a person"
        mention = {m for m in MENTIONABLE if rng.random() < 0.6}
        text = write_caption(subject, ctx, mention=mention)
        got_subject, attrs = parse_caption(text, names=names)
        assert got_subject == (None if subject == "a person" else subject), text
        want = {}
        if "background" in mention:
            want["background"] = ctx.background
        if "pattern" in mention:
            want["pattern"] = ctx.pattern
        if "style" in mention:
            want["style"] = ctx.style
        if "framing" in mention and ctx.framing != "portrait":
            want["framing"] = ctx.framing
        if "accessories" in mention:
            want.update({a: True for a in ACCESSORIES if getattr(ctx, a)})
        assert attrs == want, text
    # random mentions still parse back
    for _ in range(50):
        ctx = Context.random(rng)
        text = write_caption("Mira Tolvan", ctx, rng=rng)
        _, attrs = parse_caption(text)
        assert all(getattr(ctx, k) == v for k, v in attrs.items()), text


def test_parse_free_prompts_and_context_from_caption():
    s, a = parse_caption("a painting of <id> wearing glasses, blue background")
    assert s == "<id>" and a == {"style": "painting", "glasses": True, "background": "blue"}
    s, a = parse_caption(
        "A close-up sketch of Mira Tolvan wearing a hat and glasses, striped red background"
    )
    assert s == "Mira Tolvan"
    assert a == {"style": "sketch", "framing": "close-up", "hat": True, "glasses": True,
                 "background": "red", "pattern": "striped"}  # fmt: skip
    s, a = parse_caption("a photo of a person, blue background")
    assert s is None and a == {"style": "photo", "background": "blue"}
    s, a = parse_caption("photo of sks without glasses on a polka dot yellow background")
    assert s == "sks" and a["glasses"] is False and a["pattern"] == "dotted"
    rng = np.random.default_rng(0)
    for _ in range(20):
        c = context_from_caption("a wide-shot sketch of <id> wearing a scarf, teal background", rng)
        assert (c.framing, c.style, c.scarf, c.background) == ("wide", "sketch", True, "teal")


def test_names_unique_disjoint_and_vocabulary_free(tmp_path):
    rng = np.random.default_rng(0)
    names = make_names(2000, rng)
    assert len({n.lower() for n in names}) == len(names)
    vocab = {w.lower() for w in CAPTION_WORDS}
    for n in names:
        first, last = n.split(" ")
        assert first[0].isupper() and last[0].isupper() and first[1:].islower()
        assert first.lower() not in vocab and last.lower() not in vocab
    more = make_names(200, rng, exclude=names)
    assert not {n.lower() for n in more} & {n.lower() for n in names}
    known, new = make_people(300, 60, seed=4)
    known2, new2 = make_people(300, 60, seed=4)
    assert known.names == known2.names and np.array_equal(new.params, new2.params)
    assert not set(known.names) & set(new.names)
    assert (known.kind, new.kind) == ("known", "new")
    path = tmp_path / "people.json"
    save_people(path, known, new)
    k3, n3 = People.load(path)
    assert k3.names == known.names and np.allclose(n3.params, new.params, atol=1e-6)
    back = People.from_json(new.to_json())
    assert back.names == new.names and back.kind == "new"
    assert np.allclose(back.params, new.params, atol=1e-6)
    allp = np.concatenate([known.params, new.params])
    assert allp.min() >= 0 and allp.max() <= 1
    d = np.sqrt(((allp[:, None] - allp[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    assert d.min() >= MIN_IDENTITY_DISTANCE - 1e-5


def test_sample_identities_many_and_distant():
    ids = sample_identities(3000, np.random.default_rng(1))
    assert ids.shape == (3000, IDENTITY_DIM) and ids.dtype == np.float32
    sq = (ids**2).sum(1)
    d2 = sq[:, None] - 2 * ids @ ids.T + sq[None]
    np.fill_diagonal(d2, np.inf)
    assert d2.min() >= MIN_IDENTITY_DISTANCE**2 - 1e-4


def test_render_background():
    rng = np.random.default_rng(0)
    for style in STYLES:
        for size in (64, 32):
            img = render_background(Context("green", "dotted", style=style), size=size, rng=rng)
            assert img.shape == (size, size, 3) and img.dtype == np.uint8
            mean = img.reshape(-1, 3).mean(0)
            assert mean[1] > mean[0] + 30 and mean[1] > mean[2] + 30


def test_contact_sheet():
    rng = np.random.default_rng(0)
    rs = [render(rng.random(IDENTITY_DIM), Context.random(rng), rng=rng) for _ in range(5)]
    sheet = contact_sheet(rs, 3)
    assert sheet.shape == (2 * 66 + 2, 3 * 66 + 2, 3) and sheet.dtype == np.uint8
