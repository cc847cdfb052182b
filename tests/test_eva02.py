"""EVA02-CLIP's vision tower (PuLID's release conditions on EVA02-CLIP-L-14-336): the
release's key layout at real size, the rotary tables and the block maths by hand, loading a
checkpoint file safely, and the tower behind `ClipVision` for an imported PuLID."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sameface.errors import ArtifactError, ModelNotFoundError
from sameface.models.clip_vision import ClipVision
from sameface.models.eva02 import (
    NAME,
    Eva02VisionConfig,
    Eva02VisionModel,
    config_from_state,
    load_eva02,
    rope_tables,
    tiny_eva02,
)


def test_the_real_tower_has_the_releases_keys_and_shapes():
    """EVA02-CLIP-L-14-336 (on the meta device): the `visual.*` keys of
    EVA02_CLIP_L_336_psz14_s6B.pt as EVA-CLIP's code names them, and their shapes."""
    with torch.device("meta"):
        model = Eva02VisionModel()
    sd = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert len(sd) == 562  # 5 + 24 blocks × 22 + rope tables (one per block, one shared) + 4
    assert shapes["pos_embed"] == (1, 577, 1024) and shapes["cls_token"] == (1, 1, 1024)
    assert shapes["patch_embed.proj.weight"] == (1024, 3, 14, 14)
    assert shapes["blocks.23.attn.q_bias"] == shapes["blocks.23.attn.v_bias"] == (1024,)
    assert "blocks.0.attn.k_bias" not in shapes  # k has no bias in EVA
    assert shapes["blocks.0.attn.inner_attn_ln.weight"] == (1024,)
    assert shapes["blocks.0.mlp.w1.weight"] == shapes["blocks.0.mlp.w2.weight"] == (2730, 1024)
    assert shapes["blocks.0.mlp.ffn_ln.weight"] == (2730,) and shapes["head.weight"] == (768, 1024)
    assert shapes["rope.freqs_cos"] == shapes["blocks.7.attn.rope.freqs_sin"] == (576, 64)
    assert config_from_state(sd) == Eva02VisionConfig()


def test_rotary_tables_by_hand():
    """Row angles in the first half of each head, column angles in the second, each frequency
    for a pair of channels; positions rescaled from the 24-grid to the 16-grid."""
    cfg = Eva02VisionConfig()
    cos, sin = rope_tables(cfg)
    r, c = 5, 17
    token = r * 24 + c
    for i in range(16):  # 32 channels per half = 16 pairs
        f = 10000 ** (-2 * i / 32)
        for half, pos in ((0, r), (32, c)):
            angle = pos * 16 / 24 * f
            for ch in (half + 2 * i, half + 2 * i + 1):
                assert math.isclose(cos[token, ch].item(), math.cos(angle), abs_tol=1e-5)
                assert math.isclose(sin[token, ch].item(), math.sin(angle), abs_tol=1e-5)


def test_a_block_is_the_published_maths():
    """One block by hand: q, v biases, k none; RoPE on the patch tokens only; the inner
    LayerNorm before the output projection; SwiGLU with its own LayerNorm."""
    model = tiny_eva02(seed=3)
    cfg, block = model.config, model.blocks[0]
    x = torch.randn(2, cfg.grid**2 + 1, cfg.hidden_size)
    a = block.attn
    h = F.layer_norm(x, (cfg.hidden_size,), block.norm1.weight, block.norm1.bias, 1e-6)

    def split(t):
        return t.view(2, -1, cfg.num_attention_heads, 16).transpose(1, 2)

    q = split(h @ a.q_proj.weight.T + a.q_bias)
    k = split(h @ a.k_proj.weight.T)
    v = split(h @ a.v_proj.weight.T + a.v_bias)
    cos, sin = rope_tables(cfg)

    def rotate(t):
        rot = torch.stack([-t[..., 1::2], t[..., 0::2]], dim=-1).flatten(-2)
        return torch.cat([t[:, :, :1], t[:, :, 1:] * cos + rot[:, :, 1:] * sin], dim=2)

    att = torch.softmax(rotate(q) @ rotate(k).transpose(-1, -2) / 4.0, dim=-1) @ v
    att = att.transpose(1, 2).reshape(2, -1, cfg.hidden_size)
    ln = a.inner_attn_ln
    y = x + F.linear(
        F.layer_norm(att, att.shape[-1:], ln.weight, ln.bias, 1e-6), a.proj.weight, a.proj.bias
    )
    m = block.mlp
    g = F.layer_norm(y, y.shape[-1:], block.norm2.weight, block.norm2.bias, 1e-6)
    hid = F.silu(m.w1(g)) * m.w2(g)
    want = y + m.w3(F.layer_norm(hid, hid.shape[-1:], m.ffn_ln.weight, m.ffn_ln.bias, 1e-6))
    torch.testing.assert_close(block(x), want, atol=1e-5, rtol=1e-5)


def test_a_checkpoint_file_loads_behind_clip_vision(tmp_path):
    """A file in the release's layout (`visual.*` beside `text.*`, saved by torch) loads with
    weights_only, strictly, as a ClipVision named EVA02-CLIP-L-14-336."""
    model = tiny_eva02(seed=1)
    state = {f"visual.{k}": v for k, v in model.state_dict().items()}
    state["text.token_embedding.weight"] = torch.zeros(3, 4)  # the text tower is not read
    path = tmp_path / "EVA02_CLIP_tiny.pt"
    torch.save(state, path)
    vision = ClipVision.load(path)
    assert vision.name == NAME and vision.source == str(path)
    assert (vision.clip_dim, vision.vit_dim, vision.num_layers, vision.seq_len) == (16, 32, 2, 5)
    images = torch.rand(2, 3, 40, 40)
    emb, hidden = vision.features(images, [0, 2])
    assert emb.shape == (2, 16) and [h.shape for h in hidden] == [(2, 5, 32)] * 2
    with torch.no_grad():
        want = model(pixel_values=vision.preprocess(images), output_hidden_states=True)
    torch.testing.assert_close(emb, want.image_embeds)
    torch.testing.assert_close(hidden[1], want.hidden_states[2])


def test_bad_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no such file"):
        load_eva02(tmp_path / "missing.pt")
    model = tiny_eva02()
    state = {f"visual.{k}": v for k, v in model.state_dict().items()}
    del state["visual.blocks.1.attn.q_bias"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(ArtifactError, match="1 missing"):
        load_eva02(tmp_path / "partial.pt")
    torch.save({"text.w": torch.zeros(2)}, tmp_path / "text.pt")
    with pytest.raises(ArtifactError, match="not an EVA-CLIP checkpoint"):
        load_eva02(tmp_path / "text.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x80\x04junk")
    with pytest.raises(ArtifactError):
        load_eva02(tmp_path / "junk.pt")


def test_the_towers_name_resolves_only_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match=r"EVA02_CLIP_L_336_psz14_s6B\.pt"):
        ClipVision.load(NAME)
