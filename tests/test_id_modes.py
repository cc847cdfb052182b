"""PuLID v1.1's ways of joining the ID attention to the text attention, on hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch

from sameface.adapters.id_modes import id_mass, join, pad_zero_tokens, projection_on


def test_zero_tokens_are_a_fixed_softmax_sink():
    q = torch.tensor([[[[1.0, 0.0]]]])  # (B=1, heads=1, L=1, d=2)
    k = torch.tensor([[[[2.0, 0.0]]]])  # one ID token, logit 2/sqrt(2)
    v = torch.tensor([[[[3.0, -1.0]]]])
    for n in (0, 1, 20):
        kk, vv = pad_zero_tokens(k, v, n)
        assert (
            kk.shape[2] == 1 + n and torch.all(kk[:, :, 1:] == 0) and torch.all(vv[:, :, 1:] == 0)
        )
        out = torch.nn.functional.scaled_dot_product_attention(q, kk, vv)
        s = math.exp(2 / math.sqrt(2))
        assert torch.allclose(out, v * s / (s + n))  # exp(s)·v / (exp(s) + num_zero)


def test_projection_is_along_the_token_axis_per_channel():
    h = torch.tensor([[[1.0, 2.0], [1.0, 0.0]]])  # (B=1, L=2, C=2)
    i = torch.tensor([[[3.0, 1.0], [1.0, 5.0]]])
    p = projection_on(h, i)
    # channel 0: H = (1, 1), I = (3, 1): coefficient 4/2 = 2 -> P = (2, 2)
    # channel 1: H = (2, 0), I = (1, 5): coefficient 2/4 = 0.5 -> P = (1, 0)
    assert torch.allclose(p, torch.tensor([[[2.0, 1.0], [2.0, 0.0]]]))
    rest = i - p
    assert torch.allclose((h * rest).sum(dim=-2), torch.zeros(1, 2))  # orthogonal to H


def test_the_three_joins():
    g = torch.Generator().manual_seed(0)
    h, i = torch.randn(2, 6, 4, generator=g), torch.randn(2, 6, 4, generator=g)
    scale = torch.tensor([0.5, 2.0]).view(-1, 1, 1)  # per sample
    assert torch.allclose(join(h, i, scale, "off"), scale * i)
    v1 = join(h, i, scale, "v1")
    assert torch.allclose((h * (v1 / scale)).sum(dim=-2), torch.zeros(2, 4), atol=1e-5)
    ones, zeros = torch.ones(2, 6, 1), torch.zeros(2, 6, 1)
    assert torch.allclose(join(h, i, scale, "v2", ones), scale * i)  # all mass on the ID: plain
    assert torch.allclose(join(h, i, scale, "v2", zeros), v1)  # none: v1
    half = join(h, i, 1.0, "v2", torch.full((2, 6, 1), 0.5))
    assert torch.allclose(half, i - 0.5 * projection_on(h, i))
    with pytest.raises(ValueError, match="needs the ID attention mass"):
        join(h, i, 1.0, "v2")
    with pytest.raises(ValueError, match="ortho mode"):
        join(h, i, 1.0, "v3")


def test_the_mass_on_the_first_five_id_tokens():
    q = torch.zeros(1, 2, 3, 4)  # equal logits: uniform attention over the ID tokens
    k = torch.randn(1, 2, 8, 4)
    assert torch.allclose(id_mass(q, k), torch.full((1, 3, 1), 5 / 8))
    k_pad, _ = pad_zero_tokens(k, k, 2)  # zero tokens take their share too
    assert torch.allclose(id_mass(q, k_pad), torch.full((1, 3, 1), 5 / 10))
    q = torch.ones(1, 1, 1, 1) * 10
    k = torch.tensor([[[[1.0]] * 5 + [[-1.0]] * 3]])  # the first five win
    assert id_mass(q, k).item() > 0.99


def test_a_pulid_folders_attention_options_reach_generation(tmp_path):
    """The options a PuLID folder records (e.g. an imported release's num_zero 20, ortho v2)
    are the ones its pipeline generates with, and they change the image."""
    import json
    import shutil

    import numpy as np

    from sameface.demo import load_world
    from sameface.identity import Identity
    from sameface.methods import get_method

    world = load_world()
    spec = get_method("pulid")
    photos = next(iter(world.reference_people().values()))
    identity = Identity.from_images(photos[:1], analyzer=world.analyzer(), square_expand=None,
                                    square_size=world.image_size)  # fmt: skip
    images = {}
    (tmp_path / "clip").symlink_to(world.folder / "clip")  # the folder names its CLIP as ../clip
    for mode in ("off", "v1"):
        adapter = tmp_path / f"adapter-{mode}"
        shutil.copytree(world.folder / "pulid", adapter)
        meta = json.loads((adapter / "pulid.json").read_text())
        meta["config"] |= {"ortho": mode, "num_zero": 0 if mode == "off" else 3}
        (adapter / "pulid.json").write_text(json.dumps(meta))
        settings = spec.world.settings(world, adapter) | {"adapter": str(adapter)}
        art = tmp_path / f"art-{mode}"
        spec.personalize(identity, world.base, spec.config_cls(**settings), art,
                         base_spec=str(world.folder / "base"), progress=False)  # fmt: skip
        with spec.pipeline_cls.from_artifact(art, world.base) as pipe:
            assert (pipe.adapter.ortho, pipe.adapter.num_zero) == (mode, 0 if mode == "off" else 3)
            out = pipe("a photo of <id>", num_inference_steps=3, output_type="np",
                       generator=torch.Generator().manual_seed(0))  # fmt: skip
            images[mode] = np.asarray(out.images[0])
    assert not np.allclose(images["off"], images["v1"])
