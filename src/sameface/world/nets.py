"""The world's small vision networks: face recogniser, face detector, context classifier.

Each is a plain `torch.nn.Module` saved as `<name>.safetensors` (fp16) + `<name>.json`
(its constructor arguments and anything measured at build time, e.g. the recogniser's
same-person threshold).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ArtifactError
from ..fileio import write_json_atomic, write_with
from .render import BACKGROUNDS, FRAMINGS, PATTERNS, STYLES

ACCESSORIES = ("hat", "glasses", "scarf")
"""Binary context attributes (each its own head)."""


def context_heads() -> dict[str, int]:
    """Classifier head sizes: categorical attributes have one class per value, accessories two."""
    return {
        "background": len(BACKGROUNDS),
        "pattern": len(PATTERNS),
        "style": len(STYLES),
        "framing": len(FRAMINGS),
        **{a: 2 for a in ACCESSORIES},
    }


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.SiLU(),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.SiLU(),
    )


class Backbone(nn.Module):
    """Strided conv stack: (B, 3, S, S) in [-1, 1] -> (B, C) pooled features.

    Every block halves the resolution (64 px in, 4×4 at the end): cheap enough to train on
    two CPU cores, and the world's features are all larger than a couple of pixels.
    """

    def __init__(self, widths: tuple[int, ...]):
        super().__init__()
        layers, cin = [], 3
        for w in widths:
            layers.append(_block(cin, w, 2))
            cin = w
        self.body = nn.Sequential(*layers)
        self.out_dim = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean((2, 3))


class FaceRecognizerNet(nn.Module):
    """Aligned face -> unit identity embedding (the world's "ArcFace").

    Input is what `sameface.faces` recognisers and `face_id_loss` use: (N, 3, 112, 112)
    ArcFace-aligned crops with values 0..255. They are resized to `input_size` inside, so
    the network is differentiable from the crop's pixels.
    """

    def __init__(
        self, dim: int = 64, input_size: int = 48, widths: tuple[int, ...] = (32, 64, 96, 128)
    ):
        super().__init__()
        self.config = {"dim": dim, "input_size": input_size, "widths": list(widths)}
        self.input_size = input_size
        self.backbone = Backbone(tuple(widths))
        self.head = nn.Sequential(nn.Linear(self.backbone.out_dim, dim), nn.BatchNorm1d(dim))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = crops / 127.5 - 1.0
        if x.shape[-1] != self.input_size:
            x = F.interpolate(
                x, size=(self.input_size,) * 2, mode="bilinear", antialias=True, align_corners=False
            )
        return F.normalize(self.head(self.backbone(x)), dim=-1)


class FaceDetectorNet(nn.Module):
    """Whole image -> face logit, box and 5 landmarks (coordinates as fractions of the side).

    The world's portraits hold at most one face, so one regression head is enough.
    """

    def __init__(self, input_size: int = 64, widths: tuple[int, ...] = (24, 48, 96, 128)):
        super().__init__()
        self.config = {"input_size": input_size, "widths": list(widths)}
        self.input_size = input_size
        self.backbone = Backbone(tuple(widths))
        self.head = nn.Linear(self.backbone.out_dim, 1 + 4 + 10)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """`images`: (B, 3, S, S) in [-1, 1] at `input_size`."""
        out = self.head(self.backbone(images))
        return {
            "logit": out[:, 0],
            "box": out[:, 1:5],
            "landmarks": out[:, 5:].reshape(-1, 5, 2),
        }


class ContextNet(nn.Module):
    """Whole image -> logits per context attribute (background, pattern, style, framing, accessories)."""

    def __init__(self, input_size: int = 64, widths: tuple[int, ...] = (24, 48, 96, 128)):
        super().__init__()
        self.config = {"input_size": input_size, "widths": list(widths)}
        self.input_size = input_size
        self.backbone = Backbone(tuple(widths))
        self.heads = nn.ModuleDict(
            {k: nn.Linear(self.backbone.out_dim, n) for k, n in context_heads().items()}
        )

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(images)
        return {k: h(feats) for k, h in self.heads.items()}


NETS = {
    "recognizer": FaceRecognizerNet,
    "judge": FaceRecognizerNet,  # the scoring-only second recogniser
    "detector": FaceDetectorNet,
    "context": ContextNet,
}
"""Saved network name -> class."""


def save_net(
    net: nn.Module, folder: str | os.PathLike, name: str, extra: dict | None = None
) -> Path:
    """Write `name.safetensors` (fp16) and `name.json` (config + `extra`) atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: (v.half() if v.is_floating_point() else v).detach().contiguous().cpu()
        for k, v in net.state_dict().items()
    }
    path = folder / f"{name}.safetensors"
    write_with(path, lambda tmp: save_file(tensors, str(tmp)))
    write_json_atomic(
        folder / f"{name}.json", {"class": name, "config": net.config} | (extra or {})
    )
    return path


def load_net(folder: str | os.PathLike, name: str) -> tuple[nn.Module, dict]:
    """(network in eval mode, float32, its JSON record) from `save_net`'s files.

    Raises:
        ArtifactError: missing or damaged files.
    """
    from safetensors import SafetensorError

    from ..tensorfile import read_safetensors

    folder = Path(folder)
    meta_path, weights = folder / f"{name}.json", folder / f"{name}.safetensors"
    try:
        meta = json.loads(meta_path.read_text())
        net = NETS[name](**meta["config"])
        state, _ = read_safetensors(weights)
        net.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        )
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        raise ArtifactError(
            f"{folder}: cannot load the world's {name} ({type(e).__name__}: {e}); rebuild it with "
            "`sameface world build`"
        ) from None
    return net.eval().requires_grad_(False), meta


def to_net_input(images: Any, size: int) -> torch.Tensor:
    """RGB uint8 images (N, H, W, 3) or one (H, W, 3) -> (N, 3, size, size) float in [-1, 1]."""
    import numpy as np

    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    x = torch.from_numpy(np.array(arr, np.float32)).permute(0, 3, 1, 2) / 127.5 - 1.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return x
