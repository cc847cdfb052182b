"""ID adapter machinery (PuLID, seed 004) on tiny SD1 / SDXL UNets: exactness without ID,
restoration, gradients only to the adapter, checkpoints, the alignment-loss recorder, ID
encoders and the parsed face."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from sameface.adapters import (
    CrossAttnRecord,
    IDAdapter,
    IDAttnProcessor,
    IDEncoderConfig,
    IDFormer,
    IDMLPEncoder,
    build_id_encoder,
    install_id_adapter,
)
from sameface.errors import ArtifactError, SamefaceError
from sameface.faces.parsing import LUMA_601, parsed_face, parsed_face_tensor
from sameface.losses import align_layout_loss, align_semantic_loss, alignment_loss
from sameface.models import tiny_base_model
from sameface.models.text import encode_prompts

FAMILIES = ["sd1", "sdxl"]


class Setup:
    """A tiny base model with a fixed batch of UNet inputs."""

    def __init__(self, family: str, seed: int = 0):
        self.base = tiny_base_model(family, seed=seed)
        self.unet = self.base.unet
        with torch.no_grad():
            self.cond, self.added = encode_prompts(self.base, ["a photo of a man", "a dog"])
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(2, 4, 8, 8, generator=g)
        self.t = torch.tensor([10, 700])
        self.width = self.cond.shape[-1]  # the UNet's cross_attention_dim
        self.tokens = torch.randn(2, 4, self.width, generator=g)

    def __call__(self, **cross_attention_kwargs) -> torch.Tensor:
        return self.unet(
            self.x,
            self.t,
            self.cond,
            added_cond_kwargs=self.added,
            cross_attention_kwargs=cross_attention_kwargs or None,
        ).sample


@pytest.fixture(params=FAMILIES)
def setup(request) -> Setup:
    return Setup(request.param)


def test_without_id_the_output_is_the_base_models_exactly(setup):
    with torch.no_grad():
        ref = setup()
        adapter = install_id_adapter(setup.unet, setup.width)
        assert adapter.installed
        assert torch.equal(setup(), ref)
        assert torch.equal(setup(id_tokens=None), ref)
        assert torch.equal(setup(id_tokens=setup.tokens, id_scale=0.0), ref)
        # Recording computes attention itself (AttnProcessor2_0's structure): still exact.
        assert torch.equal(setup(id_tokens=None, attn_record={}), ref)
        with_id = setup(id_tokens=setup.tokens, id_scale=1.0)
        assert not torch.allclose(with_id, ref, atol=1e-4)
        # The adapter's default scale applies when a call passes none.
        assert torch.equal(setup(id_tokens=setup.tokens), with_id)
        adapter.scale = 0.5
        assert torch.equal(
            setup(id_tokens=setup.tokens), setup(id_tokens=setup.tokens, id_scale=0.5)
        )
        # One set of tokens for the whole batch broadcasts.
        one = setup(id_tokens=setup.tokens[:1])
        assert torch.equal(one, setup(id_tokens=setup.tokens[:1].expand(2, -1, -1)))


def test_remove_restores_the_original_processors_and_outputs(setup):
    before = dict(setup.unet.attn_processors)
    with torch.no_grad():
        ref = setup()
        adapter = install_id_adapter(setup.unet, setup.width)
        procs = setup.unet.attn_processors
        cross = {
            n.removesuffix(".processor") for n, p in procs.items() if isinstance(p, IDAttnProcessor)
        }
        assert cross == set(adapter.layer_names)
        assert all(n.endswith("attn2") for n in cross)
        # Self-attention keeps its own processor (wrapped only to drop the ID kwargs).
        for name, proc in procs.items():
            if "attn1" in name:
                assert proc.processor is before[name]
        adapter.remove()
        after = setup.unet.attn_processors
        assert after.keys() == before.keys()
        assert all(after[n] is before[n] for n in before)
        assert torch.equal(setup(), ref)
    adapter.remove()  # idempotent


def test_context_manager_and_double_install(setup):
    before = dict(setup.unet.attn_processors)
    with IDAdapter(setup.unet, setup.width) as adapter:
        assert adapter.installed
        with pytest.raises(SamefaceError, match="already has an ID adapter"):
            install_id_adapter(setup.unet, setup.width)
    assert not adapter.installed
    assert all(setup.unet.attn_processors[n] is p for n, p in before.items())
    with install_id_adapter(
        setup.unet, setup.width
    ) as again:  # already installed: enter is a no-op
        assert again.installed
    assert not again.installed


def test_remove_refuses_to_drop_processors_set_by_someone_else(setup):
    from diffusers.models.attention_processor import AttnProcessor2_0

    adapter = install_id_adapter(setup.unet, setup.width)
    setup.unet.set_attn_processor(AttnProcessor2_0())
    with pytest.raises(SamefaceError, match="replaced"):
        adapter.remove()


def test_no_warnings_about_the_id_kwargs(setup, capfd):
    install_id_adapter(setup.unet, setup.width)
    with torch.no_grad():
        setup(id_tokens=setup.tokens, id_scale=1.0, attn_record={})
    assert "not expected by" not in capfd.readouterr().err


def test_only_the_adapter_gets_gradients(setup):
    base_params = {n: p.detach().clone() for n, p in setup.unet.named_parameters()}
    flags = {n: p.requires_grad for n, p in setup.unet.named_parameters()}
    adapter = install_id_adapter(setup.unet, setup.width)
    assert {id(p) for p in adapter.parameters()}.isdisjoint(id(p) for p in setup.unet.parameters())
    setup.unet.train()
    out = setup(id_tokens=setup.tokens, id_scale=1.0)
    out.square().mean().backward()
    assert all(p.grad is None for p in setup.unet.parameters())
    for name, p in adapter.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    torch.optim.SGD(adapter.parameters(), lr=0.1).step()
    assert all(torch.equal(p, base_params[n]) for n, p in setup.unet.named_parameters())
    adapter.remove()
    assert {n: p.requires_grad for n, p in setup.unet.named_parameters()} == flags


def test_bf16_base_fp32_adapter_with_gradient_checkpointing():
    """The usual training setup: a bf16 UNet, fp32 adapter weights, checkpointed blocks."""
    s = Setup("sd1")
    s.unet.to(torch.bfloat16)
    adapter = install_id_adapter(s.unet, s.width)
    assert all(p.dtype == torch.float32 for p in adapter.parameters())
    s.unet.train()
    s.unet.enable_gradient_checkpointing()
    rec: dict[str, CrossAttnRecord] = {}
    out = s.unet(
        s.x.bfloat16(),
        s.t,
        s.cond.bfloat16(),
        cross_attention_kwargs={"id_tokens": s.tokens, "attn_record": rec},
    ).sample
    assert out.dtype == torch.bfloat16 and len(rec) == len(adapter.layer_names)
    (
        out.float().square().mean() + sum(r.query.float().square().mean() for r in rec.values())
    ).backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in adapter.parameters())
    assert all(p.grad is None for p in s.unet.parameters())


def test_init_modes(setup):
    attn = dict(setup.unet.named_modules())
    copy = IDAdapter(setup.unet, setup.width, init="copy")
    for name in copy.layer_names:
        proj = copy.layers[name.replace(".", "_")]
        assert torch.equal(proj.to_k_id.weight, attn[name].to_k.weight)
        assert torch.equal(proj.to_v_id.weight, attn[name].to_v.weight)
    with pytest.raises(ValueError, match="init='copy' needs id_dim"):
        IDAdapter(setup.unet, setup.width + 1, init="copy")
    with pytest.raises(ValueError, match="init must be"):
        IDAdapter(setup.unet, setup.width, init="zeros")

    # zero_v: the ID branch adds exactly nothing at the start, but V_id learns at once.
    with torch.no_grad():
        ref = setup()
    tokens = torch.randn(2, 3, 20)
    with IDAdapter(setup.unet, 20, init="auto") as adapter:  # auto -> zero_v: widths differ
        out = setup(id_tokens=tokens)
        assert torch.equal(out, ref)
        out.square().mean().backward()
        v_grads = [proj.to_v_id.weight.grad for proj in adapter.layers.values()]
        assert all(g is not None and g.abs().sum() > 0 for g in v_grads)


def test_bad_id_tokens_are_refused(setup):
    install_id_adapter(setup.unet, setup.width)
    with torch.no_grad(), pytest.raises(ValueError, match="batch"):
        setup(id_tokens=torch.randn(3, 4, setup.width))
    with torch.no_grad(), pytest.raises(ValueError, match="batch, tokens, id_dim"):
        setup(id_tokens=torch.randn(2, setup.width))


def test_checkpoint_round_trip(tmp_path):
    s = Setup("sd1")
    adapter = install_id_adapter(s.unet, s.width, init="random")
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_()
        out = s(id_tokens=s.tokens)
    path = adapter.save(tmp_path / "id_adapter.safetensors", metadata={"method": "pulid"})
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["method"] == "pulid"
        assert set(f.keys()) == set(adapter.state_dict())
    assert all(k.startswith("layers.") for k in adapter.state_dict())

    fresh = Setup("sd1")
    loaded = install_id_adapter(fresh.unet, fresh.width, init="zero_v").load(path)
    with torch.no_grad():
        assert torch.equal(fresh(id_tokens=fresh.tokens), out)
    for k, v in adapter.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)

    # Strict: another id_dim or another architecture does not load.
    with pytest.raises(ArtifactError, match="other shapes"):
        IDAdapter(Setup("sd1").unet, 16).load(path)
    with pytest.raises(ArtifactError, match="missing"):
        IDAdapter(Setup("sdxl").unet, s.width, init="random").load(path)
    with pytest.raises(ValueError, match="strictly"):
        loaded.load_state_dict(adapter.state_dict(), strict=False)
    with pytest.raises(ArtifactError, match="no such"):
        loaded.load(tmp_path / "missing.safetensors")


def test_recorder_captures_what_the_alignment_losses_need(setup):
    adapter = install_id_adapter(setup.unet, setup.width)
    rec_t: dict[str, CrossAttnRecord] = {}
    rec_tid: dict[str, CrossAttnRecord] = {}
    with torch.no_grad():
        setup(id_tokens=None, attn_record=rec_t)  # the prompt-only path
    setup(id_tokens=setup.tokens, id_scale=1.0, attn_record=rec_tid)
    attn = dict(setup.unet.named_modules())
    # Every cross-attention layer, keyed by module name, in execution order.
    assert list(rec_t) == list(rec_tid) and set(rec_t) == set(adapter.layer_names)
    for name in adapter.layer_names:
        heads = attn[name].heads
        q, k = rec_tid[name]
        assert q.ndim == k.ndim == 4
        assert q.shape[:2] == k.shape[:2] == (2, heads)
        assert k.shape[2] == 77 and q.shape[-1] == k.shape[-1]
        assert torch.equal(k, rec_t[name].key)  # K comes from the text only
    first, last = next(iter(rec_t)), list(rec_t)[-1]
    assert torch.equal(rec_tid[first].query, rec_t[first].query)  # nothing before it sees the ID
    assert not torch.allclose(rec_tid[last].query, rec_t[last].query)
    layout = align_layout_loss(rec_tid, rec_t)
    sem = align_semantic_loss(rec_tid, rec_t, adapter.layer_names)
    assert layout > 0 and sem > 0
    loss = alignment_loss(rec_tid, rec_t, lambda_sem=1.0, lambda_layout=1.0)
    assert torch.allclose(loss, layout + sem)
    assert align_layout_loss(rec_t, rec_t) == 0  # the prompt-only path against itself
    loss.backward()
    grads = [p.grad for p in adapter.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in setup.unet.parameters())


def _tiny_cfg(**kw) -> IDEncoderConfig:
    return IDEncoderConfig(
        **(
            dict(
                id_dim=12,
                clip_dim=10,
                vit_dim=14,
                num_vit_layers=3,
                output_dim=32,
                num_tokens=6,
                num_id_tokens=2,
                dim=16,
                depth_per_layer=2,
                heads=2,
                dim_head=8,
                ff_mult=2,
                mlp_dim=24,
            )
            | kw
        )
    )


@pytest.mark.parametrize("multi_photo", ["concat", "mean"])
def test_idformer_shapes_for_one_and_three_photos(multi_photo):
    cfg = _tiny_cfg(multi_photo=multi_photo)
    enc = build_id_encoder(cfg)
    assert isinstance(enc, IDFormer)
    b = 2
    one = enc(torch.randn(b, 12), torch.randn(b, 10), [torch.randn(b, 9, 14) for _ in range(3)])
    assert one.shape == (b, 6, 32)
    three = enc(
        torch.randn(b, 3, 12), torch.randn(b, 3, 10), [torch.randn(b, 3, 9, 14) for _ in range(3)]
    )
    assert three.shape == (b, 6, 32)
    if multi_photo == "concat":  # PuLID's form: ViT tokens already joined along the sequence
        joined = enc(
            torch.randn(b, 3, 12), torch.randn(b, 3, 10), [torch.randn(b, 27, 14) for _ in range(3)]
        )
        assert joined.shape == (b, 6, 32)
    with pytest.raises(ValueError, match="ViT hidden states"):
        enc(torch.randn(b, 12), torch.randn(b, 10), [torch.randn(b, 9, 14)])


def test_idformer_photo_order_and_normalisation():
    enc = IDFormer(_tiny_cfg()).eval()
    ids, clip = torch.randn(1, 3, 12), torch.randn(1, 3, 10)
    vit = [torch.randn(1, 3, 9, 14) for _ in range(3)]
    with torch.no_grad():
        out = enc(ids, clip, vit)
        # The CLIP embedding is L2-normalised inside: its scale does not matter.
        assert torch.allclose(enc(ids, clip * 7.0, vit), out, atol=1e-5)
        # Latent attention is permutation-invariant over photos (concat mode).
        perm = [2, 0, 1]
        permuted = enc(ids[:, perm], clip[:, perm], [v[:, perm] for v in vit])
        assert torch.allclose(permuted, out, atol=1e-5)


def test_mlp_encoder_shapes():
    enc = build_id_encoder(_tiny_cfg(kind="mlp", num_tokens=5))
    assert isinstance(enc, IDMLPEncoder)
    assert enc(torch.randn(2, 12), torch.randn(2, 10)).shape == (2, 5, 32)
    assert enc(torch.randn(2, 3, 12), torch.randn(2, 3, 10)).shape == (2, 15, 32)
    mean = IDMLPEncoder(_tiny_cfg(kind="mlp", num_tokens=5, multi_photo="mean"))
    assert mean(torch.randn(2, 3, 12), torch.randn(2, 3, 10)).shape == (2, 5, 32)
    id_only = IDMLPEncoder(_tiny_cfg(kind="mlp", clip_dim=0))
    assert id_only(torch.randn(2, 12)).shape == (2, 6, 32)
    with pytest.raises(ValueError, match="needs a CLIP image embedding"):
        enc(torch.randn(2, 12))


def test_encoder_config_validation_and_round_trip():
    cfg = IDEncoderConfig()
    assert (cfg.num_tokens, cfg.output_dim, cfg.num_vit_layers, cfg.cond_dim) == (32, 2048, 5, 1280)
    assert IDEncoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="kind"):
        IDEncoderConfig(kind="resampler")
    with pytest.raises(ValueError, match="num_tokens"):
        IDEncoderConfig(num_tokens=0)
    with pytest.raises(ValueError, match="multi_photo"):
        IDEncoderConfig(multi_photo="max")
    with pytest.raises(ValueError, match="unknown"):
        IDEncoderConfig.from_dict({"depth": 10})


@pytest.mark.parametrize("family", FAMILIES)
def test_encoder_to_unet_end_to_end(family):
    """ID tokens from an IDFormer drive the adapter; gradients reach encoder and adapter only."""
    s = Setup(family)
    enc = IDFormer(_tiny_cfg(output_dim=s.width))
    adapter = install_id_adapter(s.unet, s.width)
    tokens = enc(torch.randn(2, 3, 12), torch.randn(2, 3, 10), [torch.randn(2, 3, 9, 14)] * 3)
    s(id_tokens=tokens).square().mean().backward()
    assert all(p.grad is not None for p in enc.parameters())
    assert all(p.grad is not None for p in adapter.parameters())
    assert all(p.grad is None for p in s.unet.parameters())


def _face_image_and_mask():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 32, 3), dtype=np.uint8)
    mask = np.zeros((40, 32), np.uint8)
    mask[8:30, 6:26] = 255
    return image, mask


def test_parsed_face_is_white_outside_and_gray_inside():
    image, mask = _face_image_and_mask()
    out = parsed_face(image, mask)
    assert out.shape == image.shape and out.dtype == np.uint8
    inside, outside = mask > 0, mask == 0
    assert (out[outside] == 255).all()
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    luma = image.astype(np.float64) @ np.array(LUMA_601)
    assert np.abs(out[inside][:, 0] - luma[inside]).max() <= 0.5 + 1e-6

    f = parsed_face(image.astype(np.float32) / 255, mask > 0)
    assert f.dtype == np.float32
    assert np.allclose(f[outside], 1.0) and np.allclose(
        f[inside][:, 0], luma[inside] / 255, atol=1e-5
    )
    with pytest.raises(ValueError, match="mask shape"):
        parsed_face(image, mask[:-1])


def test_parsed_face_tensor_matches_numpy_and_is_differentiable():
    image, mask = _face_image_and_mask()
    expected = parsed_face(image.astype(np.float32) / 255, mask)
    img = torch.from_numpy(image).permute(2, 0, 1).float().div(255).requires_grad_(True)
    out = parsed_face_tensor(img, torch.from_numpy(mask))
    assert out.shape == img.shape
    assert torch.allclose(out.permute(1, 2, 0), torch.from_numpy(expected), atol=1e-5)
    batch = parsed_face_tensor(img[None].repeat(2, 1, 1, 1), torch.from_numpy(mask > 0)[None, None])
    assert batch.shape == (2, 3, 40, 32) and torch.allclose(batch[1], out)
    out.sum().backward()
    assert (img.grad[:, torch.from_numpy(mask == 0)] == 0).all()
    assert torch.allclose(img.grad[0, 10, 10], torch.tensor(3 * LUMA_601[0]))


def test_import_is_light():
    code = "import sys, sameface.adapters; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
