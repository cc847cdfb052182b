"""DreamIdentity on the real SD1.5 / SDXL architectures (random weights) with the offline default
backbone (the shipped SFace read at 4 stages + its embedding) and a real-size arcface_torch
ViT (vit_t's shape): the words per text encoder (SDXL: 768 + 1280), the textual-inversion file
plain diffusers' SDXL loader reads, and one training step on SD1.5 at 256 px."""

from __future__ import annotations

import json

import pytest
import torch

from sameface.identity import Identity
from sameface.methods.dreamidentity import DreamIdentityConfig
from sameface.methods.dreamidentity.backbones import ArcFaceViT, load_backbone
from sameface.methods.dreamidentity.model import M2Encoder
from sameface.models import real_config_base_model

pytestmark = pytest.mark.slow


def test_vit_t_shaped_backbone_reads_layers_3_6_9_12_and_the_embedding(tmp_path):
    """arcface_torch's vit_t: 256 wide, 12 blocks, 9 px patches (144 positions), 512-d embedding."""
    from safetensors.torch import save_file

    vit = ArcFaceViT(
        dim=256, depth=12, heads=8, patch=9, num_patches=144, hidden=1024, num_features=512
    )
    save_file(
        {k: v.contiguous() for k, v in vit.state_dict().items()},
        str(tmp_path / "vit_t.safetensors"),
    )
    loaded = load_backbone(str(tmp_path / "vit_t.safetensors"))  # the paper's layers, 8 heads
    feats = loaded.features(torch.rand(2, 3, 112, 112) * 255)
    assert [tuple(f.shape) for f in feats] == [(2, 256)] * 4 + [(2, 512)]


def test_words_for_the_real_sdxl_text_encoders(tmp_path, obama, obama2):
    """SDXL: the words for both encoders (SD1.5's 768-wide words: the training step below)."""
    from safetensors.torch import load_file

    from sameface.methods.dreamidentity.encode import personalize

    base = real_config_base_model("sdxl")
    model = M2Encoder(base, DreamIdentityConfig(), backbone=load_backbone("sface"))
    assert model.k == 5 and model.widths == [768, 1280]
    for per_encoder in model.proj:
        for p in per_encoder:
            torch.nn.init.normal_(p[-1].weight, std=0.02)
    folder = model.save(tmp_path / "enc")
    ident = Identity.from_images([obama, obama2], square_size=64)
    art = personalize(ident, base, DreamIdentityConfig(adapter=str(folder)), tmp_path / "id")
    tensors = load_file(str(art / "learned_embeds.safetensors"))
    assert tensors["clip_l"].shape == (5, 768) and tensors["clip_g"].shape == (5, 1280)
    assert json.loads((art / "artifact.json").read_text())["num_tokens"] == 5


def test_one_training_step_on_sd15(tmp_path, analyzer):
    from pathlib import Path

    from sameface.data.prepare import PrepareSettings, prepare_face_dataset
    from sameface.methods.dreamidentity.train import train

    data = tmp_path / "data"
    faces = Path(__file__).resolve().parents[1] / "examples" / "faces"
    prepare_face_dataset(faces, data, analyzer, PrepareSettings(resolution=256), progress=False)
    base = real_config_base_model("sd1")
    cfg = DreamIdentityConfig(batch_size=1, steps=1, log_every=1, resolution=256)
    out = train(data, base, cfg, tmp_path / "enc", progress=False)
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["loss"] == log[0]["loss"]
    assert not base.text_encoder.get_input_embeddings()._forward_hooks
