"""Training the world's text-to-image model: VAE, text encoder, then the UNet on it.

The text encoder plays SD's CLIP text tower: before the UNet sees it, it is taught what the
world's captions mean — each known person's name maps to their identity vector and the
context words to their attributes (small linear probes on its hidden states, used only
in training). The UNet is then trained with SD's ε-prediction loss (min-SNR-5 weighting,
10% empty captions for classifier-free guidance, EMA weights shipped) on the frozen text
encoder, as SD trains on a frozen CLIP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .captions import write_caption
from .pool import ANONYMOUS, CONTEXT_COLUMNS, Pool, decode_context
from .render import Context


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def vae_loss(vae: Any, pixels: torch.Tensor, kl_weight: float = 1e-6) -> tuple[torch.Tensor, dict]:
    """L1 + L2 reconstruction with a small KL term (SD's VAE recipe without the GAN/LPIPS parts)."""
    post = vae.encode(pixels).latent_dist
    rec = vae.decode(post.sample()).sample
    l1 = (rec - pixels).abs().mean()
    l2 = (rec - pixels).pow(2).mean()
    kl = post.kl().mean() / pixels[0].numel()
    return l1 + l2 + kl_weight * kl, {"l1": l1.item(), "kl": kl.item()}


class Captioner:
    """Random captions for pool rows, tokenised with the real CLIP tokenizer."""

    def __init__(self, tokenizer: Any, names: list[str], empty_rate: float = 0.0):
        self.tokenizer = tokenizer
        self.names = names
        self.empty_rate = empty_rate
        self._name_ids = [tokenizer(n, add_special_tokens=False).input_ids for n in names]

    def __call__(
        self, pool: Pool, rows: np.ndarray, rng: np.random.Generator, padding: str = "max_length"
    ) -> dict:
        """Token ids, which tokens spell the name, the identity target and context labels.

        `padding="longest"` skips the padding tokens: the text encoder is causal, so the
        states of the real tokens are the same and training the encoder alone is ~3× faster.
        """
        texts, spans, mentioned = [], [], np.full((len(rows), len(CONTEXT_COLUMNS)), -1, np.int64)
        for j, r in enumerate(rows):
            if rng.random() < self.empty_rate:
                texts.append("")
                spans.append(None)
                continue
            person = int(pool.person[r])
            subject = "a person" if person == ANONYMOUS else self.names[person]
            ctx = Context(**decode_context(pool.context[r]))
            text = write_caption(subject, ctx, rng=rng)
            texts.append(text)
            spans.append(None if person == ANONYMOUS else self._name_ids[person])
            from .captions import parse_caption

            asked = parse_caption(text)[1]
            for c, col in enumerate(CONTEXT_COLUMNS):
                if col in asked:
                    mentioned[j, c] = pool.context[r, c]
        ids = self.tokenizer(
            texts, padding=padding, max_length=77, truncation=True, return_tensors="pt"
        ).input_ids
        name_mask = torch.zeros(ids.shape, dtype=torch.bool)
        for j, span in enumerate(spans):
            if span:
                row = ids[j].tolist()
                for k in range(len(row) - len(span) + 1):
                    if row[k : k + len(span)] == span:
                        name_mask[j, k : k + len(span)] = True
                        break
        return {
            "input_ids": ids,
            "name_mask": name_mask,
            "params": torch.from_numpy(pool.params[rows]),
            "context": torch.from_numpy(mentioned),
        }


class TextProbes(nn.Module):
    """Training-only linear probes: name tokens -> identity vector, final token -> context."""

    def __init__(self, hidden: int, id_dim: int, context_sizes: list[int]):
        super().__init__()
        self.identity = nn.Linear(hidden, id_dim)
        self.context = nn.ModuleList(nn.Linear(hidden, n) for n in context_sizes)

    def loss(self, hidden: torch.Tensor, pooled: torch.Tensor, batch: dict) -> torch.Tensor:
        """MSE of the identity from each name token + cross-entropy of each mentioned attribute."""
        mask = batch["name_mask"]
        total = hidden.new_zeros(())
        if mask.any():
            rows = mask.nonzero()[:, 0]
            pred = torch.sigmoid(self.identity(hidden[mask]))
            total = total + F.mse_loss(pred, batch["params"][rows].float()) * 10
        for c, head in enumerate(self.context):
            labels = batch["context"][:, c]
            if (labels >= 0).any():
                total = total + F.cross_entropy(head(pooled), labels, ignore_index=-1) / len(
                    self.context
                )
        return total


def context_sizes() -> list[int]:
    from .nets import context_heads

    heads = context_heads()
    return [heads[c] for c in CONTEXT_COLUMNS]


@dataclass
class Latents:
    """The pool encoded by the trained VAE: posterior mean and std, already scaled."""

    mean: torch.Tensor
    std: torch.Tensor

    def sample(self, rows: np.ndarray, generator: torch.Generator | None = None) -> torch.Tensor:
        m, s = self.mean[rows].float(), self.std[rows].float()
        return m + s * torch.randn(m.shape, generator=generator)


def diffusion_loss(
    unet: Any,
    scheduler: Any,
    latents: torch.Tensor,
    states: torch.Tensor,
    snr_gamma: float = 5.0,
    noise_offset: float = 0.0,
) -> torch.Tensor:
    """SD's ε-prediction loss with min-SNR-γ weighting (Hang et al. 2023) and offset noise.

    Offset noise (Guttenberg 2023; diffusers' `--noise_offset`) adds a per-image, per-channel
    constant to the noise. SD's schedule leaves some signal at t = T, and on 16×16 latents the
    starting noise's mean is large enough (std 1/16) that a model trained without the offset
    takes the image's overall colour from it rather than from the prompt ("red background"
    came out red 9 times in 24, and 23 or 0 times with the starting noise's mean moved by
    ±0.1 in one channel).
    """
    noise = torch.randn_like(latents)
    if noise_offset:
        noise = noise + noise_offset * torch.randn(*latents.shape[:2], 1, 1)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),))
    noisy = scheduler.add_noise(latents, noise, t)
    pred = unet(noisy, t, states).sample
    alphas = scheduler.alphas_cumprod[t]
    snr = alphas / (1 - alphas)
    weight = torch.clamp(snr, max=snr_gamma) / snr
    per = (pred.float() - noise).pow(2).mean((1, 2, 3))
    return (weight * per).mean()
