"""Generate with a learned identity: DDIM sampling (seed 001: 50 steps) with CFG."""

from __future__ import annotations

from ..words_pipeline import WordsPipeline


class TextualInversionPipeline(WordsPipeline):
    """Inference with a textual-inversion artifact on its base model (`WordsPipeline`), with
    DDIM as in the paper (seed 001); `num_inference_steps` 50 there."""

    method = "textual-inversion"
    ddim = True
