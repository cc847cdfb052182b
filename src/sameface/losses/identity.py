"""The accurate ID loss on generated images (PuLID, seed 004):
L_id = 1 − CosSim(φ(C_id), φ(L-T2I(x_T, C_id, C_txt)))."""

from __future__ import annotations

from typing import Any

import numpy as np


def face_id_loss(images: Any, reference: Any, recognizer: Any, detector: Any) -> tuple[Any, Any]:
    """Mean 1 − cos between each generated face and its reference embedding.

    Faces are found by a (non-differentiable) detector on the detached images; the crop is
    then aligned differentiably with those landmarks, so gradients reach the pixels.
    Images with no face found do not count.

    Args:
        images: (B, 3, H, W) in [-1, 1] (e.g. from `generate_x0`).
        reference: (B, D) reference embeddings φ(C_id) of the same recogniser.
        recognizer: differentiable recogniser (`SFaceTorch`): (N, 3, 112, 112) in 0..255 -> (N, D).
        detector: a face detector with `detect(rgb_uint8) -> list[Face]`, largest first.

    Returns:
        (loss, found): the mean loss over images with a face (0 with a graph when none) and a
        (B,) bool tensor of which images had one.
    """
    import torch

    from ..faces.torch_sface import align_faces_torch, id_loss

    pixels = (images.float() + 1) * 127.5  # the recogniser's 0..255 input scale
    arrays = pixels.detach().clamp(0, 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    found, landmarks = [], []
    for arr in arrays:
        faces = detector.detect(np.ascontiguousarray(arr))
        found.append(bool(faces))
        if faces:
            landmarks.append(faces[0].landmarks)
    found_t = torch.tensor(found, device=images.device)
    if not landmarks:
        return images.sum() * 0.0, found_t
    crops = align_faces_torch(pixels[found_t], np.stack(landmarks))
    emb = recognizer(crops.to(next(recognizer.parameters()).dtype))
    return id_loss(emb.float(), reference[found_t].float()), found_t
