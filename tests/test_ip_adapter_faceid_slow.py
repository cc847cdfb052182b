"""IP-Adapter-FaceID on the real SD1.5 architecture (random weights, the release's
shape: 4 tokens, rank-128 LoRA on every attention projection): our UNet output equals
diffusers' own `load_ip_adapter` of the same folder; one training step on SD1.5 at 128 px."""

from __future__ import annotations

import pytest
import torch

from sameface.methods.ip_adapter_faceid.config import IPAdapterFaceIDConfig
from sameface.methods.ip_adapter_faceid.model import WEIGHTS_FILE, FaceIDModel
from sameface.models import real_config_base_model

pytestmark = pytest.mark.slow


def test_the_release_shape_equals_diffusers_load_ip_adapter(tmp_path, family="sd1"):
    """SD1.5 only, to keep CI short: SDXL's release is checked key for key on the meta device
    (test_ip_adapter_faceid) and the same code runs both (measured here: SDXL matches too)."""
    base = real_config_base_model(family)
    unet, cross = base.unet, base.unet.config.cross_attention_dim
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(2, 4, 16, 16, generator=g)
    text = torch.randn(2, 77, cross, generator=g)
    added = None
    if family == "sdxl":
        added = {"text_embeds": torch.randn(2, 1280, generator=g),
                 "time_ids": torch.tensor([[128.0, 128, 0, 0, 128, 128]] * 2)}  # fmt: skip
    t = torch.tensor(400)
    emb = torch.nn.functional.normalize(torch.randn(1, 1, 512, generator=g), dim=-1)
    cfg = IPAdapterFaceIDConfig(recognizer="insightface")  # rank 128, 4 tokens: the release
    with FaceIDModel(base, cfg) as model:
        with torch.no_grad():  # as trained weights would be: nothing zero
            for name, p in model.named_parameters():
                p.add_(torch.randn(p.shape, generator=g) * (0.02 if "lora" in name else 0.05))
        assert model.lora  # the LoRA is there, on both attention kinds
        folder = model.save(tmp_path / "faceid")
        with torch.no_grad():
            tokens = torch.cat([model.uncond_tokens(), model.tokens(emb)])
            ours = unet(lat, t, text, added_cond_kwargs=added,
                        cross_attention_kwargs=model.cross_attention_kwargs(tokens)).sample  # fmt: skip
    pipe = base.as_pipeline()
    pipe.load_ip_adapter(
        str(folder), subfolder="", weight_name=WEIGHTS_FILE, image_encoder_folder=None
    )
    image_embeds = [torch.cat([torch.zeros_like(emb), emb])]
    with torch.no_grad():
        theirs = unet(
            lat, t, text, added_cond_kwargs=(added or {}) | {"image_embeds": image_embeds}
        ).sample
    torch.testing.assert_close(ours, theirs, atol=2e-4, rtol=1e-3)


def test_one_training_step_on_real_sd15(tmp_path, analyzer):
    from pathlib import Path

    from sameface.data.prepare import PrepareSettings, prepare_face_dataset
    from sameface.methods.ip_adapter_faceid.train import train

    data = tmp_path / "data"
    repo = Path(__file__).resolve().parents[1]
    prepare_face_dataset(
        repo / "examples" / "faces", data, analyzer, PrepareSettings(resolution=128), progress=False
    )
    base = real_config_base_model("sd1")
    before = {k: v.clone() for k, v in base.unet.state_dict().items()}
    cfg = IPAdapterFaceIDConfig(
        recognizer="sface", batch_size=1, steps=1, resolution=128, checkpoint_every=0
    )
    out = train(data, base, cfg, tmp_path / "out", progress=False)
    after = base.unet.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in after)
    assert (out / WEIGHTS_FILE).is_file()
