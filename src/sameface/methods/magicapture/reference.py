"""MagiCapture's style reference: the whole portrait (its centre square), its face mask and the
face's embedding, checked to show someone other than the person being learnt."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import SamefaceError


def load_style_reference(
    source: Any,
    identity: Any,
    size: int,
    expand: float | None = 3.0,
    analyzer: Any = None,
    world: Any = None,
) -> Any:
    """A one-photo `Identity` of the reference: `squares[0]` the whole image's centre square,
    `masks[0]` its face (the reference prompt learns what lies outside it): `squares[0]` is
    the face box expanded by `expand` (a portrait's framing), or the image's centre square.

    Args:
        source: an image path / array / PIL image, or a ready `Identity` (then only checked).
        identity: the person being learnt (its recogniser embeds the reference's face).
        size: the square's side in pixels.
        expand: the square is the face box expanded this much; None = the image's centre square.
        analyzer: a ready `FaceAnalyzer` (default: one with the identity's recogniser).
        world: the world folder, for an identity embedded by the world's recogniser (None:
            `resolve_world`'s).

    Raises:
        FaceNotFoundError / ImageLoadError: no usable face, or an unreadable file.
        SamefaceError: the reference shows the same person, or its face mask is empty.
    """
    from ...identity import Identity

    if isinstance(source, Identity):
        ref = source
    else:
        if analyzer is None:
            analyzer = _analyzer(identity.meta.get("recognizer", {}).get("name", "sface"), world)
        ref = Identity.from_images(
            [source], analyzer=analyzer, square_size=size, square_expand=expand
        )
    if ref.embedding.shape != identity.embedding.shape:
        raise SamefaceError(
            "the style reference was embedded by another recogniser than the identity's"
        )
    threshold = identity.meta.get("recognizer", {}).get("same_person_threshold")
    similarity = float(np.dot(ref.embedding, identity.embedding))
    if threshold is not None and similarity >= float(threshold):
        raise SamefaceError(
            f"the style reference shows the same person as the photos (face similarity "
            f"{similarity:.2f} >= {float(threshold):.2f}): MagiCapture learns the reference's "
            "style without its face, so give a portrait of someone else"
        )
    if not ref.masks[0].any() or ref.masks[0].all():
        raise SamefaceError(
            "the style reference's face mask is empty or covers the whole square: use a portrait "
            "with a visible face and some background"
        )
    return ref


def _analyzer(name: str, world: Any) -> Any:
    """A face analyser with recogniser `name` (the world's own for "world")."""
    if name == "world":
        from ...world.world import World

        return World.load(world).analyzer()
    from ...faces import FaceAnalyzer

    return FaceAnalyzer(name)
