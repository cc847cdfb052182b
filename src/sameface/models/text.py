"""Prompt encoding shared by every method: SD1.x / SD2.x take the last hidden state,
SDXL concatenates both encoders' penultimate hidden states and adds pooled + size conditioning."""

from __future__ import annotations

from typing import Any


def tokenize(tokenizer: Any, prompts: list[str], device: Any = "cpu") -> Any:
    """Token ids padded/truncated to the tokenizer's 77-token window."""
    return tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(device)


def encode_prompts(
    base: Any,
    prompts: list[str],
    *,
    tokenizers: list[Any] | None = None,
    size: tuple[int, int] | None = None,
) -> tuple[Any, dict | None]:
    """UNet conditioning for `prompts`, as diffusers' pipelines compute it.

    Args:
        base: a `BaseModel`.
        prompts: the prompts.
        tokenizers: tokenizers to use instead of the base model's (e.g. with added tokens).
        size: (height, width) of the images, for SDXL's micro-conditioning.

    Returns:
        `(encoder_hidden_states, added_cond_kwargs)`; the latter is None except for SDXL.
    """
    import torch

    tokenizers = tokenizers or base.tokenizers
    device = base.device
    if not base.is_sdxl:
        ids = tokenize(tokenizers[0], prompts, device)
        return base.text_encoders[0](ids).last_hidden_state, None
    hidden, pooled = [], None
    for tok, enc in zip(tokenizers, base.text_encoders, strict=True):
        out = enc(tokenize(tok, prompts, device), output_hidden_states=True)
        hidden.append(out.hidden_states[-2])  # SDXL conditions on the penultimate layer
        pooled = getattr(out, "text_embeds", None)
    h, w = size or (base.resolution, base.resolution)
    # (original size, crop top-left, target size): an uncropped image at the target size.
    time_ids = torch.tensor([[h, w, 0, 0, h, w]], dtype=hidden[0].dtype, device=device).repeat(
        len(prompts), 1
    )
    return torch.cat(hidden, dim=-1), {"text_embeds": pooled, "time_ids": time_ids}
