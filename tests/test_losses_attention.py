"""MagiCapture's Attention Refocusing loss on hand-made maps."""

from __future__ import annotations

import pytest
import torch

from sameface.losses import attention_refocusing_loss
from sameface.losses.attention import rescaled_map


def _maps(grid: torch.Tensor) -> torch.Tensor:
    """(B, n, s, s) -> (B, n, s*s), as the attention recorder stores them."""
    return grid.flatten(2)


def test_attention_inside_the_mask_costs_nothing():
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1  # top half
    grid = torch.rand(1, 1, 4, 4) * mask  # attention only inside, any values
    grid[..., 0, 0] = 1.0
    assert attention_refocusing_loss([_maps(grid)], mask) == 0


def test_attention_outside_counts_after_rescaling():
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    grid = torch.full((1, 1, 4, 4), 0.01)
    grid[..., 3, 3] = 0.05  # the peak is outside: rescaled to 1 there, 0 elsewhere
    loss = attention_refocusing_loss([_maps(grid)], mask)
    assert loss == pytest.approx(1 / 16)
    # Rescaling makes the loss independent of the maps' overall scale (probabilities are tiny).
    assert attention_refocusing_loss([_maps(grid * 10)], mask) == pytest.approx(1 / 16)


def test_maps_are_upsampled_and_averaged_over_layers_per_token():
    mask = torch.zeros(1, 2, 8, 8)
    mask[:, 0, :4] = 1  # token 0 may attend the top, token 1 the bottom
    mask[:, 1, 4:] = 1
    top = torch.zeros(1, 1, 2, 2)
    top[..., 0, :] = 1
    both = torch.cat([top, top.flip(-2)], dim=1)  # each token where it belongs
    # Bilinear upsampling spills a little over the border; the wrong way round costs 20x more.
    right = attention_refocusing_loss([_maps(both)] * 3, mask)
    swapped = torch.cat([top.flip(-2), top], dim=1)
    assert right < 0.03 and attention_refocusing_loss([_maps(swapped)], mask) > 20 * right
    r = rescaled_map(_maps(both), (8, 8))
    assert r.shape == (1, 2, 8, 8) and r.min() == 0 and r.max() == 1


def test_gradient_flows_to_the_maps_not_through_the_rescaling_constants():
    grid = torch.rand(1, 1, 4, 4, requires_grad=True)
    mask = torch.zeros(1, 1, 4, 4)
    attention_refocusing_loss([_maps(grid)], mask).backward()
    assert grid.grad is not None and grid.grad.abs().sum() > 0


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="square grid"):
        attention_refocusing_loss([torch.rand(1, 1, 10)], torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="batch, tokens"):
        attention_refocusing_loss([torch.rand(1, 2, 16)], torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="no attention maps"):
        attention_refocusing_loss([], torch.zeros(1, 1, 4, 4))
