"""What the pipelines of ID-token methods share (PuLID, IP-Adapter-FaceID): the identity
arrives as cached ID tokens through the decoupled ID cross-attention (`adapters.IDAttention`),
the prompt's `<id>` is read as a plain subject, and classifier-free guidance pairs the
unconditional tokens with the negative prompt:

    out = Attn(Q, K_txt, V_txt) + id_scale · Attn(Q, K_id, V_id)

diffusers batches the negative half first (`torch.cat([negative_prompt_embeds,
prompt_embeds])`), so the ID tokens go in the same order, `torch.cat([uncond, cond])`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ArtifactError
from .pipeline_base import MethodPipeline, cfg_batch

DEFAULT_SUBJECT = "a person"


class IDTokenPipeline(MethodPipeline):
    """Checks and CFG batching of an ID-token artifact on its base model; a subclass installs
    its adapter and documents its own `__call__`, which calls `generate_with_ids`.

    Args:
        base: the `BaseModel`.
        cond: (1, N, D) ID tokens of the identity.
        uncond: (1, N, D) unconditional ID tokens.
        meta: the artifact's `artifact.json`.
        saved: the trained folder's JSON record (its `save_id` must be the artifact's).
        adapter_folder: that folder (named in messages).
        default_id_scale: the ID scale when the artifact records none.
        placeholder: the word prompts name the person with.
        subject: what the text encoder reads in its place.

    Raises:
        ArtifactError: another base family or width, or a folder saved again since encoding.
    """

    def __init__(
        self,
        base: Any,
        cond: torch.Tensor,
        uncond: torch.Tensor,
        meta: dict,
        saved: dict,
        adapter_folder: Any,
        *,
        default_id_scale: float = 1.0,
        placeholder: str = "<id>",
        subject: str = DEFAULT_SUBJECT,
    ):
        if meta.get("family") not in (None, base.family):
            raise ArtifactError(
                f"artifact was made for a {meta['family']} base model but this one is {base.family}"
            )
        cross = int(base.unet.config.cross_attention_dim)
        if cond.shape[-1] != cross:
            raise ArtifactError(
                f"ID tokens are {cond.shape[-1]}-d but the UNet's cross-attention width is {cross}: "
                "wrong base model?"
            )
        want = meta.get("adapter_save_id")
        if want and saved.get("save_id") != want:
            raise ArtifactError(
                f"{adapter_folder} was saved again after this identity was encoded (its tokens "
                "belong to the earlier model); run personalize again"
            )
        self.base, self.meta = base, meta
        self.placeholder, self.subject = placeholder, subject
        self.id_scale = float(meta.get("id_scale", default_id_scale))
        self.cond = cond.to(base.device)
        self.uncond = uncond.to(base.device)
        self.pipe = base.as_pipeline()
        self.pipe.set_progress_bar_config(disable=None)

    def generate_with_ids(
        self,
        prompt: Any,
        negative_prompt: Any,
        num_inference_steps: int,
        guidance_scale: float | None,
        generator: Any,
        num_images_per_prompt: int,
        height: int | None,
        width: int | None,
        output_type: str,
        id_scale: float | None,
        unsupported: dict,
    ) -> Any:
        """`MethodPipeline.generate` with the ID tokens (and `id_scale`, checked) in every UNet call."""
        from ..limits import MAX_ID_SCALE, check_scale

        scale = check_scale(
            "id_scale", self.id_scale if id_scale is None else id_scale, MAX_ID_SCALE
        )

        def id_kwargs(n: int, guidance: float) -> dict:
            cond = self.cond.expand(n, -1, -1)
            tokens = cfg_batch(self.uncond.expand(n, -1, -1), cond, self.do_cfg(guidance))
            return {"cross_attention_kwargs": {"id_tokens": tokens, "id_scale": scale}}

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
            extra=id_kwargs,
            unsupported=unsupported,
        )


__all__ = ["DEFAULT_SUBJECT", "IDTokenPipeline"]
