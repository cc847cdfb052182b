"""Generate with a DreamIdentity artifact: its pseudo-words in the text encoders, then the base
model's own pipeline and scheduler (generation costs what the base model costs)."""

from __future__ import annotations

from ..words_pipeline import WordsPipeline


class DreamIdentityPipeline(WordsPipeline):
    """Inference with a DreamIdentity artifact (`WordsPipeline`: the words spliced into the
    text encoders by hooks `close()` removes). Prompts name the person with the placeholder,
    e.g. "a photo of <id> as a chef"."""

    method = "dreamidentity"

    def default_guidance(self) -> float:
        """The artifact's guidance scale, else diffusers' default (7.5; SDXL 5.0)."""
        g = self.meta.get("guidance_scale")
        return float(g) if g is not None else super().default_guidance()
