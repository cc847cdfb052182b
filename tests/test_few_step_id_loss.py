"""PuLID's Lightning-style branch and the ID loss on generated images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sameface.imageio import load_image
from sameface.losses import face_id_loss
from sameface.models import tiny_base_model
from sameface.models.text import encode_prompts
from sameface.training.few_step import generate_x0


@pytest.mark.parametrize("sampler", ["ddim", "euler", "lcm"])
def test_few_step_branch_is_differentiable_to_the_id_tokens(sampler):
    from sameface.adapters import install_id_adapter

    base = tiny_base_model("sd1")
    hidden, added = encode_prompts(base, ["a photo of a person"])
    adapter = install_id_adapter(base.unet, 32, init="random")
    try:
        tokens = torch.randn(1, 4, 32, requires_grad=True)
        kw = {"id_tokens": tokens, "id_scale": 1.0}
        img = generate_x0(
            base,
            hidden,
            cross_attention_kwargs=kw,
            sampler=sampler,
            steps=2,
            generator=torch.Generator().manual_seed(0),
        )
        assert img.shape == (1, 3, 64, 64) and img.min() >= -1 and img.max() <= 1
        img.mean().backward()
        assert (
            tokens.grad is not None
            and torch.isfinite(tokens.grad).all()
            and tokens.grad.abs().sum() > 0
        )
        again = generate_x0(
            base,
            hidden,
            cross_attention_kwargs=kw,
            sampler=sampler,
            steps=2,
            generator=torch.Generator().manual_seed(0),
            checkpoint=False,
        )
        torch.testing.assert_close(
            again, img.detach(), atol=1e-5, rtol=0
        )  # checkpointing changes nothing
    finally:
        adapter.remove()
    with pytest.raises(ValueError):
        generate_x0(base, hidden, sampler="heun")


def test_face_id_loss_on_generated_images(obama, obama2, biden):
    import cv2

    from sameface.faces import YuNetDetector
    from sameface.faces.torch_sface import load_sface_torch

    rec, det = load_sface_torch(), YuNetDetector()
    imgs = [cv2.resize(load_image(p), (256, 320)) for p in (obama2, biden)]
    x = torch.tensor(np.stack(imgs)).permute(0, 3, 1, 2).float() / 127.5 - 1
    x.requires_grad_(True)
    ref_img = cv2.resize(load_image(obama), (256, 320))
    ref_face = det.detect(ref_img)[0]
    from sameface.faces.torch_sface import align_faces_torch

    ref_crop = align_faces_torch(
        torch.tensor(ref_img).permute(2, 0, 1)[None].float(), ref_face.landmarks[None]
    )
    ref = rec.embed(ref_crop).detach().repeat(2, 1)
    loss, found = face_id_loss(x, ref, rec, det)
    assert found.tolist() == [True, True]
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    same, _ = face_id_loss(x[:1].detach(), ref[:1], rec, det)
    other, _ = face_id_loss(x[1:].detach(), ref[1:], rec, det)
    assert same < 0.5 < other  # obama vs obama2 close, biden far
    noise = torch.rand(1, 3, 64, 64) * 2 - 1
    zero, found = face_id_loss(noise.requires_grad_(True), ref[:1], rec, det)
    assert found.tolist() == [False] and float(zero.detach()) == 0.0


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_one_step_image_is_tweedies_x0_decoded(prediction):
    """The one-step branch: a prediction of the true noise (or v) gives back the clean latents
    exactly, decoded by the VAE; gradients reach the prediction."""
    import torch

    from sameface.models import tiny_base_model
    from sameface.training.few_step import one_step_image
    from sameface.training.frozen import training_scheduler

    base = tiny_base_model("sd1")
    base.scheduler.register_to_config(prediction_type=prediction)
    sched = training_scheduler(base)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 4, 8, 8, generator=g)
    noise = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([10, 700])
    x_t = sched.add_noise(x0, noise, t)
    target = sched.get_velocity(x0, noise, t) if prediction == "v_prediction" else noise
    pred = target.clone().requires_grad_(True)
    images = one_step_image(base, sched, x_t, pred, t)
    with torch.no_grad():
        want = base.vae.decode(x0 / base.vae.config.scaling_factor).sample.clamp(-1, 1)
    assert torch.allclose(images, want, atol=1e-4)
    images.sum().backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
