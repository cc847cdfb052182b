"""Generate with a learned identity: DDIM sampling (seed 001: 50 steps) with CFG."""

from __future__ import annotations

import os
from typing import Any

from ..spec import GenerationOutput, artifact_base
from .artifact import load_embeddings
from .model import LearnedTokens, TokenSplice, tokenizer_with_placeholder


class TextualInversionPipeline:
    """Inference with a textual-inversion artifact on its base model.

    The base model's weights are not modified: the pipeline uses copies of the tokenizers
    with the placeholder tokens added, and splices the learned vectors into the text
    encoders with hooks that `close()` removes (also on `with ... as pipe:` exit).

    Args:
        base: the `BaseModel` the artifact was trained on.
        vectors: learned vectors, one (k, dim) tensor per text encoder.
        meta: the artifact's sidecar (`artifact.json`).
    """

    def __init__(self, base: Any, vectors: list[Any], meta: dict):
        from diffusers import DDIMScheduler

        if meta.get("family") not in (None, base.family):
            raise ValueError(
                f"artifact was trained on {meta['family']} but the base model is {base.family}"
            )
        self.base, self.meta = base, meta
        self.placeholder = meta.get("placeholder", "<id>")
        k = int(meta.get("num_tokens", vectors[0].shape[0]))
        self._splices = []
        try:
            tokenizers = self._attach(base, vectors, k)
        except BaseException:
            self.close()  # do not leave the first encoder's hook behind when the second fails
            raise
        extra = {"tokenizer": tokenizers[0]} | (
            {"tokenizer_2": tokenizers[1]} if base.is_sdxl else {}
        )
        # DDIM as in the paper; diffusers expands `<id>` to `<id> <id>_1 ...` from the tokenizer.
        self.pipe = base.as_pipeline(
            scheduler=DDIMScheduler.from_config(base.scheduler.config), **extra
        )
        self.pipe.set_progress_bar_config(disable=None)

    def _attach(self, base: Any, vectors: list[Any], k: int) -> list[Any]:
        """Tokenizer copies with the placeholder, and the learned vectors spliced into the encoders."""
        tokenizers = []
        for tok, enc, vec in zip(base.tokenizers, base.text_encoders, vectors, strict=True):
            if vec.shape[-1] != enc.get_input_embeddings().embedding_dim:
                raise ValueError(
                    f"artifact vectors are {vec.shape[-1]}-d but the text encoder expects "
                    f"{enc.get_input_embeddings().embedding_dim}-d: wrong base model?"
                )
            new_tok, ids = tokenizer_with_placeholder(tok, self.placeholder, k)
            fixed = LearnedTokens(vec.to(base.device), base=None).requires_grad_(False)
            tokenizers.append(new_tok)
            self._splices.append(TokenSplice(enc, ids, fixed))
        return tokenizers

    @classmethod
    def from_artifact(
        cls,
        folder: str | os.PathLike,
        base: Any = None,
        *,
        device: str = "cpu",
        dtype: Any = None,
        local_files_only: bool | None = None,
    ) -> TextualInversionPipeline:
        """Load an artifact folder, and its base model unless one is given.

        Args:
            folder: the `personalize` output folder.
            base: a loaded `BaseModel`; default loads the one recorded in the artifact.
            device: where to run.
            dtype: weight dtype (default float32).
            local_files_only: passed to `load_base_model` (None: offline).
        """
        vectors, meta = load_embeddings(folder)
        base = artifact_base(
            meta, base, device=device, dtype=dtype, local_files_only=local_files_only
        )
        return cls(base, vectors, meta)

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
            num_inference_steps: DDIM steps (paper: 50).
            guidance_scale: classifier-free guidance scale; default as diffusers (7.5, SDXL 5.0).
            generator: `torch.Generator` (or one per image) for reproducible images.
            num_images_per_prompt: images per prompt.
            height, width: image size; default the base model's resolution.
            output_type: "pil" or "np".
            unsupported: refused with a clear error (options of other methods).

        Raises:
            ValueError: a prompt does not contain the placeholder.
        """
        if unsupported:  # e.g. a CLI flag or a suite setting another method has
            raise ValueError(
                f"textual_inversion generation has no option(s) {', '.join(sorted(unsupported))}"
            )
        from ...limits import check_generate_args

        check_generate_args(
            self.base,
            prompts=[prompt] if isinstance(prompt, str) else list(prompt),
            num_inference_steps=num_inference_steps,
            num_images_per_prompt=num_images_per_prompt,
            guidance_scale=guidance_scale,
            height=height,
            width=width,
            negative_prompt=negative_prompt,
        )
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        missing = [p for p in prompts if self.placeholder not in p]
        if missing:
            raise ValueError(
                f"prompt {missing[0]!r} does not name the person: write {self.placeholder} where they go"
            )
        size = self.base.resolution
        out = self.pipe(
            prompt=prompts,
            negative_prompt=[negative_prompt] * len(prompts)
            if isinstance(negative_prompt, str)
            else negative_prompt,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale
            if guidance_scale is not None
            else (5.0 if self.base.is_sdxl else 7.5),
            generator=generator,
            num_images_per_prompt=num_images_per_prompt,
            height=height or size,
            width=width or size,
            output_type=output_type,
        )
        images = list(out.images)
        return GenerationOutput(
            images=images, prompts=[p for p in prompts for _ in range(num_images_per_prompt)]
        )

    def close(self) -> None:
        """Remove the hooks from the base model's text encoders."""
        for s in self._splices:
            s.remove()
        self._splices = []

    def __enter__(self) -> TextualInversionPipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
