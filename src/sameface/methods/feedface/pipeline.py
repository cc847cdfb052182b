"""Generate with a FeedFace artifact: the face-controlnet on the base model, CFG as in B.3.2.

    ε = ε_uc + w · (ε_c − ε_uc),   ε_c: prompt + face tokens,  ε_uc: negative/empty prompt + zero face

The paper writes ε = ε_c + s·(ε_c − ε_uc) with s = 5: the same with w = s + 1 = 6, which is
the default `guidance_scale` here (diffusers' convention, like every sameface pipeline).
`face_scale` multiplies the control blocks' output: 1 as trained, lower to loosen the
identity in favour of the prompt, 0 for the base model's images exactly.

Beyond the paper, the text and the face get their own guidance scales
(`adapters.split_guidance`):

    ε = ε_uc + w·(ε_t − ε_uc) + w_f·(ε_c − ε_t),   ε_t: prompt + zero face

`face_guidance_scale` w_f defaults to w, which is the paper's joint CFG above; a smaller w_f
gives the prompt more say, a larger one the face, and w_f = 0 is text-only CFG.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch

from ...adapters.control_blocks import TOKENS_KEY
from ...adapters.split_guidance import SplitGuidance
from ...errors import ArtifactError
from ..encoded import load_encoded
from ..pipeline_base import MethodPipeline, cfg_batch
from ..spec import GenerationOutput, artifact_base
from .encode import TOKENS_FILE
from .model import FeedFaceModel, read_meta

DEFAULT_SUBJECT = "a person"


class FeedFacePipeline(MethodPipeline):
    """Inference with a FeedFace artifact on its base model.

    Attaches the trained control blocks beside the base UNet's transformer blocks (its
    modules untouched; `close()` or leaving the `with` block takes them off) and generates
    with the base model's own diffusers pipeline and scheduler.

    Args:
        base: the `BaseModel` FeedFace was trained for.
        cond: (1, N, D) face tokens of the identity (all references concatenated).
        adapter_folder: the trained FeedFace folder.
        meta: the artifact's `artifact.json`.
        subject: what the text encoder reads in place of `<id>`.
    """

    subject = DEFAULT_SUBJECT

    def __init__(
        self,
        base: Any,
        cond: torch.Tensor,
        adapter_folder: str | os.PathLike,
        meta: dict | None = None,
        *,
        subject: str = DEFAULT_SUBJECT,
    ):
        meta = meta or {}
        if meta.get("family") not in (None, base.family):
            raise ArtifactError(
                f"artifact was made for a {meta['family']} base model but this one is {base.family}"
            )
        saved = read_meta(adapter_folder)
        if meta.get("adapter_save_id") and saved.get("save_id") != meta["adapter_save_id"]:
            raise ArtifactError(
                f"{adapter_folder} was saved again after this identity was encoded (its tokens "
                "belong to the earlier model); run personalize again"
            )
        self.base, self.meta, self.subject = base, meta, subject
        self.model = FeedFaceModel.load(adapter_folder, base)
        if cond.ndim != 3 or cond.shape[-1] != self.model.cross_dim:
            self.model.remove()
            raise ArtifactError(
                f"face tokens {tuple(cond.shape)} do not fit this model (width {self.model.cross_dim})"
            )
        self.cond = cond.to(base.device)
        self.face_scale = float(meta.get("face_scale", 1.0))
        self.guidance = float(meta.get("guidance_scale", 5.0)) + 1.0
        self.face_guidance = meta.get("face_guidance_scale")
        self.pipe = base.as_pipeline()
        self.pipe.set_progress_bar_config(disable=None)

    @classmethod
    def from_artifact(
        cls,
        folder: str | os.PathLike,
        base: Any = None,
        *,
        device: str = "cpu",
        dtype: Any = None,
        local_files_only: bool | None = None,
    ) -> FeedFacePipeline:
        """Load an artifact folder (`personalize` output), and its base model unless given.

        Raises:
            ArtifactError: the artifact or its trained folder is missing or does not fit.
        """
        tensors, meta = load_encoded(folder, "feedface", TOKENS_FILE, ("cond",))
        base = artifact_base(
            meta, base, device=device, dtype=dtype, local_files_only=local_files_only
        )
        return cls(base, tensors["cond"], Path(meta["adapter"]), meta)

    def default_guidance(self) -> float:
        """The paper's joint CFG scale (B.3.2: s = 5, i.e. w = 6), unless the artifact says otherwise."""
        return self.guidance

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
        face_scale: float | None = None,
        face_guidance_scale: float | None = None,
        **unsupported: Any,
    ) -> GenerationOutput:
        """Generate images of the identity.

        Args:
            prompt: prompt(s); `<id>` marks the person and is read as "a person" by the text
                encoder (the face comes through the control blocks).
            negative_prompt: what to steer away from (the unconditional half keeps the zero face).
            num_inference_steps: sampler steps.
            guidance_scale: w in ε_uc + w(ε_c − ε_uc); default the paper's (s + 1 = 6).
            generator: `torch.Generator` (or one per image) for reproducible images.
            num_images_per_prompt: images per prompt.
            height, width: image size; default the base model's resolution.
            output_type: "pil" or "np".
            face_scale: strength of the control blocks; default the artifact's (1.0).
            face_guidance_scale: w_f, the face's own guidance scale (see the module's
                docstring); default the artifact's, else `guidance_scale` (joint CFG, the
                paper's). Costs half a
                UNet batch more per step when it differs.
            unsupported: refused with a clear error (options of other methods).
        """
        from ...limits import MAX_GUIDANCE, MAX_ID_SCALE, check_scale

        scale = check_scale(
            "face_scale", self.face_scale if face_scale is None else face_scale, MAX_ID_SCALE
        )
        guidance = check_scale(
            "guidance_scale", self.guidance if guidance_scale is None else guidance_scale,
            MAX_GUIDANCE,
        )  # fmt: skip
        split = contextlib.nullcontext()
        w_f = face_guidance_scale if face_guidance_scale is not None else self.face_guidance
        if w_f is not None:
            w_f = check_scale("face_guidance_scale", w_f, MAX_GUIDANCE)
            if not self.do_cfg(guidance):
                if face_guidance_scale is not None:  # asked for here, not the artifact's default
                    raise ValueError(
                        "face_guidance_scale needs classifier-free guidance (guidance_scale > 1 "
                        "on a UNet that is not guidance-distilled)"
                    )
            elif w_f != guidance:
                split = SplitGuidance(self.base.unet, w_f / guidance, self._face_off)

        def face_kwargs(n: int, guidance: float) -> dict:
            cond = self.cond.expand(n, -1, -1)
            tokens = cfg_batch(torch.zeros_like(cond), cond, self.do_cfg(guidance))
            return {"cross_attention_kwargs": self.model.cross_attention_kwargs(tokens, scale)}

        with split:
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
                extra=face_kwargs,
                unsupported=unsupported,
            )

    @staticmethod
    def _face_off(cross_attention_kwargs: dict) -> dict:
        """The same call with the zero face (the unconditional face condition, B.2)."""
        tokens = cross_attention_kwargs[TOKENS_KEY]
        return cross_attention_kwargs | {TOKENS_KEY: torch.zeros_like(tokens)}

    def close(self) -> None:
        """Take the control blocks off: the base UNet computes exactly what it did before."""
        self.model.remove()
