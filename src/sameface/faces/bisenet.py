"""A BiSeNet face parser (Yu et al. 2018, "BiSeNet: Bilateral Segmentation Network"), the one
PuLID parses its face input with, loaded from the user's local weights.

The network is the face-parsing one released with CelebAMask-HQ's 19 labels
(zllrunning/face-parsing.PyTorch, repackaged by facexlib as `parsing_bisenet.pth`): a
ResNet-18 context path with attention refinement at 1/16 and 1/32, a feature fusion module
at 1/8, and an output head per scale. Module names follow that state dict's keys, so the
released file loads strictly; the code is written here from the architecture. Weights are
read as safetensors or with `torch.load(weights_only=True)`; nothing is downloaded.

PuLID's face input (`pulid/pipeline_v1_1.py`): argmax labels of the aligned face; background,
clothes, hat, ears, earrings, neck and necklace (`PULID_DROPPED`) become white, the rest —
skin, brows, eyes, glasses, nose, mouth, lips and the hair — the face's grey.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelNotFoundError, SamefaceError

LABELS: tuple[str, ...] = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear",
    "ear_r", "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)  # fmt: skip
"""CelebAMask-HQ's 19 classes, in the network's output order."""

PULID_DROPPED: tuple[int, ...] = (0, 16, 18, 7, 8, 9, 14, 15)
"""Labels PuLID paints white: background, cloth, hat, both ears, earring, neck, necklace."""

INPUT_SIZE = 512
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _ConvBN(nn.Module):
    """Conv (no bias) → BatchNorm → ReLU."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, pad: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, pad, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class _Block(nn.Module):
    """ResNet basic block: two 3×3 convs on a (projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class _ResNet18(nn.Module):
    """The backbone; returns the features at 1/8, 1/16 and 1/32."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        widths = ((64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2))
        for i, (cin, cout, stride) in enumerate(widths, start=1):
            self.add_module(
                f"layer{i}", nn.Sequential(_Block(cin, cout, stride), _Block(cout, cout))
            )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        f8 = self.layer2(self.layer1(x))
        f16 = self.layer3(f8)
        return f8, f16, self.layer4(f16)


class _Refine(nn.Module):
    """Attention refinement: the features scaled by a channel attention of their mean."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = _ConvBN(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        return feat * torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean((2, 3), keepdim=True))))


class _ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = _ResNet18()
        self.arm16 = _Refine(256, 128)
        self.arm32 = _Refine(512, 128)
        self.conv_head32 = _ConvBN(128, 128)
        self.conv_head16 = _ConvBN(128, 128)
        self.conv_avg = _ConvBN(512, 128, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f8, f16, f32 = self.resnet(x)
        glob = self.conv_avg(f32.mean((2, 3), keepdim=True))  # the image's global context
        up32 = F.interpolate(self.arm32(f32) + glob, f16.shape[2:], mode="nearest")
        up32 = self.conv_head32(up32)
        up16 = F.interpolate(self.arm16(f16) + up32, f8.shape[2:], mode="nearest")
        return f8, self.conv_head16(up16), up32


class _Fuse(nn.Module):
    """Feature fusion: concatenated features, re-weighted by a squeeze-excitation gate."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = _ConvBN(cin, cout, 1, 1, 0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        gate = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean((2, 3), keepdim=True)))))
        return feat * gate + feat


class _Head(nn.Module):
    def __init__(self, cin: int, mid: int, classes: int):
        super().__init__()
        self.conv = _ConvBN(cin, mid)
        self.conv_out = nn.Conv2d(mid, classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """The face-parsing BiSeNet: (B, 3, H, W) ImageNet-normalised RGB -> (B, classes, H, W)
    logits of the main head (the two auxiliary heads exist for the released weights' keys)."""

    def __init__(self, num_classes: int = len(LABELS)):
        super().__init__()
        self.cp = _ContextPath()
        self.ffm = _Fuse(256, 256)
        self.conv_out = _Head(256, 256, num_classes)
        self.conv_out16 = _Head(128, 64, num_classes)
        self.conv_out32 = _Head(128, 64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f8, cp8, _ = self.cp(x)
        logits = self.conv_out(self.ffm(f8, cp8))
        return F.interpolate(logits, x.shape[2:], mode="bilinear", align_corners=True)


class FaceParser:
    """A loaded BiSeNet with PuLID's pre- and post-processing.

    Args:
        net: a `BiSeNet` with its weights.
        device: where it runs.
    """

    def __init__(self, net: BiSeNet, device: Any = "cpu", name: str = "bisenet"):
        self.net = net.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        self.name = name

    @classmethod
    def load(cls, path: str | os.PathLike, device: Any = "cpu") -> FaceParser:
        """Load `parsing_bisenet.pth` (facexlib) / `79999_iter.pth` (face-parsing.PyTorch) or
        the same tensors as .safetensors.

        Raises:
            ModelNotFoundError: no such file.
            SamefaceError: the file is not a BiSeNet face parser's weights.
        """
        p = Path(path).expanduser()
        if not p.is_file():
            raise ModelNotFoundError(
                f"face parser weights not found: {p}. PuLID's face input needs facexlib's "
                "parsing_bisenet.pth (github.com/xinntao/facexlib releases v0.2.0); put it "
                "on disk and pass its path. Without it sameface's face masks are used."
            )
        state = _read_state(p)
        net = BiSeNet(num_classes=_classes(state, p))
        missing, unexpected = _key_problems(net, state)
        if missing or unexpected:
            raise SamefaceError(
                f"{p}: not a BiSeNet face parser ({len(missing)} missing keys, e.g. "
                f"{missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]})"
            )
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise SamefaceError(f"{p}: tensors of the wrong shape for BiSeNet ({e})") from None
        return cls(net, device, name=f"bisenet:{p.name}")

    @torch.no_grad()
    def labels(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W) int64 labels of (B, 3, H, W) RGB images in [0, 1], parsed at 512 px (the
        released network's size) and read back at the images' own size."""
        x = images.to(self.device, torch.float32)
        h, w = x.shape[-2:]
        if (h, w) != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, (INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        logits = self.net((x - mean) / std)
        if (h, w) != (INPUT_SIZE, INPUT_SIZE):
            logits = F.interpolate(logits, (h, w), mode="bilinear", align_corners=False)
        return logits.argmax(dim=1)

    def face_mask(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W) float mask: 1 where PuLID keeps the face (`keep_mask` of the labels)."""
        return keep_mask(self.labels(images)).to(images.device)


def keep_mask(labels: torch.Tensor, dropped: tuple[int, ...] = PULID_DROPPED) -> torch.Tensor:
    """1.0 where a label is not one of `dropped`, else 0.0 (PuLID's hard mask)."""
    drop = torch.zeros(
        max(max(dropped), int(labels.max()) if labels.numel() else 0) + 1, dtype=torch.bool
    )
    drop[list(dropped)] = True
    return (~drop.to(labels.device)[labels]).float()


def _read_state(path: Path) -> dict:
    from ..tensorfile import read_weights

    state = read_weights(path, SamefaceError)
    return {k.removeprefix("module."): v for k, v in state.items()}


def _classes(state: dict, path: Path) -> int:
    head = state.get("conv_out.conv_out.weight")
    if head is None or head.ndim != 4:
        raise SamefaceError(f"{path}: not a BiSeNet face parser (no conv_out.conv_out.weight)")
    return int(head.shape[0])


def _key_problems(net: nn.Module, state: dict) -> tuple[list[str], list[str]]:
    ours = set(net.state_dict())
    return sorted(ours - set(state)), sorted(set(state) - ours)


__all__ = ["INPUT_SIZE", "LABELS", "PULID_DROPPED", "BiSeNet", "FaceParser", "keep_mask"]
