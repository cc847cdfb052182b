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

    def text(self, prompt: str) -> str:
        """The prompt as the text encoder reads it (default: unchanged)."""
        return prompt

    def check_prompts(self, prompts: list[str]) -> None:
        """Refuse prompts the method cannot use (default: accept all)."""

    def default_guidance(self) -> float:
        """diffusers' default guidance scale: 5.0 for SDXL, else 7.5."""
        return 5.0 if self.base.is_sdxl else 7.5

    def do_cfg(self, guidance_scale: float) -> bool:
        """diffusers' rule: CFG when the scale is > 1, except for guidance-distilled UNets."""
        return guidance_scale > 1 and self.base.unet.config.get("time_cond_proj_dim") is None

    @staticmethod
    def check_sizes(
        num_inference_steps: int, num_images_per_prompt: int, height: Any, width: Any
    ) -> None:
        """Raise ValueError for step / image counts below 1 or sides not multiples of 8."""
        if num_inference_steps < 1 or num_images_per_prompt < 1:
            raise ValueError("num_inference_steps and num_images_per_prompt must be at least 1")
        for side in (height, width):
            if side is not None and (side < 8 or side % 8):
                raise ValueError(f"height and width must be positive multiples of 8, got {side}")

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
    ) -> GenerationOutput:
        """Check the arguments, run the base pipeline, and assemble the output.

        Args:
            prompt, negative_prompt, num_inference_steps, guidance_scale, generator,
                num_images_per_prompt, height, width, output_type: as the method's `__call__`.
            extra: a function (n_images, guidance_scale) -> dict of further pipeline
                arguments (the method's conditioning), or None.
        """
        self.check_sizes(num_inference_steps, num_images_per_prompt, height, width)
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
