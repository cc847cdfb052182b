"""Generate with PuLID: the base model's own pipeline, ID tokens through the adapter (seed 004).

PuLID conditions the identity through the decoupled ID cross-attention, not the text: the
prompt's `<id>` becomes a plain subject ("a person") for the text encoder, and the identity
arrives as ID tokens in every cross-attention layer:

    out = Attn(Q, K_txt, V_txt) + id_scale · Attn(Q, K_id, V_id)

Classifier-free guidance pairs the unconditional ID tokens with the negative prompt, in
diffusers' batch order (PuLID: `torch.cat((uncond_id_embedding, id_embedding))`;
`methods.id_tokens_pipeline`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ...adapters.id_attention import IDAdapter
from ..id_tokens_pipeline import DEFAULT_SUBJECT, IDTokenPipeline
from ..spec import GenerationOutput, artifact_base
from .artifact import load_tokens
from .model import ADAPTER_FILE, read_meta


class PuLIDPipeline(IDTokenPipeline):
    """Inference with a PuLID artifact on its base model.

    Installs the trained ID adapter in the base UNet (weights untouched; `close()` or leaving
    the `with` block restores the original attention processors) and generates with the
    base model's own diffusers pipeline and scheduler.

    Args:
        base: the `BaseModel` the PuLID model was trained for.
        cond: (1, N, D) ID tokens of the identity.
        uncond: (1, N, D) unconditional ID tokens.
        adapter_folder: the trained PuLID folder (its `adapter.safetensors` is loaded).
        meta: the artifact's `artifact.json`.
        placeholder: the word prompts name the person with.
        subject: what the text encoder reads in its place (PuLID's prompts say e.g.
            "portrait, a man"; the identity itself comes through the adapter).
    """

    def __init__(
        self,
        base: Any,
        cond: torch.Tensor,
        uncond: torch.Tensor,
        adapter_folder: str | os.PathLike,
        meta: dict | None = None,
        *,
        placeholder: str = "<id>",
        subject: str = DEFAULT_SUBJECT,
    ):
        pulid_meta = read_meta(adapter_folder)
        super().__init__(
            base, cond, uncond, meta or {}, pulid_meta, adapter_folder,
            default_id_scale=0.8, placeholder=placeholder, subject=subject,
        )  # fmt: skip
        trained = pulid_meta.get("config") or {}  # the attention options the model runs with
        adapter = IDAdapter(
            base.unet,
            int(base.unet.config.cross_attention_dim),
            init="zero_v",  # the weights come from the file
            num_zero=int(trained.get("num_zero", 0)),
            ortho=trained.get("ortho", "off") or "off",
        )
        adapter.load(Path(adapter_folder) / ADAPTER_FILE)
        self.adapter = adapter.install()

    @classmethod
    def from_artifact(
        cls,
        folder: str | os.PathLike,
        base: Any = None,
        *,
        device: str = "cpu",
        dtype: Any = None,
        local_files_only: bool | None = None,
    ) -> PuLIDPipeline:
        """Load an artifact folder (`personalize` output), and its base model unless given.

        Args:
            folder: the artifact folder.
            base: a loaded `BaseModel`; default loads the one recorded in the artifact.
            device: where to run.
            dtype: weight dtype of a loaded base model (default float32).
            local_files_only: passed to `load_base_model` (None: offline).

        Raises:
            ArtifactError: the artifact or its trained PuLID folder is missing or does not fit.
        """
        cond, uncond, meta = load_tokens(folder)
        base = artifact_base(
            meta, base, device=device, dtype=dtype, local_files_only=local_files_only
        )
        return cls(base, cond, uncond, meta["adapter"], meta)

    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int = 30,
        guidance_scale: float | None = None,
        generator: Any = None,
        num_images_per_prompt: int = 1,
        height: int | None = None,
        width: int | None = None,
        output_type: str = "pil",
        id_scale: float | None = None,
        **unsupported: Any,
    ) -> GenerationOutput:
        """Generate images of the identity.

        Args:
            prompt: prompt(s); `<id>` marks the person and is read as "a person" by the text
                encoder (the identity comes through the ID adapter, whatever the text says).
            negative_prompt: what to steer away from.
            num_inference_steps: sampler steps (the base model's scheduler).
            guidance_scale: classifier-free guidance scale; default as diffusers (7.5, SDXL 5.0).
            generator: `torch.Generator` (or one per image) for reproducible images.
            num_images_per_prompt: images per prompt.
            height, width: image size; default the base model's resolution.
            output_type: "pil" or "np".
            unsupported: refused with a clear error (options of other methods).
            id_scale: weight of the ID attention; default the artifact's (PuLID's demo: 0.8);
                0 gives the base model's images exactly.
        """
        return self.generate_with_ids(
            prompt,
            negative_prompt,
            num_inference_steps,
            guidance_scale,
            generator,
            num_images_per_prompt,
            height,
            width,
            output_type,
            id_scale,
            unsupported,
        )

    def close(self) -> None:
        """Remove the ID adapter: the base UNet's original attention processors are back."""
        self.adapter.remove()
