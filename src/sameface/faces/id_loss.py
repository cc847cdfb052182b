"""The face models behind a recogniser name: its embedding width, and the differentiable
recogniser + detector that ID losses run on generated images (PuLID stages 2-3, MagiCapture).

    sface        SFace (ONNX for identities, its torch port for the loss) + YuNet
    world        the proving-ground world's recogniser (`torch_module()` for the loss) + its
                 detector (`sameface.world.faces`)
    insightface, dlib  embeddings only: no differentiable version for the ID loss
"""

from __future__ import annotations

from typing import Any

from ..errors import SamefaceError

__all__ = ["RECOGNIZER_DIMS", "id_loss_models", "recognizer_dim"]

RECOGNIZER_DIMS = {"sface": 128, "insightface": 512, "dlib": 128, "world": 64}
"""Embedding width of each recogniser sameface has (`sameface.faces.recognizers`; "world" is
the proving-ground world's, `sameface.world.faces.WorldRecognizer`: 64 in the shipped world,
read from the world itself by `recognizer_dim`)."""


def _name_and_world(recognizer: Any, world: Any) -> tuple[str, Any]:
    """A recogniser name, or a settings object with `.recognizer` (and `.world`)."""
    if isinstance(recognizer, str):
        return recognizer, world
    return recognizer.recognizer, getattr(recognizer, "world", world)


def recognizer_dim(recognizer: Any, world: Any = None) -> int:
    """Embedding width of `recognizer` (the world's own width for "world").

    Args:
        recognizer: a name (see `RECOGNIZER_DIMS`) or a config with `.recognizer` / `.world`.
        world: the world folder for "world" (default: `resolve_world`'s).
    """
    name, world = _name_and_world(recognizer, world)
    if name == "world":
        return int(_world(world).recognizer.dim)
    return RECOGNIZER_DIMS[name]


def id_loss_models(recognizer: Any, device: Any = "cpu", world: Any = None) -> tuple[Any, Any]:
    """(recogniser, detector) for `sameface.losses.face_id_loss`.

    The recogniser is a frozen `torch.nn.Module` on `device`, (N, 3, 112, 112) aligned crops
    in 0..255 -> (N, D) unit embeddings, in the same space as the identities' embeddings;
    the detector has `detect(rgb_uint8) -> list[Face]`.

    Args:
        recognizer: "sface" or "world", or a config with `.recognizer` / `.world`.
        device: where the recogniser runs.
        world: the world folder for "world" (default: `resolve_world`'s).

    Raises:
        SamefaceError: the recogniser has no differentiable version.
    """
    name, world = _name_and_world(recognizer, world)
    if name == "sface":
        from .detect import YuNetDetector
        from .torch_sface import load_sface_torch

        return load_sface_torch(device=device), YuNetDetector()
    if name == "world":
        w = _world(world)
        return w.recognizer.torch_module().to(device), w.detector
    raise SamefaceError(
        f"the ID loss needs a differentiable recogniser: sface or world, not {name} (its "
        "embeddings would not match the loss's); prepare the data and identities with sface"
    )


def _world(folder: Any) -> Any:
    from ..world.world import World

    return World.load(folder)
