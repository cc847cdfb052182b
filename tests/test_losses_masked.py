"""FeedFace's mask losses (seed 002, B.1) on hand-made tensors."""

from __future__ import annotations

import pytest
import torch

from sameface.losses import feedface_loss, mask_diffusion_loss, regularization_mask_loss


def _tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    pred, eps, frozen = (torch.randn(2, 4, 8, 8, generator=g) for _ in range(3))
    mask = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
    return pred, eps, frozen, mask


def test_mask_of_ones_is_the_standard_loss_and_zeros_distil_to_the_frozen_model():
    pred, eps, frozen, _ = _tensors()
    ones, zeros = torch.ones(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)
    standard = feedface_loss("standard", pred, eps)
    assert torch.allclose(standard, ((pred - eps) ** 2).mean())
    assert torch.allclose(regularization_mask_loss(pred, eps, frozen, ones), standard)
    assert torch.allclose(mask_diffusion_loss(pred, eps, ones), standard)
    assert torch.allclose(
        regularization_mask_loss(pred, eps, frozen, zeros), ((pred - frozen) ** 2).mean()
    )
    assert mask_diffusion_loss(pred, eps, zeros) == 0


def test_regularisation_loss_by_hand_and_its_gradient():
    pred, eps, frozen, mask = _tensors(1)
    pred.requires_grad_(True)
    frozen.requires_grad_(True)
    loss = regularization_mask_loss(pred, eps, frozen, mask)
    m = mask.expand_as(pred)
    by_hand = torch.where(m > 0, eps - pred, frozen - pred).pow(2).mean()
    assert torch.allclose(loss, by_hand)
    loss.backward()
    assert frozen.grad is None  # the frozen model's prediction is a target, not trained
    # a soft mask blends the targets: m·ε + (1 − m)·ε̂
    soft = torch.full_like(mask, 0.25)
    blend = ((0.25 * eps + 0.75 * frozen) - pred).pow(2).mean()
    assert torch.allclose(regularization_mask_loss(pred, eps, frozen, soft), blend)
    # masked-only: the background does not count
    assert torch.allclose(mask_diffusion_loss(pred, eps, mask), (m * (eps - pred)).pow(2).mean())


def test_bad_shapes_and_kinds_are_refused():
    pred, eps, frozen, mask = _tensors()
    with pytest.raises(ValueError, match="mask"):
        mask_diffusion_loss(pred, eps, mask[:, :, :4])
    with pytest.raises(ValueError, match="frozen"):
        regularization_mask_loss(pred, eps, frozen[:1], mask)
    with pytest.raises(ValueError, match="needs a face mask"):
        feedface_loss("mask", pred, eps)
    with pytest.raises(ValueError, match="frozen model"):
        feedface_loss("regularization", pred, eps, mask)
    with pytest.raises(ValueError, match="unknown"):
        feedface_loss("l1", pred, eps, mask)
