"""CLIP image-text (CLIP-T) and image-image (CLIP-I) cosine similarities (what eval scores with).

The model is named in every report. Real runs load the user's local CLIP weights (a folder
or a hub id already in the Hugging Face cache, e.g. `openai/clip-vit-large-patch14`);
offline tests use `tiny_clip()`, a small random CLIP with the real tokenizer.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import ModelNotFoundError

# OpenAI CLIP's preprocessing constants (EVA-CLIP has the same), and as float32 arrays.
CLIP_MEAN_RGB = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD_RGB = (0.26862954, 0.26130258, 0.27577711)
CLIP_MEAN = np.array(CLIP_MEAN_RGB, np.float32)
CLIP_STD = np.array(CLIP_STD_RGB, np.float32)


class ClipScorer:
    """Unit CLIP embeddings of images and texts, and their cosine similarities.

    Args:
        model: a `transformers.CLIPModel`.
        tokenizer: its tokenizer.
        name: how reports name this model.
        device: where to run.
    """

    def __init__(self, model: Any, tokenizer: Any, name: str, device: str = "cpu"):
        self.model = model.to(device).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.device = device
        self.image_size = int(model.config.vision_config.image_size)

    @classmethod
    def load(
        cls, spec: str | os.PathLike, *, device: str = "cpu", local_files_only: bool = True
    ) -> ClipScorer:
        """Load CLIP weights from a folder or a hub id in the Hugging Face cache (never downloads by default).

        Raises:
            ModelNotFoundError: the weights are not available locally.
        """
        from transformers import CLIPModel

        from .tokenizer import clip_tokenizer

        path = _local_path(str(spec), local_files_only)
        from pathlib import Path

        from ..errors import ModelError
        from ..tensorfile import check_header

        for weights in sorted(Path(path).glob("*.safetensors")):
            check_header(weights, ModelError)
        try:
            model = CLIPModel.from_pretrained(
                path,
                local_files_only=True,
                use_safetensors=True,  # a local folder by now
            )
        except OSError as e:
            raise ModelNotFoundError(
                f"CLIP weights {spec!r} are not available locally ({str(e).splitlines()[0]}). On a machine with "
                f"access run `hf download {spec} --include '*.json' '*.safetensors' '*.txt'` and copy the Hugging "
                "Face cache here, or pass a local folder (--clip DIR)"
            ) from None
        try:
            from transformers import CLIPTokenizer

            tokenizer = CLIPTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError):
            tokenizer = clip_tokenizer()  # same BPE as every CLIP; built offline
        return cls(model, tokenizer, str(spec), device)

    def _pixels(self, images: list[np.ndarray]) -> Any:
        """Resize the shorter side to the model's size (bicubic), centre-crop, normalise."""
        import torch
        from PIL import Image

        s = self.image_size
        out = []
        for im in images:
            pil = Image.fromarray(np.asarray(im, np.uint8))
            w, h = pil.size
            scale = s / min(w, h)
            pil = pil.resize(
                (max(s, round(w * scale)), max(s, round(h * scale))), Image.Resampling.BICUBIC
            )
            w, h = pil.size
            left, top = (w - s) // 2, (h - s) // 2
            arr = np.asarray(pil.crop((left, top, left + s, top + s)), np.float32) / 255.0
            out.append((arr - CLIP_MEAN) / CLIP_STD)
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(self.device)

    def image_embeddings(self, images: list[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """(N, D) unit embeddings of RGB uint8 images."""
        import torch

        chunks = []
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                px = self._pixels(images[i : i + batch_size]).to(
                    next(self.model.parameters()).dtype
                )
                chunks.append(_unit(_as_tensor(self.model.get_image_features(pixel_values=px))))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)

    def text_embeddings(self, texts: list[str]) -> np.ndarray:
        """(N, D) unit embeddings of texts (truncated to CLIP's 77 tokens)."""
        import torch

        tok = self.tokenizer(
            texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
        )
        with torch.no_grad():
            feats = self.model.get_text_features(input_ids=tok.input_ids.to(self.device))
        return _unit(_as_tensor(feats))

    @property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)


def _as_tensor(out: Any) -> Any:
    # transformers returns a tensor, or (in newer versions) an output object holding it.
    return out if hasattr(out, "norm") else out.pooler_output


def _unit(t: Any) -> np.ndarray:
    t = t.float()
    return (t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy()


def _local_path(spec: str, local_files_only: bool) -> str:
    """A folder as given, or the cached snapshot folder of a hub id (sameface.models.resolve)."""
    from .resolve import local_model_folder

    return str(
        local_model_folder(
            spec,
            what="CLIP model",
            include=["*.json", "*.safetensors", "*.txt"],
            hint="or pass a local folder (--clip DIR)",
            local_files_only=local_files_only,
        )
    )


def tiny_clip(seed: int = 0, image_size: int = 32) -> ClipScorer:
    """A small random CLIP (real tokenizer) for offline tests; its scores mean nothing."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from .tokenizer import clip_tokenizer

    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "vocab_size": 49408,
            "max_position_embeddings": 77,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    return ClipScorer(CLIPModel(cfg), clip_tokenizer(), name=f"tiny-random-clip(seed={seed})")
