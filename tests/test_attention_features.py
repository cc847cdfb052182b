"""Composable attention features (`sameface.adapters.attention`) on a tiny SD1 UNet: several
features together, attach/detach in any order, the attention-map recorder against a hand
computation, declared keys only, and the base model bit for bit when nothing is active."""

from __future__ import annotations

import pytest
import torch

from sameface.adapters import (
    AttentionFeature,
    AttentionMaps,
    AttentionRecorder,
    attach_feature,
    detach_feature,
    install_id_adapter,
)
from sameface.adapters.attention import attached_features, attention_layers
from sameface.errors import SamefaceError
from sameface.models import tiny_base_model


class Shift(AttentionFeature):
    """A toy branch: adds `shift` to every cross-attention output before the projection."""

    keys = ("shift",)
    description = "a shift"

    def extra(self, name, attn, query, kwargs, text):
        return torch.full(
            (query.shape[0], query.shape[2], query.shape[1] * query.shape[3]), kwargs["shift"]
        )


@pytest.fixture
def unet():
    return tiny_base_model("sd1").unet


def _run(unet, **kwargs):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, unet.config.in_channels, 8, 8, generator=g)
    text = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        return unet(x, 400, text, cross_attention_kwargs=kwargs or None).sample


def test_features_compose_and_detach_in_any_order(unet, caplog):
    before = dict(unet.attn_processors)
    base = _run(unet)
    shift, adapter = Shift(), install_id_adapter(unet, unet.config.cross_attention_dim)
    attach_feature(unet, shift)
    tokens = torch.randn(2, 3, unet.config.cross_attention_dim)
    assert torch.equal(_run(unet), base)  # nothing active: the base model
    only_id = _run(unet, id_tokens=tokens)
    only_shift = _run(unet, shift=0.5)
    both = _run(unet, id_tokens=tokens, shift=0.5)
    assert not torch.equal(only_id, base) and not torch.equal(only_shift, base)
    assert not torch.equal(both, only_id) and not torch.equal(both, only_shift)
    adapter.remove()  # the first attached leaves first: the shift keeps working
    assert attached_features(unet) == [shift]
    assert torch.equal(_run(unet, shift=0.5), only_shift)
    assert "not expected" not in caplog.text  # declared keys pass silently
    assert torch.equal(_run(unet, id_tokens=tokens, shift=0.5), only_shift)  # nobody reads it now
    assert "['id_tokens'] are not expected" in caplog.text  # diffusers says so
    detach_feature(unet, shift)
    assert all(unet.attn_processors[n] is p for n, p in before.items())
    assert torch.equal(_run(unet), base)


def test_clashing_keys_are_refused_and_recorders_are_shared(unet):
    attach_feature(unet, Shift())
    with pytest.raises(SamefaceError, match="already has a shift"):
        attach_feature(unet, Shift())
    a, b = AttentionRecorder(), AttentionRecorder()
    assert attach_feature(unet, a) is a and attach_feature(unet, b) is a  # shared
    detach_feature(unet, b)
    assert a in attached_features(unet)  # still held by `a`'s holder
    detach_feature(unet, a)
    assert a not in attached_features(unet)


def test_attention_maps_match_a_hand_computation(unet):
    attach_feature(unet, AttentionRecorder())
    positions = torch.tensor([[1, 2], [5, 1]])
    request = AttentionMaps(positions)
    record: dict = {}
    out = _run(unet, attn_maps=request, attn_record=record)
    assert torch.equal(out, _run(unet))  # recording changes nothing
    layers = attention_layers(unet)
    cross = [n for n, a in layers.items() if a.is_cross_attention]
    assert sorted(request.maps) == sorted(cross)
    for name in cross:
        q, k = record[name]
        probs = (q.float() @ k.float().transpose(-1, -2) * layers[name].scale).softmax(-1)
        assert torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-5)  # rows over tokens
        want = torch.stack([probs[b].mean(0)[:, positions[b]].T for b in range(2)])
        got = request.maps[name]
        assert got.shape == (2, 2, q.shape[2]) and torch.allclose(got, want, atol=1e-6)
    # the maps carry gradients (attention refocusing trains through them)
    x = torch.randn(2, unet.config.in_channels, 8, 8)
    text = torch.randn(2, 77, unet.config.cross_attention_dim, requires_grad=True)
    request = AttentionMaps(positions)
    unet(x, 400, text, cross_attention_kwargs={"attn_maps": request})
    sum(m.sum() for m in request.maps.values()).backward()
    assert text.grad is not None and text.grad.abs().sum() > 0
