"""What every method's generation pipeline shares: argument checks, prompts, guidance, CFG
batch order, the call into the base model's diffusers pipeline, output assembly, close().

A method's pipeline subclasses `MethodPipeline`, sets `self.base` and `self.pipe` (the base
model's diffusers pipeline), and keeps only its own conditioning: how a prompt is read
(`text`), which prompts it accepts (`check_prompts`), and the extra pipeline arguments it
passes (e.g. `cross_attention_kwargs` with ID tokens).
"""

from __future__ import annotations

from typing import Any

from .spec import GenerationOutput


def cfg_batch(uncond: Any, cond: Any, do_cfg: bool) -> Any:
    """Per-sample conditioning in diffusers' CFG batch order: the unconditional half first
    (`torch.cat([negative_prompt_embeds, prompt_embeds])`), or `cond` alone without CFG."""
    import torch

    return torch.cat([uncond, cond]) if do_cfg else cond


class MethodPipeline:
    """Base of the method pipelines (`TextualInversionPipeline`, `PuLIDPipeline`, ...).

    Subclasses set `base` (the `BaseModel`) and `pipe` (its diffusers pipeline) and call
    `generate`; it is a context manager whose exit calls `close()`.
    """

    base: Any
    pipe: Any
    placeholder: str = "<id>"
    subject: str | None = None
    """Encoder methods: what the text encoder reads where a prompt says `placeholder` (the
    identity itself comes through the method's conditioning); None leaves prompts as written."""

    def text(self, prompt: str) -> str:
        """The prompt as the text encoder reads it: the placeholder becomes `subject`, if set."""
        return prompt if self.subject is None else prompt.replace(self.placeholder, self.subject)

    def check_prompts(self, prompts: list[str]) -> None:
        """Refuse prompts the method cannot use (default: accept all)."""

    def default_guidance(self) -> float:
        """diffusers' default guidance scale: 5.0 for SDXL, else 7.5."""
        return 5.0 if self.base.is_sdxl else 7.5

    def do_cfg(self, guidance_scale: float) -> bool:
        """diffusers' rule: CFG when the scale is > 1, except for guidance-distilled UNets."""
        return guidance_scale > 1 and self.base.unet.config.get("time_cond_proj_dim") is None

    def negatives(self, negative_prompt: Any, n_prompts: int) -> list[str] | None:
        """One negative prompt per prompt (diffusers wants the prompt's type, a list), read
        through `text`; None stays None.

        Raises:
            ValueError: a list of another length than the prompts.
        """
        if negative_prompt is None:
            return None
        if isinstance(negative_prompt, str):
            negative = [negative_prompt] * n_prompts
        else:
            negative = list(negative_prompt)
        if len(negative) != n_prompts:
            raise ValueError(
                f"{len(negative)} negative prompts for {n_prompts} prompts; give one per prompt"
            )
        return [self.text(n) for n in negative]

    def generate(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None,
        num_inference_steps: int,
        guidance_scale: float | None,
        generator: Any,
        num_images_per_prompt: int,
        height: int | None,
        width: int | None,
        output_type: str,
        extra: Any = None,
        unsupported: dict | None = None,
    ) -> GenerationOutput:
        """Check the arguments, run the base pipeline, and assemble the output.

        Args:
            prompt, negative_prompt, num_inference_steps, guidance_scale, generator,
                num_images_per_prompt, height, width, output_type: as the method's `__call__`.
            extra: a function (n_images, guidance_scale) -> dict of further pipeline
                arguments (the method's conditioning), or None.
            unsupported: keyword arguments the method's `__call__` does not have (e.g. a
                suite setting of another method): refused with a clear error.

        Raises:
            ValueError: unsupported options, or requests beyond `sameface.limits` (sizes,
                counts, steps, guidance), before anything is allocated.
        """
        from ..limits import check_generate_args

        if unsupported:
            name = type(self).__name__.removesuffix("Pipeline")
            raise ValueError(f"{name} generation has no option(s) {', '.join(sorted(unsupported))}")
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
        self.check_prompts(prompts)
        negative = self.negatives(negative_prompt, len(prompts))
        if guidance_scale is None:
            guidance_scale = self.default_guidance()
        more = {} if extra is None else extra(len(prompts) * num_images_per_prompt, guidance_scale)
        size = self.base.resolution
        out = self.pipe(
            prompt=[self.text(p) for p in prompts],
            negative_prompt=negative,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=generator,
            num_images_per_prompt=num_images_per_prompt,
            height=height or size,
            width=width or size,
            output_type=output_type,
            **more,
        )
        return GenerationOutput(
            images=list(out.images),
            prompts=[p for p in prompts for _ in range(num_images_per_prompt)],
        )

    def close(self) -> None:
        """Undo what the pipeline changed on the base model (default: nothing)."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
