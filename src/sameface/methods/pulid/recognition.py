"""The face models behind `PuLIDConfig.recognizer`: the embedding width PuLID's encoder reads,
and the differentiable recogniser + detector of the ID loss (training stages 2 and 3).

    sface        SFace (ONNX for identities, its torch port for the loss) + YuNet
    world        the proving-ground world's recogniser (`torch_module()` for the loss) + its
                 detector (`sameface.world.faces`)
    insightface, dlib  embeddings only: no differentiable version for the ID loss
"""

from __future__ import annotations

from typing import Any

from ...errors import SamefaceError
from .config import RECOGNIZER_DIMS

__all__ = ["id_loss_models", "recognizer_dim"]


def recognizer_dim(cfg: Any) -> int:
    """Embedding width of `cfg.recognizer` (the world's own width for "world")."""
    if cfg.recognizer == "world":
        return int(_world(cfg).recognizer.dim)
    return RECOGNIZER_DIMS[cfg.recognizer]


def id_loss_models(cfg: Any, device: Any = "cpu") -> tuple[Any, Any]:
    """(recogniser, detector) for `sameface.losses.face_id_loss` with `cfg.recognizer`.

    The recogniser is a frozen `torch.nn.Module` on `device`, (N, 3, 112, 112) aligned crops
    in 0..255 -> (N, D) unit embeddings, in the same space as the dataset's embeddings; the
    detector has `detect(rgb_uint8) -> list[Face]`.

    Raises:
        SamefaceError: the recogniser has no differentiable version.
    """
    if cfg.recognizer == "sface":
        from ...faces import YuNetDetector
        from ...faces.torch_sface import load_sface_torch

        return load_sface_torch(device=device), YuNetDetector()
    if cfg.recognizer == "world":
        world = _world(cfg)
        return world.recognizer.torch_module().to(device), world.detector
    raise SamefaceError(
        f"the ID loss (stages 2-3) needs a differentiable recogniser: sface or world, not "
        f"{cfg.recognizer} (its embeddings would not match the loss's); train stage 1 only, "
        "or prepare the data with sface"
    )


def _world(cfg: Any) -> Any:
    from ...world.world import World

    return World.load(cfg.world)
