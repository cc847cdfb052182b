"""Generate with an IP-Adapter-FaceID artifact: the base model's own pipeline with the LoRA
injected and the ID tokens through the decoupled ID attention (`methods.id_tokens_pipeline`):

    out = Attn(Q', K'_txt, V'_txt) + id_scale · Attn(Q', K_id, V_id),   W' = W + lora_scale·ΔW

The unconditional half of classifier-free guidance gets the negative prompt and the
projection of a zero embedding, as the release's `IPAdapterFaceID.generate`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ...errors import ArtifactError
from ..encoded import load_encoded
from ..id_tokens_pipeline import DEFAULT_SUBJECT, IDTokenPipeline
from ..spec import GenerationOutput, artifact_base
from .encode import TOKENS_FILE
from .model import METHOD, FaceIDModel, read_meta


class IPAdapterFaceIDPipeline(IDTokenPipeline):
    """Inference with an IP-Adapter-FaceID artifact on its base model.

    Loads the adapter folder onto the base UNet (LoRA injected, ID branch installed; its
    weights untouched: `close()` or leaving the `with` block gives it back exactly).

    Args:
        base: the `BaseModel` the adapter was made for.
        cond: (1, N, D) ID tokens of the identity.
        uncond: (1, N, D) unconditional ID tokens.
        adapter_folder: the trained or imported folder.
        meta: the artifact's `artifact.json`.
        placeholder: the word prompts name the person with.
        subject: what the text encoder reads in its place.
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
        meta = meta or {}
        super().__init__(
            base, cond, uncond, meta, read_meta(adapter_folder), adapter_folder,
            default_id_scale=1.0, placeholder=placeholder, subject=subject,
        )  # fmt: skip
        self.model = FaceIDModel.load(adapter_folder, base)
        try:
            self.lora_scale = float(meta.get("lora_scale", self.model.config.lora_scale))
            self.guidance = float(meta.get("guidance_scale", 7.5))
        except (TypeError, ValueError) as e:
            self.model.remove()  # the base model is given back as it was
            raise ArtifactError(f"artifact.json: corrupt scales ({e})") from None

    @classmethod
    def from_artifact(
        cls,
        folder: str | os.PathLike,
        base: Any = None,
        *,
        device: str = "cpu",
        dtype: Any = None,
        local_files_only: bool | None = None,
    ) -> IPAdapterFaceIDPipeline:
        """Load an artifact folder (`personalize` output), and its base model unless given.

        Raises:
            ArtifactError: the artifact or its adapter folder is missing or does not fit.
        """
        tensors, meta = load_encoded(folder, METHOD, TOKENS_FILE, ("cond", "uncond"))
        cond, uncond = tensors["cond"], tensors["uncond"]
        if cond.ndim != 3 or cond.shape != uncond.shape:
            raise ArtifactError(
                f"{Path(folder) / TOKENS_FILE}: cond {tuple(cond.shape)} and uncond "
                f"{tuple(uncond.shape)} must both be (1, N, D)"
            )
        base = artifact_base(
            meta, base, device=device, dtype=dtype, local_files_only=local_files_only
        )
        return cls(base, cond, uncond, Path(meta["adapter"]), meta)

    def default_guidance(self) -> float:
        """The release demo's CFG scale (7.5), unless the artifact says otherwise."""
        return self.guidance

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
        lora_scale: float | None = None,
        **unsupported: Any,
    ) -> GenerationOutput:
        """Generate images of the identity.

        Args:
            prompt: prompt(s); `<id>` marks the person and is read as "a person" by the text
                encoder (the identity comes through the ID tokens).
            negative_prompt: what to steer away from (its half gets the zero-embedding tokens).
            num_inference_steps: sampler steps (the release's demo: 30).
            guidance_scale: classifier-free guidance scale; default the artifact's (7.5).
            generator: `torch.Generator` (or one per image) for reproducible images.
            num_images_per_prompt: images per prompt.
            height, width: image size; default the base model's resolution.
            output_type: "pil" or "np".
            id_scale: weight of the ID attention (the release's `scale`); default the
                artifact's (1.0).
            lora_scale: weight of the LoRA; default the artifact's (1.0). With both scales 0
                the images are the base model's exactly.
            unsupported: refused with a clear error (options of other methods).
        """
        from ...limits import MAX_ID_SCALE, check_scale

        lora = check_scale(
            "lora_scale", self.lora_scale if lora_scale is None else lora_scale, MAX_ID_SCALE
        )
        self.model.set_lora_scale(lora)
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
        """Take the LoRA and the ID branch off: the base UNet computes exactly what it did."""
        self.model.remove()
