"""EVA02-CLIP's vision tower (Sun et al. 2023, "EVA-CLIP: Improved Training Techniques for CLIP
at Scale"), in torch, in the key layout of the released checkpoints (`visual.*` of
`EVA02_CLIP_L_336_psz14_s6B.pt`, QuanSun/EVA-CLIP), so PuLID's release gets the vision
features it was trained on. Our own implementation of the published architecture: the
libraries that ship it (open_clip / timm) need torchvision, which must match the installed
torch build exactly.

EVA02-CLIP-L-14-336: 336 px, 14 px patches (24 × 24 + CLS), width 1024, 24 blocks of 16 heads.
Each block (pre-norm, LayerNorm ε = 1e-6):

    x = x + Proj(LN_inner(Attn(RoPE(q), RoPE(k), v)))      q, v with biases, k without
    x = x + W₃ LN_ffn(SiLU(W₁ x) ⊙ W₂ x)                   SwiGLU, hidden 2730 (ratio 2.6667)

RoPE: 2-D rotary embedding on the patch tokens (not CLS), half of each head's 64 channels
for the row, half for the column; frequencies 10000^(−2i/32) at positions rescaled from the
24-patch grid to the 16-patch grid of pre-training (`intp_freq`), interleaved pairs rotated.
Output: LayerNorm of the CLS token, then a linear head to the 768-d CLIP embedding.
Hidden state i is the residual stream after block i (0 = patch + position embeddings), the
indexing PuLID reads (blocks 4, 8, 12, 16, 20).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

NAME = "EVA02-CLIP-L-14-336"
"""The tower PuLID v1.1 conditions on (`interop.pulid.VISION`)."""
CHECKPOINT = "EVA02_CLIP_L_336_psz14_s6B.pt"
"""The released file holding it (with the text tower, which is not read)."""
HUB_REPO = "QuanSun/EVA-CLIP"


@dataclass(frozen=True)
class Eva02VisionConfig:
    """Shape of an EVA02-CLIP vision tower (defaults: EVA02-CLIP-L-14-336). The attribute names
    are those `ClipVision` reads from a transformers config."""

    image_size: int = 336
    patch_size: int = 14
    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 2730
    projection_dim: int = 768
    pretrain_grid: int = 16
    layer_norm_eps: float = 1e-6

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def rope_tables(cfg: Eva02VisionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (grid², head_dim): EVA02's 2-D rotary tables for the patch tokens."""
    half = cfg.hidden_size // cfg.num_attention_heads // 2
    freqs = 1.0 / (10000 ** (torch.arange(0, half, 2).float() / half))
    pos = torch.arange(cfg.grid) / cfg.grid * cfg.pretrain_grid
    f = torch.repeat_interleave(torch.outer(pos, freqs), 2, dim=-1)  # (grid, half): pairs
    rows = f[:, None, :].expand(cfg.grid, cfg.grid, half)
    cols = f[None, :, :].expand(cfg.grid, cfg.grid, half)
    table = torch.cat([rows, cols], dim=-1).reshape(cfg.grid**2, 2 * half)
    return table.cos(), table.sin()


def _rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (−x1, x0, −x3, x2, ...)."""
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)


class _Rope(nn.Module):
    """The rotary tables as the release's (persistent) buffers `freqs_cos` / `freqs_sin`."""

    def __init__(self, cfg: Eva02VisionConfig):
        super().__init__()
        cos, sin = rope_tables(cfg)
        self.register_buffer("freqs_cos", cos)
        self.register_buffer("freqs_sin", sin)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.freqs_cos.to(t.dtype) + _rotate_pairs(t) * self.freqs_sin.to(t.dtype)


class _Attention(nn.Module):
    def __init__(self, cfg: Eva02VisionConfig, rope: _Rope):
        super().__init__()
        d, self.heads = cfg.hidden_size, cfg.num_attention_heads
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(d))
        self.v_bias = nn.Parameter(torch.zeros(d))
        self.inner_attn_ln = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.proj = nn.Linear(d, d)
        self.rope = rope  # one module shared by every block, as in the release

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, -1).transpose(1, 2)

        q = heads(F.linear(x, self.q_proj.weight, self.q_bias))
        k = heads(F.linear(x, self.k_proj.weight))
        v = heads(F.linear(x, self.v_proj.weight, self.v_bias))
        q = torch.cat([q[:, :, :1], self.rope(q[:, :, 1:])], dim=2)  # CLS is not rotated
        k = torch.cat([k[:, :, :1], self.rope(k[:, :, 1:])], dim=2)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        return self.proj(self.inner_attn_ln(out))


class _SwiGLU(nn.Module):
    def __init__(self, cfg: Eva02VisionConfig):
        super().__init__()
        d, h = cfg.hidden_size, cfg.intermediate_size
        self.w1 = nn.Linear(d, h)
        self.w2 = nn.Linear(d, h)
        self.ffn_ln = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.w3 = nn.Linear(h, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))


class _Block(nn.Module):
    def __init__(self, cfg: Eva02VisionConfig, rope: _Rope):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.attn = _Attention(cfg, rope)
        self.norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = _SwiGLU(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, cfg: Eva02VisionConfig):
        super().__init__()
        p = cfg.patch_size
        self.proj = nn.Conv2d(3, cfg.hidden_size, kernel_size=p, stride=p)


class Eva02VisionModel(nn.Module):
    """EVA02-CLIP's vision tower; `state_dict()` keys are the release's `visual.*` keys.

    Called like transformers' `CLIPVisionModelWithProjection` (what `ClipVision` wraps):
    `model(pixel_values=x, output_hidden_states=True)` gives `.image_embeds` (B, 768) and
    `.hidden_states` (embeddings, then the stream after each block).
    """

    def __init__(self, config: Eva02VisionConfig | None = None):
        super().__init__()
        cfg = config or Eva02VisionConfig()
        if cfg.hidden_size % (4 * cfg.num_attention_heads):
            raise ValueError("the head width must split into row and column halves of pairs")
        self.config = cfg
        self.patch_embed = _PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.hidden_size))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.grid**2 + 1, cfg.hidden_size))
        self.rope = _Rope(cfg)
        self.blocks = nn.ModuleList(_Block(cfg, self.rope) for _ in range(cfg.num_hidden_layers))
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.head = nn.Linear(cfg.hidden_size, cfg.projection_dim)

    def forward(
        self, pixel_values: torch.Tensor, output_hidden_states: bool = False, **_: Any
    ) -> SimpleNamespace:
        size = self.config.image_size
        if pixel_values.shape[-2:] != (size, size):
            raise ValueError(f"EVA02 takes {size} x {size} images, got {tuple(pixel_values.shape)}")
        x = self.patch_embed.proj(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = x + self.pos_embed.to(x.dtype)
        hidden = [x]
        for block in self.blocks:
            x = block(x)
            hidden.append(x)
        embeds = self.head(self.norm(x)[:, 0])
        return SimpleNamespace(
            image_embeds=embeds,
            last_hidden_state=x,
            hidden_states=tuple(hidden) if output_hidden_states else None,
        )


def extract_visual(state: dict[str, Any]) -> dict[str, Any]:
    """The vision tower's tensors of a released EVA-CLIP checkpoint (`visual.*`, prefix
    removed). Raises ValueError when there are none."""
    visual = {k[len("visual.") :]: v for k, v in state.items() if str(k).startswith("visual.")}
    if not visual:
        raise ValueError("no visual.* tensors (not an EVA-CLIP checkpoint)")
    return visual


def load_eva02_state(model: Eva02VisionModel, visual: dict[str, Any]) -> None:
    """Load a release's `visual.*` tensors strictly. The rotary tables (buffers the release
    stores once per block) may be absent; when present they must be EVA02's.

    Raises:
        ValueError: tensors missing, left over, of other shapes, or other rotary tables.
    """
    from ..tensorfile import state_mismatch

    own = model.state_dict()
    rope_keys = frozenset(k for k in own if k.endswith(("freqs_cos", "freqs_sin")))
    problem = state_mismatch(own, visual, optional=rope_keys)
    if problem:
        raise ValueError("not an EVA02-CLIP vision tower of this shape: " + problem)
    for key in rope_keys & set(visual):
        if not torch.allclose(visual[key].float(), own[key].float(), atol=1e-4):
            raise ValueError(f"{key}: not EVA02's rotary table (another grid or head width?)")
    merged = {**own, **{k: v for k, v in visual.items() if k not in rope_keys}}
    model.load_state_dict(merged, strict=True)


def config_from_state(visual: dict[str, Any]) -> Eva02VisionConfig:
    """The tower's shape from its tensors: widths, depth, patch and grid; the head width from
    the rotary table when stored, else 64 (every EVA02-CLIP's); pre-training grid 16 (every
    EVA02-CLIP's `pt_hw_seq_len`).

    Raises:
        ValueError: tensors an EVA02 tower does not have.
    """
    try:
        d, _, p, _ = visual["patch_embed.proj.weight"].shape
        grid = round((visual["pos_embed"].shape[1] - 1) ** 0.5)
        depth = 1 + max(int(k.split(".")[1]) for k in visual if k.startswith("blocks."))
        head_dim = visual["rope.freqs_cos"].shape[-1] if "rope.freqs_cos" in visual else 64
        return Eva02VisionConfig(
            image_size=int(grid * p), patch_size=int(p), hidden_size=int(d),
            num_hidden_layers=depth, num_attention_heads=int(d) // int(head_dim),
            intermediate_size=int(visual["blocks.0.mlp.w1.weight"].shape[0]),
            projection_dim=int(visual["head.weight"].shape[0]),
        )  # fmt: skip
    except (KeyError, ValueError, IndexError, AttributeError) as e:
        raise ValueError(f"not an EVA02 vision tower (no {e})") from None


def load_eva02(path: Any, dtype: torch.dtype = torch.float32) -> Eva02VisionModel:
    """An EVA02-CLIP vision tower (EVA02-CLIP-L-14-336 for PuLID) from a released file: the
    `.pt` (read with `torch.load(weights_only=True)`: tensors only) or a safetensors file of
    the same keys; its shape is read from the tensors (`config_from_state`).

    Raises:
        ModelNotFoundError: no such file.
        ArtifactError: unreadable, or not that tower.
    """
    from pathlib import Path

    from ..errors import ArtifactError, ModelNotFoundError

    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(
            f"{path}: no such file; EVA02-CLIP-L-14-336 is {CHECKPOINT} of {HUB_REPO} (download "
            "it yourself, then pass its path, e.g. --set clip_vision=FILE)"
        )
    from ..tensorfile import read_weights

    state = read_weights(path, unwrap=("state_dict", "module", "model"))
    try:
        visual = extract_visual(state)
        with torch.device("meta"):  # no time spent on a random init that is overwritten
            model = Eva02VisionModel(config_from_state(visual))
        model = model.to_empty(device="cpu")
        cos, sin = rope_tables(model.config)  # computed, not loaded: fill them in
        model.rope.freqs_cos.copy_(cos)
        model.rope.freqs_sin.copy_(sin)
        load_eva02_state(model, {k: v.to(dtype) for k, v in visual.items()})
    except (ValueError, RuntimeError) as e:
        raise ArtifactError(f"{path}: {e}") from None
    return model.to(dtype).eval()


def tiny_eva02(seed: int = 0) -> Eva02VisionModel:
    """A tiny random EVA02 tower (tests): 28 px, 14 px patches, width 32, 2 blocks."""
    cfg = Eva02VisionConfig(
        image_size=28, patch_size=14, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=40, projection_dim=16,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Eva02VisionModel(cfg)
        for p in model.parameters():
            nn.init.normal_(p, std=0.02 if p.ndim > 1 else 0.1)
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.data += 1.0
    return model.eval()


__all__ = [
    "CHECKPOINT",
    "HUB_REPO",
    "NAME",
    "Eva02VisionConfig",
    "Eva02VisionModel",
    "config_from_state",
    "extract_visual",
    "load_eva02",
    "load_eva02_state",
    "rope_tables",
    "tiny_eva02",
]
