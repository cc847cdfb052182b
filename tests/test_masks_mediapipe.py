"""FaceMesh mask plumbing (crop, map back, match, fill) with a stand-in mediapipe module.

The real FaceMesh needs the heavy `masks` extra, which CI does not install; the stand-in
returns a known octagon so the geometry is checked exactly. With the extra installed, the
last test runs the real model too.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest

from sameface.errors import DependencyMissingError
from sameface.faces import Face, FaceMasker
from sameface.faces._mediapipe import match_mesh, ordered_cycle

RING = [(i, (i + 1) % 8) for i in range(8)]


def _fake_mediapipe(monkeypatch, calls):
    class Landmark:
        def __init__(self, x, y):
            self.x, self.y = x, y

    class FaceMesh:
        def __init__(self, **kwargs):
            calls.append(kwargs)

        def process(self, crop):
            calls.append(crop.shape)
            # An octagon of radius 0.2 around the crop centre, in normalised coordinates.
            ang = np.arange(8) * np.pi / 4
            pts = [Landmark(0.5 + 0.2 * np.cos(a), 0.5 + 0.2 * np.sin(a)) for a in ang]
            return types.SimpleNamespace(multi_face_landmarks=[types.SimpleNamespace(landmark=pts)])

        def close(self):
            pass

    face_mesh = types.SimpleNamespace(FaceMesh=FaceMesh, FACEMESH_FACE_OVAL=frozenset(RING))
    mp = types.ModuleType("mediapipe")
    mp.solutions = types.SimpleNamespace(face_mesh=face_mesh)
    monkeypatch.setitem(sys.modules, "mediapipe", mp)


def test_ordered_cycle_walks_the_ring():
    order = ordered_cycle(frozenset(RING))
    assert sorted(order) == list(range(8)) and order[0] == 0
    assert all(abs(a - b) in (1, 7) for a, b in zip(order, order[1:] + order[:1], strict=True))
    with pytest.raises(ValueError):
        ordered_cycle([(0, 1), (1, 2)])


def test_match_mesh_prefers_inside_and_nearest():
    box = (100, 100, 200, 200)
    inside = np.array([[150.0, 150.0]])
    near_outside = np.array([[210.0, 150.0]])
    far = np.array([[900.0, 900.0]])
    assert match_mesh([far, near_outside, inside], box) == 2
    assert match_mesh([far, near_outside], box) == 1
    assert match_mesh([far], box) is None
    assert match_mesh([], box) is None


def test_mediapipe_mask_maps_the_crop_back(monkeypatch):
    calls = []
    _fake_mediapipe(monkeypatch, calls)
    masker = FaceMasker("auto")
    assert masker.method == "mediapipe"
    image = np.zeros((1000, 1000, 3), np.uint8)
    face = Face(bbox=(400, 300, 500, 400), landmarks=np.zeros((5, 2), np.float32), score=0.9)
    mask, used = masker.mask_with_method(image, face)
    assert used == "mediapipe"
    crop_shape = calls[-1]
    assert crop_shape[0] >= 384  # small crops are upscaled before FaceMesh
    ys, xs = np.nonzero(mask)
    # The crop is the box ±60%: (340..560) × (240..460), so the octagon is centred at (450, 350)
    # with radius 0.2 × 220 = 44 px.
    assert xs.mean() == pytest.approx(450, abs=1.5) and ys.mean() == pytest.approx(350, abs=1.5)
    assert xs.max() - xs.min() == pytest.approx(88, abs=2)


def test_masks_extra_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # import fails
    with pytest.raises(DependencyMissingError, match=r"sameface\[masks\]"):
        FaceMasker("mediapipe")
    assert FaceMasker("auto").method == "landmarks"
    # A newer mediapipe without the legacy solutions API.
    monkeypatch.setitem(sys.modules, "mediapipe", types.ModuleType("mediapipe"))
    with pytest.raises(DependencyMissingError):
        FaceMasker("mediapipe")


@pytest.mark.skipif(
    importlib.util.find_spec("mediapipe") is None, reason="masks extra not installed"
)
def test_real_facemesh_mask(obama_rgb):
    from sameface.faces import YuNetDetector, landmark_mask

    face = YuNetDetector().detect(obama_rgb)[0]
    mask = FaceMasker("mediapipe").mask(obama_rgb, face)
    coarse = landmark_mask(obama_rgb.shape[:2], face)
    inter = np.logical_and(mask > 0, coarse > 0).sum()
    assert inter / (mask > 0).sum() > 0.8
