"""Face-recognition backbones read at several depths: the M² ID encoder's multi-scale features.

One small interface (`FaceBackbone`): aligned faces in, K feature vectors out.

    features(aligned (N, 3, 112, 112), values 0..255) -> [ (N, C_1), ..., (N, C_K) ]

The last one is always the recogniser's identity embedding; the others are read at
increasing depths. Three kinds:

- `ArcFaceViT` — the ViT face recognisers of insightface's `arcface_torch` (vit_t / vit_s /
  vit_b ...), loaded from the user's local weights with their state-dict names. The paper
  reads the CLS token of ViT layers 3, 6, 9, 12 and the last; arcface_torch's ViTs have no
  CLS token, so a layer is read as the mean of its tokens, and "the last" is the model's
  embedding.
- `SFaceStages` — the shipped SFace network (MobileFaceNet, `sameface.faces.torch_sface`),
  globally pooled at the end of each resolution stage (56, 28, 14, 7 px) plus its
  embedding: the offline default, present on a fresh machine.
- `WorldStages` — the proving-ground world's recogniser, pooled after each of its blocks
  plus its embedding.

Every backbone is frozen (inference mode, no gradients to its weights).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...errors import ArtifactError, ModelNotFoundError

VIT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
TINY_VIT = "tiny-vit"


class FaceBackbone(nn.Module):
    """Base of the backbones: frozen, in eval mode; subclasses set `dims` and `features`."""

    dims: list[int]
    """Width of each feature `features` returns (the last: the identity embedding)."""

    def freeze(self) -> FaceBackbone:
        self.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> FaceBackbone:
        """No-op: a backbone stays in eval mode (frozen BatchNorm statistics, no dropout)."""
        return super().train(False)

    def features(self, aligned: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": type(self).__name__, "dims": list(self.dims)}


def _check_input(aligned: torch.Tensor) -> None:
    if aligned.ndim != 4 or tuple(aligned.shape[1:]) != (3, 112, 112):
        raise ValueError(
            f"a face backbone takes aligned faces (N, 3, 112, 112), got {tuple(aligned.shape)}"
        )


# ---- ViT (arcface_torch layout) ----------------------------------------------------------


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.ReLU6(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, qkv_bias: bool):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads, qkv_bias)
        self.mlp = _Mlp(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ArcFaceViT(FaceBackbone):
    """arcface_torch's ViT face recogniser (LayerNorm blocks, ReLU6 MLP, no CLS token, a
    flatten → Linear → BN → Linear → BN embedding head), with its state-dict names.

    Input normalisation as arcface_torch: RGB (x / 255 − 0.5) / 0.5.

    Args:
        dim, depth, heads, patch, num_patches, hidden, num_features, qkv_bias: the shape.
        layers: 1-based block indices read as features (the paper: 3, 6, 9, 12).
    """

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        heads: int,
        patch: int,
        num_patches: int,
        hidden: int,
        num_features: int,
        qkv_bias: bool = False,
        layers: tuple[int, ...] = (3, 6, 9, 12),
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"ViT width {dim} is not divisible by {heads} heads (vit_heads)")
        bad = [i for i in layers if not 1 <= i <= depth]
        if bad:
            raise ValueError(f"feature_layers {bad} outside this ViT's blocks 1..{depth}")
        side = 112 // patch
        if side * side != num_patches:
            raise ValueError(f"{num_patches} positions do not fit 112 px in {patch} px patches")
        self.shape = {
            "dim": dim, "depth": depth, "heads": heads, "patch": patch,
            "num_patches": num_patches, "hidden": hidden, "num_features": num_features,
            "qkv_bias": qkv_bias,
        }  # fmt: skip
        self.layers = tuple(layers)
        self.patch_embed = _PatchEmbed(patch, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, dim))
        self.blocks = nn.ModuleList(_Block(dim, heads, hidden, qkv_bias) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.feature = nn.Sequential(
            nn.Linear(dim * num_patches, dim, bias=False),
            nn.BatchNorm1d(dim, eps=2e-5),
            nn.Linear(dim, num_features, bias=False),
            nn.BatchNorm1d(num_features, eps=2e-5),
        )
        self.mask_token = nn.Parameter(
            torch.zeros(1, 1, dim)
        )  # training-time only; kept for the names
        self.dims = [dim] * len(self.layers) + [num_features]

    @classmethod
    def from_state_dict(
        cls,
        sd: dict[str, torch.Tensor],
        heads: int,
        layers: tuple[int, ...],
        source: str = "weights",
    ) -> ArcFaceViT:
        """Infer the shape from an arcface_torch ViT state dict and load it strictly.

        Raises:
            ArtifactError: not an arcface_torch ViT, or weights that do not fit.
        """
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
        need = (
            "pos_embed",
            "patch_embed.proj.weight",
            "blocks.0.mlp.fc1.weight",
            "feature.2.weight",
        )
        missing = [k for k in need if k not in sd]
        if missing:
            raise ArtifactError(
                f"{source}: not an arcface_torch ViT face recogniser (no {', '.join(missing)}); "
                "expected the state dict of insightface's recognition/arcface_torch vit_* backbones"
            )
        depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
        try:
            model = cls(
                dim=int(sd["pos_embed"].shape[-1]),
                depth=depth,
                heads=heads,
                patch=int(sd["patch_embed.proj.weight"].shape[-1]),
                num_patches=int(sd["pos_embed"].shape[1]),
                hidden=int(sd["blocks.0.mlp.fc1.weight"].shape[0]),
                num_features=int(sd["feature.2.weight"].shape[0]),
                qkv_bias="blocks.0.attn.qkv.bias" in sd,
                layers=layers,
            )
        except ValueError as e:
            raise ArtifactError(f"{source}: {e}") from None
        sd.setdefault("mask_token", model.mask_token.detach())
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise ArtifactError(
                f"{source}: weights of the wrong shape for an arcface_torch ViT ({str(e).splitlines()[0]})"
            ) from None
        return model.freeze()

    def features(self, aligned: torch.Tensor) -> list[torch.Tensor]:
        _check_input(aligned)
        x = self.patch_embed(aligned / 127.5 - 1.0) + self.pos_embed
        out = []
        for i, block in enumerate(self.blocks, start=1):
            x = block(x)
            if i in self.layers:
                out.append(x.mean(1))  # stands in for the CLS token these ViTs do not have
        emb = self.feature(self.norm(x).flatten(1))
        return [*out, emb]

    def describe(self) -> dict:
        return super().describe() | {"shape": self.shape, "layers": list(self.layers)}


def tiny_vit(layers: tuple[int, ...] = (1, 2, 3, 4), seed: int = 0) -> ArcFaceViT:
    """A random 4-block arcface_torch-shaped ViT (tests)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ArcFaceViT(
            dim=32, depth=4, heads=2, patch=16, num_patches=49, hidden=64, num_features=24,
            layers=layers,
        )  # fmt: skip
        for m in model.modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                nn.init.normal_(m.weight, std=0.05)
        nn.init.normal_(model.pos_embed, std=0.02)
    return model.freeze()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: safetensors, or a torch state dict read with
    `weights_only=True` (no pickled code runs). A {"state_dict": ...} wrapper is unwrapped."""
    from ...tensorfile import read_weights

    return read_weights(path)


# ---- CNN recognisers read at their resolution stages ---------------------------------------


class SFaceStages(FaceBackbone):
    """SFace (MobileFaceNet) pooled at the end of each stage below the input resolution."""

    def __init__(self, sface: Any):
        super().__init__()
        self.sface = sface
        layers = list(sface.layers.children())
        # The last layer of each spatial size (the stage ends), found once on a blank face.
        taps: dict[int, tuple[int, int]] = {}
        first = next(sface.parameters())
        with torch.no_grad():
            x = torch.zeros(1, 3, 112, 112, dtype=first.dtype, device=first.device)
            for i, layer in enumerate(layers):
                x = layer(x)
                if x.ndim == 4 and x.shape[-1] < 112:
                    taps[int(x.shape[-1])] = (i, int(x.shape[1]))
        self.taps = [i for i, _ in taps.values()]
        self.dims = [c for _, c in taps.values()] + [int(sface.dim)]
        self.freeze()

    def features(self, aligned: torch.Tensor) -> list[torch.Tensor]:
        _check_input(aligned)
        first = next(self.sface.parameters())
        out, x = [], aligned.to(first.device, first.dtype)
        for i, layer in enumerate(self.sface.layers.children()):
            x = layer(x)
            if i in self.taps:
                out.append(x.mean((2, 3)))
        return [*out, x]

    def describe(self) -> dict:
        return super().describe() | {"name": "sface"}


class WorldStages(FaceBackbone):
    """The world's recogniser pooled after each conv block, plus its embedding."""

    def __init__(self, net: Any, folder: str = ""):
        super().__init__()
        self.net, self.folder = net, folder
        self.dims = [int(b[3].out_channels) for b in net.backbone.body] + [int(net.config["dim"])]
        self.freeze()

    def features(self, aligned: torch.Tensor) -> list[torch.Tensor]:
        _check_input(aligned)
        x = aligned / 127.5 - 1.0
        if x.shape[-1] != self.net.input_size:
            size = (self.net.input_size,) * 2
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        out = []
        for block in self.net.backbone.body:
            x = block(x)
            out.append(x.mean((2, 3)))
        emb = F.normalize(self.net.head(x.mean((2, 3))), dim=-1)
        return [*out, emb]

    def describe(self) -> dict:
        return super().describe() | {"name": "world", "folder": self.folder}


# ---- loading -------------------------------------------------------------------------------


def load_backbone(
    spec: str,
    *,
    layers: tuple[int, ...] = (3, 6, 9, 12),
    heads: int = 8,
    device: Any = "cpu",
    world: str | os.PathLike | None = None,
) -> FaceBackbone:
    """The backbone a config names (never downloads).

    Args:
        spec: "sface" (the shipped SFace network), "world" or "world:FOLDER" (a proving-ground
            world's recogniser), "tiny-vit[:seed]" (tests), or a local arcface_torch ViT weights file
            (.safetensors, .pt, .pth, .bin).
        layers: ViT blocks read as features (1-based).
        heads: ViT attention heads (not recorded in arcface_torch weights; 8 in all its vit_*).
        device: where the backbone runs.
        world: the world folder for "world" (default: `resolve_world`'s).

    Raises:
        ModelNotFoundError: a weights file that does not exist.
        ArtifactError: weights that are not an arcface_torch ViT or do not fit.
    """
    if spec == "sface":
        from ...faces.torch_sface import load_sface_torch

        return SFaceStages(load_sface_torch(device=device))
    if spec == "world" or spec.startswith("world:"):
        from ...world.world import World

        w = World.load(spec.partition(":")[2] or world)
        return WorldStages(w.recognizer.torch_module(), str(w.folder)).to(device)
    if spec == TINY_VIT or spec.startswith(TINY_VIT + ":"):
        seed = int(spec.partition(":")[2] or 0)
        return tiny_vit(layers, seed).to(device)
    path = Path(spec).expanduser()
    if path.suffix not in VIT_SUFFIXES:
        raise ModelNotFoundError(
            f"unknown face backbone {spec!r}: use sface (shipped), world, or a local arcface_torch "
            f"ViT weights file ({', '.join(VIT_SUFFIXES)}), e.g. the vit_t model.pt of insightface's "
            "arcface_torch model zoo"
        )
    if not path.is_file():
        raise ModelNotFoundError(
            f"face backbone weights not found: {path} (download an arcface_torch ViT, e.g. vit_t "
            "trained on WebFace42M, from insightface's model zoo, and give its local path)"
        )
    return ArcFaceViT.from_state_dict(read_state_dict(path), heads, layers, str(path)).to(device)


def num_words(backbone: FaceBackbone) -> int:
    """K: one pseudo-word per feature depth."""
    return len(backbone.dims)


__all__ = [
    "ArcFaceViT",
    "FaceBackbone",
    "SFaceStages",
    "WorldStages",
    "load_backbone",
    "num_words",
    "read_state_dict",
    "tiny_vit",
]
