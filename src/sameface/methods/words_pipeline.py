"""Generate with an identity made of pseudo-words (textual inversion, DreamIdentity): the vectors
spliced into the base model's text encoders, then the base model's own diffusers pipeline."""

from __future__ import annotations

import os
from typing import Any

from ..adapters.tokens import EncoderTokens
from .pipeline_base import MethodPipeline
from .spec import GenerationOutput, artifact_base
from .words import load_embeddings


class WordsPipeline(MethodPipeline):
    """Inference with a pseudo-word artifact (`sameface.methods.words`) on its base model.

    The base model's weights are not modified: the pipeline uses copies of the tokenizers
    with the placeholder tokens added, and splices the learned vectors into the text
    encoders with hooks that `close()` removes (also on `with ... as pipe:` exit).

    Args:
        base: the `BaseModel` the artifact was trained on.
        vectors: learned vectors, one (k, dim) tensor per text encoder.
        meta: the artifact's sidecar (`artifact.json`).
        more_words: further placeholders -> their vectors per text encoder (MagiCapture's
            style word); prompts may use them, they need not.

    Class attributes a method's subclass sets:
        method: the method whose artifacts it reads (None: any).
        ddim: sample with DDIM (textual inversion's paper) instead of the base model's scheduler.
    """

    method: str | None = None
    ddim: bool = False

    def __init__(self, base: Any, vectors: list[Any], meta: dict, more_words: dict | None = None):
        if meta.get("family") not in (None, base.family):
            raise ValueError(
                f"artifact was trained on {meta['family']} but the base model is {base.family}"
            )
        self.base, self.meta = base, meta
        self.placeholder = meta.get("placeholder", "<id>")
        k = int(meta.get("num_tokens", vectors[0].shape[0]))
        self._tokens = self._attach(base, {self.placeholder: (vectors, k)} | _counted(more_words))
        try:
            tokenizers = self._tokens.tokenizers
            extra = {"tokenizer": tokenizers[0]} | (
                {"tokenizer_2": tokenizers[1]} if base.is_sdxl else {}
            )
            if self.ddim:
                from diffusers import DDIMScheduler

                extra["scheduler"] = DDIMScheduler.from_config(base.scheduler.config)
            # diffusers expands `<id>` to `<id> <id>_1 ...` from the tokenizer.
            self.pipe = base.as_pipeline(**extra)
        except BaseException:
            self._tokens.remove()  # do not leave the hooks on the base model
            raise
        self.pipe.set_progress_bar_config(disable=None)

    def _attach(self, base: Any, words: dict[str, tuple[list[Any], int]]) -> EncoderTokens:
        """Tokenizer copies with the placeholders, and the learned vectors spliced into the encoders."""
        for vectors, _ in words.values():
            for enc, vec in zip(base.text_encoders, vectors, strict=True):
                if vec.shape[-1] != enc.get_input_embeddings().embedding_dim:
                    raise ValueError(
                        f"artifact vectors are {vec.shape[-1]}-d but the text encoder expects "
                        f"{enc.get_input_embeddings().embedding_dim}-d: wrong base model?"
                    )
        tokens = EncoderTokens(
            base.tokenizers, base.text_encoders, {name: k for name, (_, k) in words.items()}
        )
        for name, (vectors, _) in words.items():
            tokens.set(name, [v.to(base.device).float() for v in vectors])
        return tokens

    @classmethod
    def artifact_extras(cls, folder: Any, meta: dict) -> dict:
        """Further constructor arguments a subclass reads from the artifact folder."""
        return {}

    @classmethod
    def from_artifact(
        cls,
        folder: str | os.PathLike,
        base: Any = None,
        *,
        device: str = "cpu",
        dtype: Any = None,
        local_files_only: bool | None = None,
    ) -> WordsPipeline:
        """Load an artifact folder, and its base model unless one is given.

        Args:
            folder: the `personalize` output folder.
            base: a loaded `BaseModel`; default loads the one recorded in the artifact.
            device: where to run.
            dtype: weight dtype (default float32).
            local_files_only: passed to `load_base_model` (None: offline).
        """
        vectors, meta = load_embeddings(folder, cls.method)
        base = artifact_base(
            meta, base, device=device, dtype=dtype, local_files_only=local_files_only
        )
        extras = cls.artifact_extras(folder, meta)
        return cls(base, vectors, meta, **extras)

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
        **unsupported: Any,
    ) -> GenerationOutput:
        """Generate images of the identity.

        Args:
            prompt: prompt(s) naming the person with the placeholder (e.g. "a photo of <id> as a chef").
            negative_prompt: what to steer away from.
            num_inference_steps: sampler steps.
            guidance_scale: classifier-free guidance scale; default as diffusers (7.5, SDXL 5.0).
            generator: `torch.Generator` (or one per image) for reproducible images.
            num_images_per_prompt: images per prompt.
            height, width: image size; default the base model's resolution.
            output_type: "pil" or "np".
            unsupported: refused with a clear error (options of other methods).

        Raises:
            ValueError: a prompt does not contain the placeholder, or bad sizes / counts.
        """
        return self.generate(
            prompt,
            negative_prompt,
            num_inference_steps,
            guidance_scale,
            generator,
            num_images_per_prompt,
            height,
            width,
            output_type,
            unsupported=unsupported,
        )

    def check_prompts(self, prompts: list[str]) -> None:
        """Every prompt must name the person with the placeholder (ValueError otherwise)."""
        missing = [p for p in prompts if self.placeholder not in p]
        if missing:
            raise ValueError(
                f"prompt {missing[0]!r} does not name the person: write {self.placeholder} where they go"
            )

    def close(self) -> None:
        """Remove the hooks from the base model's text encoders."""
        self._tokens.remove()


def _counted(words: dict | None) -> dict[str, tuple[list[Any], int]]:
    return {name: (vectors, int(vectors[0].shape[0])) for name, (vectors) in (words or {}).items()}
