"""Choosing one face when an image has several."""

from __future__ import annotations

from ..errors import FaceNotFoundError
from .types import Face

FacePolicy = str | int
"""'largest', 'central', 'single' (error if more than one), or an index into the detections (largest first)."""

POLICIES = ("largest", "central", "single")


def parse_policy(value: str | int) -> FacePolicy:
    """Accept 'largest' / 'central' / 'single' or an integer index (also as a string)."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"face index must be >= 0, got {value}")
        return value
    v = str(value).strip().lower()
    if v.isdigit():
        return int(v)
    if v not in POLICIES:
        raise ValueError(
            f"face policy must be one of {', '.join(POLICIES)} or an index, got {value!r}"
        )
    return v


def select_face(
    faces: list[Face],
    image_size: tuple[int, int],
    policy: FacePolicy = "largest",
    *,
    name: str = "image",
) -> int:
    """Index of the face to use under `policy`.

    Args:
        faces: detections, largest first (as the detector returns them).
        image_size: (height, width) of the image.
        policy: see `FacePolicy`.
        name: image name for error messages.

    Raises:
        FaceNotFoundError: no faces, 'single' with several faces, or an index out of range.
    """
    policy = parse_policy(policy)
    if not faces:
        raise FaceNotFoundError(f"{name}: no face found")
    if isinstance(policy, int):
        if policy >= len(faces):
            raise FaceNotFoundError(
                f"{name}: face index {policy} requested but only {len(faces)} face(s) found"
            )
        return policy
    if policy == "single":
        if len(faces) > 1:
            raise FaceNotFoundError(
                f"{name}: {len(faces)} faces found where one was expected; choose with a face policy "
                "('largest', 'central' or an index)"
            )
        return 0
    if policy == "central":
        h, w = image_size
        return min(
            range(len(faces)),
            key=lambda i: (faces[i].center[0] - w / 2) ** 2 + (faces[i].center[1] - h / 2) ** 2,
        )
    return max(range(len(faces)), key=lambda i: faces[i].area)
