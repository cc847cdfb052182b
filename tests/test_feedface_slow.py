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


def _inputs(base, dtype, side):
    g = torch.Generator().manual_seed(0)
    unet = base.unet
    lat = torch.randn(1, 4, side, side, generator=g).to(dtype)
    text = torch.randn(1, 77, unet.config.cross_attention_dim, generator=g).to(dtype)
    added = None
    if base.is_sdxl:
        added = {"text_embeds": torch.randn(1, 1280, generator=g).to(dtype),
                 "time_ids": torch.tensor([[128.0, 128, 0, 0, 128, 128]]).to(dtype)}  # fmt: skip
    return lat, torch.tensor(400), text, added


def _face(obama_rgb):
    face = torch.from_numpy(obama_rgb[:600, 190:790].copy()).permute(2, 0, 1).float() / 255
    return face[None, None]


def test_zero_initialised_controlnet_is_the_real_sd15_unet(vision, obama_rgb):
    base = real_config_base_model("sd1")
    unet = base.unet
    names = list(dict(unet.named_parameters()))
    lat, t, text, added = _inputs(base, torch.float32, 16)
    with torch.no_grad():
        want = unet(lat, t, text).sample
    with FeedFaceModel(base, FeedFaceConfig(), vision=vision) as model:
        assert len(model.controls.names) == BLOCKS["sd1"] == len(transformer_blocks(unet))
        tokens = model.tokens(model.features(_face(obama_rgb)))
        assert tokens.shape == (1, 50, 768)
        with torch.no_grad():
            kw = model.cross_attention_kwargs(tokens)
            got = unet(lat, t, text, cross_attention_kwargs=kw).sample
        assert list(dict(unet.named_parameters())) == names  # the base keeps its names
    assert torch.equal(got, want)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in unet.modules())


def test_every_sdxl_block_gets_a_zero_initialised_control_block(vision, obama_rgb):
    """SDXL's 70 control blocks (~2.3 B parameters, so bfloat16): in one UNet pass, each
    control block runs on the face tokens and leaves its origin block's output unchanged."""
    base = real_config_base_model("sdxl", dtype=torch.bfloat16)
    unet = base.unet
    lat, t, text, added = _inputs(base, torch.bfloat16, 8)
    origins = transformer_blocks(unet)
    before, after, ran = {}, {}, []
    handles = [b.register_forward_hook(lambda m, a, o, n=n: before.setdefault(n, o.clone()))
               for n, b in origins.items()]  # fmt: skip
    with FeedFaceModel(base, FeedFaceConfig(), vision=vision) as model:
        assert len(model.controls.names) == BLOCKS["sdxl"] == len(origins)
        handles += [b.register_forward_hook(lambda m, a, o, n=n: after.setdefault(n, o))
                    for n, b in origins.items()]  # fmt: skip
        handles += [c.register_forward_hook(lambda *a: ran.append(1))
                    for c in model.controls.blocks.values()]  # fmt: skip
        tokens = model.tokens(model.features(_face(obama_rgb)))
        assert tokens.shape == (1, 50, 2048)
        with torch.no_grad():
            kw = model.cross_attention_kwargs(tokens)
            unet(lat, t, text, added_cond_kwargs=added, cross_attention_kwargs=kw)
    for h in handles:
        h.remove()
    assert len(ran) == 70 and before.keys() == after.keys() == origins.keys()
    assert all(torch.equal(before[n], after[n]) for n in origins)
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
