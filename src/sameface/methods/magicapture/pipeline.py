"""Generate with a MagiCapture identity: [V1] (and [V2]) spliced into the text encoders and the
LoRA injected into the UNet, then the base model's own diffusers pipeline."""

from __future__ import annotations

from typing import Any

import torch

from ...adapters.lora import TARGET_SETS, UNetLora
from ...errors import ArtifactError
from ..spec import GenerationOutput
from ..words_pipeline import WordsPipeline
from .artifact import load_extras


class MagiCapturePipeline(WordsPipeline):
    """Inference with a MagiCapture artifact; `close()` takes the LoRA and the words off.

    Prompts name the person with [V1] ("a photo of <id> person in the <style> style"); the style
    word is optional. `lora_scale` scales the LoRA's ΔW (the public code generates with 0.6).
    """

    method = "magicapture"

    def __init__(self, base: Any, vectors: list, meta: dict, more_words=None, lora=None):
        super().__init__(base, vectors, meta, more_words)
        try:
            info = meta.get("lora", {})
            targets = info.get("targets", "cross-attention")
            if targets not in TARGET_SETS:
                raise ArtifactError(f"artifact.json: unknown LoRA targets {targets!r}")
            with torch.random.fork_rng(devices=[]):  # peft's init draws; the file sets A and B
                self.lora = UNetLora(base.unet, int(info.get("rank", 4)), TARGET_SETS[targets])
            self.lora.load_diffusers(lora or {})
            self.default_scale = float(meta.get("config", {}).get("lora_scale", 1.0))
        except BaseException:
            if getattr(self, "lora", None) is not None:
                self.lora.remove()
            super().close()
            raise

    @classmethod
    def artifact_extras(cls, folder: Any, meta: dict) -> dict:
        return load_extras(folder, meta)

    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float | None = None,
        generator: Any = None,
        num_images_per_prompt: int = 1,
        height: int | None = None,
        width: int | None = None,
        output_type: str = "pil",
        lora_scale: float | None = None,
        **unsupported: Any,
    ) -> GenerationOutput:
        """Generate images of the identity (arguments as `WordsPipeline`; `lora_scale` as above)."""
        scale = self.default_scale if lora_scale is None else float(lora_scale)
        if not 0 <= scale <= 2:
            raise ValueError(f"lora_scale must be in [0, 2], got {scale}")
        self.lora.set_scale(scale)
        return super().__call__(
            prompt,
            negative_prompt,
            num_inference_steps,
            guidance_scale,
            generator,
            num_images_per_prompt,
            height,
            width,
            output_type,
            **unsupported,
        )

    def close(self) -> None:
        """Take the LoRA out of the UNet and the words out of the text encoders."""
        lora = getattr(self, "lora", None)
        if lora is not None:
            lora.remove()
        super().close()
