"""FeedFace on the real SD1.5 / SDXL architectures and a real-config CLIP ViT-B/32 (random
weights): a control block beside every transformer block, zero-initialised = the base UNet
exactly, 50 face tokens per reference; one training step of the regularisation mask loss on
SD1.5 at 256 px."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sameface.adapters.control_blocks import transformer_blocks
from sameface.methods.feedface import FeedFaceConfig
from sameface.methods.feedface.model import FeedFaceModel
from sameface.models import real_config_base_model

pytestmark = pytest.mark.slow

BLOCKS = {"sd1": 16, "sdxl": 70}


@pytest.fixture(scope="module")
def vision():
    from sameface.models.clip_vision import random_clip_vision

    v = random_clip_vision("openai/clip-vit-base-patch32")
    assert v.seq_len == 50 and v.vit_dim == 768  # CLS + 7x7 patches of 32 px at 224 px
    return v


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_zero_initialised_controlnet_is_the_real_base_unet(family, vision, obama_rgb):
    base = real_config_base_model(family)
    unet = base.unet
    names = list(dict(unet.named_parameters()))
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(1, 4, 16, 16, generator=g)
    width = unet.config.cross_attention_dim
    text = torch.randn(1, 77, width, generator=g)
    added = None
    if family == "sdxl":
        added = {"text_embeds": torch.randn(1, 1280, generator=g),
                 "time_ids": torch.tensor([[128.0, 128, 0, 0, 128, 128]])}  # fmt: skip
    t = torch.tensor(400)
    with torch.no_grad():
        want = unet(lat, t, text, added_cond_kwargs=added).sample
    face = torch.from_numpy(obama_rgb[:600, 190:790].copy()).permute(2, 0, 1).float() / 255
    with FeedFaceModel(base, FeedFaceConfig(), vision=vision) as model:
        assert len(model.controls.names) == BLOCKS[family] == len(transformer_blocks(unet))
        tokens = model.tokens(model.features(face[None, None]))
        assert tokens.shape == (1, 50, width)
        with torch.no_grad():
            got = unet(
                lat, t, text, added_cond_kwargs=added,
                cross_attention_kwargs=model.cross_attention_kwargs(tokens),
            ).sample  # fmt: skip
        assert list(dict(unet.named_parameters())) == names  # the base keeps its names
    assert torch.equal(got, want)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in unet.modules())


def test_one_training_step_on_real_sd15(tmp_path, vision, analyzer):
    from sameface.data.prepare import PrepareSettings, prepare_face_dataset
    from sameface.methods.feedface.train import train
    from tests.conftest import EXAMPLES

    data = tmp_path / "data"
    prepare_face_dataset(EXAMPLES, data, analyzer, PrepareSettings(resolution=256), progress=False)
    base = real_config_base_model("sd1")
    cfg = FeedFaceConfig(batch_size=1, steps=1, resolution=256, log_every=1, checkpoint_every=0)
    out = train(data, base, cfg, tmp_path / "ff", vision=vision, progress=False)
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and np.isfinite(log[0]["loss"])
    meta = json.loads((out / "feedface.json").read_text())
    assert meta["feature_dim"] == 768 and meta["cross_attention_dim"] == 768
    assert len(meta["control_blocks"]) == 16
