"""A frozen CLIP image encoder: images -> projected embedding and ViT hidden states.

The face encoders of the tuning-free methods read faces with it: PuLID (seed 004) takes the
projected embedding of the parsed face and the hidden states of several ViT layers, FeedFace
(seed 002) the last layer's hidden states of the face crop. It is a
`transformers.CLIPVisionModelWithProjection`, loaded only from local files (a folder, or a
hub id already in the Hugging Face cache), EVA02-CLIP's vision tower from its released
checkpoint (`sameface.models.eva02`), or a tiny random one for tests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ModelNotFoundError
from .clip import CLIP_MEAN_RGB, CLIP_STD_RGB

__all__ = ["CLIP_MEAN", "CLIP_STD", "TINY_PREFIX", "ClipVision", "tiny_clip_vision"]

CLIP_MEAN, CLIP_STD = CLIP_MEAN_RGB, CLIP_STD_RGB

TINY_PREFIX = "tiny-random"


class ClipVision:
    """A frozen CLIP vision tower with projection: images → (image embedding, ViT hidden states).

    Not an `nn.Module` on purpose: whoever holds it does not get its weights among their
    parameters or state dict. Move it with `.to(device, dtype)`.

    Args:
        model: a `transformers.CLIPVisionModelWithProjection`.
        name: the spec it was loaded from (recorded in trained folders).
        mean, std: per-channel normalisation (CLIP's by default).
    """

    def __init__(
        self,
        model: Any,
        name: str,
        *,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
    ):
        self.model = model.eval().requires_grad_(False)
        self.name = name
        self.source = name  # where the weights came from (a file for EVA02-CLIP)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        c = model.config
        self.image_size = int(c.image_size)
        self.clip_dim = int(c.projection_dim)
        self.vit_dim = int(c.hidden_size)
        self.num_layers = int(c.num_hidden_layers)
        self.seq_len = (self.image_size // int(c.patch_size)) ** 2 + 1  # patches + CLS

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def to(self, device: Any = None, dtype: Any = None) -> ClipVision:
        """Move / cast the model in place. Returns self."""
        kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        if kwargs:
            self.model.to(**kwargs)
        return self

    def describe(self) -> dict:
        """What trained folders record about the vision model."""
        return {
            "name": self.name,
            "clip_dim": self.clip_dim,
            "vit_dim": self.vit_dim,
            "num_layers": self.num_layers,
            "image_size": self.image_size,
            "seq_len": self.seq_len,
        }

    def check_layers(self, layers: Sequence[int]) -> None:
        """Raise ValueError unless every index is a hidden state this model has (0..num_layers)."""
        bad = [i for i in layers if not 0 <= int(i) <= self.num_layers]
        if bad:
            raise ValueError(
                f"vit_layers {list(layers)} do not fit {self.name} ({self.num_layers} layers: "
                f"hidden-state indices 0..{self.num_layers}); e.g. (4, 8, 12, 16, 20) for a "
                "24-layer ViT-L"
            )

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] → resized to the model's size (bicubic) and normalised."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got {tuple(images.shape)}")
        x = images.to(self.device, torch.float32)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(
                x,
                size=(self.image_size, self.image_size),
                mode="bicubic",
                align_corners=False,
                antialias=True,
            ).clamp(0, 1)  # bicubic overshoots
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.dtype)

    @torch.no_grad()
    def features(
        self, images: torch.Tensor, layers: Sequence[int]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Image embeddings and the hidden states of `layers` (no gradients).

        Args:
            images: (B, 3, H, W) float RGB in [0, 1] (any size; resized here).
            layers: indices into the hidden states (0 = embeddings, i = after layer i).

        Returns:
            (image_embeds (B, clip_dim), [hidden (B, seq_len, vit_dim) per layer]), on the
            images' device, in the model's dtype. The embedding is the raw projection (PuLID
            normalises it before concatenating).
        """
        self.check_layers(layers)
        out = self.model(pixel_values=self.preprocess(images), output_hidden_states=True)
        dev = images.device
        return out.image_embeds.to(dev), [out.hidden_states[int(i)].to(dev) for i in layers]

    @classmethod
    def load(
        cls,
        spec: str | os.PathLike,
        *,
        device: Any = "cpu",
        dtype: Any = None,
        local_files_only: bool = True,
    ) -> ClipVision:
        """Load from a folder, a hub id in the Hugging Face cache, an EVA02-CLIP checkpoint
        file (or its name, "EVA02-CLIP-L-14-336", from the cache: `sameface.models.eva02`, the
        tower PuLID's release needs), or "tiny-random[:seed]".

        Weights load as `dtype`, default float32 whatever the checkpoint stores (an fp16
        checkpoint, e.g. the proving-ground world's CLIP, is upcast: CPUs run fp16 slowly).

        A folder may hold a `CLIPVisionModelWithProjection` (e.g. IP-Adapter's image_encoder)
        or a whole `CLIPModel` (e.g. openai/clip-vit-large-patch14-336); only the vision tower
        and projection are loaded. Never downloads unless `local_files_only=False`.

        Raises:
            ModelNotFoundError: the weights are not available locally, or lack the projection.
        """
        spec = os.fspath(spec)
        if spec == TINY_PREFIX or spec.startswith(TINY_PREFIX + ":"):
            seed = spec.partition(":")[2]
            if seed and not seed.isdigit():
                raise ValueError(f"tiny CLIP vision spec is 'tiny-random[:seed]', got {spec!r}")
            return tiny_clip_vision(int(seed or 0)).to(device, dtype)
        eva = _eva02_file(spec)
        if eva is not None:  # EVA02-CLIP's own checkpoint: our port of its tower
            from .eva02 import NAME, load_eva02

            vision = cls(load_eva02(eva, dtype or torch.float32), NAME)
            vision.source = str(eva)
            return vision.to(device, dtype)
        path = _local_path(spec, local_files_only)
        model = _load_model(spec, path, dtype or torch.float32)
        mean, std = _normalisation(path)
        return cls(model, spec, mean=mean, std=std).to(device, dtype)


def _eva02_file(spec: str) -> Path | None:
    """The EVA02-CLIP checkpoint `spec` names: a `.pt` / `.bin` / `.safetensors` file (read as
    EVA-CLIP's `visual.*` layout), or the tower's name "EVA02-CLIP-L-14-336", found as
    `EVA02_CLIP_L_336_psz14_s6B.pt` of QuanSun/EVA-CLIP in the Hugging Face cache (never
    downloaded). None for any other spec.

    Raises:
        ModelNotFoundError: the name is given and the file is not in the cache.
    """
    from .eva02 import CHECKPOINT, HUB_REPO, NAME

    path = Path(spec)
    if path.suffix in (".pt", ".bin", ".pth", ".safetensors"):
        return path
    if spec != NAME:
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(HUB_REPO, CHECKPOINT)
    if isinstance(cached, str):
        return Path(cached)
    raise ModelNotFoundError(
        f"{NAME} is {CHECKPOINT} of {HUB_REPO}, not in the Hugging Face cache: download it "
        "yourself and pass its path (e.g. --set clip_vision=/path/" + CHECKPOINT + ")"
    )


def _local_path(spec: str, local_files_only: bool) -> Path:
    """A folder as given, or the cached snapshot folder of a hub id (sameface.models.resolve)."""
    from .resolve import local_model_folder

    return local_model_folder(
        spec,
        what="CLIP vision model",
        include=["*.json", "*.safetensors"],
        hint="set clip_vision to a local folder holding a CLIPVisionModelWithProjection or CLIPModel "
        "(config.json + *.safetensors)",
        local_files_only=local_files_only,
    )


def _load_model(spec: str, path: Path, dtype: torch.dtype) -> Any:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    from transformers.utils import logging as hf_logging

    from .base import _transformers_dtype_kwargs

    try:
        raw = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(f"{path}: no readable config.json ({e})") from None
    if raw.get("model_type") == "clip":
        # A whole CLIPModel: its vision_config may lack the top-level projection width.
        vision = dict(raw.get("vision_config") or {})
        vision["projection_dim"] = raw.get("projection_dim", vision.get("projection_dim", 512))
        config = CLIPVisionConfig(**vision)
    else:
        config = CLIPVisionConfig.from_pretrained(str(path), local_files_only=True)
    from ..errors import ModelError
    from ..tensorfile import check_header

    for weights in sorted(Path(path).glob("*.safetensors")):
        check_header(weights, ModelError)  # crafted headers end here, not inside transformers
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a CLIPModel's text weights are "unexpected": expected
    try:
        model, info = CLIPVisionModelWithProjection.from_pretrained(
            str(path),
            config=config,
            local_files_only=True,  # a local folder by now
            use_safetensors=True,
            output_loading_info=True,
            **_transformers_dtype_kwargs(dtype),  # transformers 5 keeps the stored dtype
        )
    except OSError as e:
        raise ModelNotFoundError(
            f"CLIP vision weights {spec!r} are not available locally ({str(e).splitlines()[0]})"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise ModelNotFoundError(
            f"{spec}: the checkpoint lacks {len(missing)} CLIP vision weight(s) (e.g. {missing[0]}); "
            "the face encoders need the vision tower and its projection (CLIPVisionModelWithProjection or CLIPModel)"
        )
    return model


def _normalisation(path: Path) -> tuple[Sequence[float], Sequence[float]]:
    """Mean/std from the folder's preprocessor_config.json when present, else CLIP's."""
    try:
        pre = json.loads((path / "preprocessor_config.json").read_text())
        mean, std = pre["image_mean"], pre["image_std"]
        if len(mean) == 3 and len(std) == 3:
            return mean, std
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return CLIP_MEAN, CLIP_STD


def tiny_clip_vision(seed: int = 0) -> ClipVision:
    """A small random CLIP vision tower for offline tests (its features mean nothing).

    4 layers of width 32, 32 px images in 8 px patches (17 tokens), 16-d embeddings. The same
    seed gives the same weights (so "tiny-random:<seed>" reloads it exactly); the caller's
    torch RNG is left as it was.
    """
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPVisionModelWithProjection(cfg)
    return ClipVision(model, f"{TINY_PREFIX}:{seed}" if seed else TINY_PREFIX)


REAL_CLIP_VISION = {
    "openai/clip-vit-large-patch14-336": dict(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=336, patch_size=14, projection_dim=768,
    ),
    "openai/clip-vit-base-patch32": dict(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        image_size=224, patch_size=32, projection_dim=512,
    ),
}  # fmt: skip
"""The vision towers of the CLIP models the methods use (PuLID: L/14-336; FeedFace: B/32)."""


def random_clip_vision(name: str, dtype=None, seed: int = 0) -> ClipVision:
    """A `REAL_CLIP_VISION` tower with random weights: the real architecture for slow tests
    and benchmarks (the caller's torch RNG is left as it was)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from sameface.models.random_init import fast_random

    cfg = CLIPVisionConfig(**REAL_CLIP_VISION[name], hidden_act="quick_gelu")
    model = fast_random(lambda: CLIPVisionModelWithProjection(cfg), seed=seed, dtype=dtype)
    return ClipVision(model, f"random:{name}")


def random_clip_vision_l336(dtype=None, seed: int = 0) -> ClipVision:
    """openai/clip-vit-large-patch14-336's vision tower (24 layers, width 1024, 768-d) with
    random weights (PuLID's)."""
    return random_clip_vision("openai/clip-vit-large-patch14-336", dtype, seed)
