"""Image tensors from identities and cached VAE latents (encoding every step costs seconds on a CPU)."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_tensor_images(images: np.ndarray, size: int) -> Any:
    """(N, H, W, 3) uint8 -> (N, 3, size, size) float32 in [-1, 1]."""
    import cv2
    import torch

    out = [
        cv2.resize(
            im,
            (size, size),
            interpolation=cv2.INTER_AREA if im.shape[0] > size else cv2.INTER_CUBIC,
        )
        for im in images
    ]
    arr = np.stack(out).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def to_tensor_masks(masks: np.ndarray, size: int) -> Any:
    """(N, H, W) uint8 masks -> (N, 1, size, size) float32 in [0, 1] (area-averaged, so edges are soft)."""
    import cv2
    import torch

    out = [cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA) for m in masks]
    return torch.from_numpy(np.stack(out).astype(np.float32) / 255.0)[:, None]


def encode_latent_stats(vae: Any, images: Any, batch_size: int = 1) -> tuple[Any, Any]:
    """Mean and std of the VAE posterior for each image, already multiplied by the scaling factor.

    A training step then samples `mean + std * ε` instead of running the encoder again.
    """
    import torch

    sf = float(vae.config.scaling_factor)
    means, stds = [], []
    param = next(vae.parameters())
    with torch.no_grad():
        for i in range(0, images.shape[0], batch_size):
            dist = vae.encode(images[i : i + batch_size].to(param.device, param.dtype)).latent_dist
            means.append(dist.mean.float() * sf)
            stds.append(dist.std.float() * sf)
    return torch.cat(means), torch.cat(stds)
