"""Background change against the base model's image (FeedFace's ablation measure)."""

from __future__ import annotations

import json

import numpy as np

from sameface.eval.background import background_change, background_changes, face_free_mask
from sameface.faces.types import Face


def test_only_pixels_outside_the_faces_count():
    base = np.zeros((40, 40, 3), np.uint8)
    image = base.copy()
    image[10:30, 10:30] = 255  # a change inside the face box only
    box = (12.0, 12.0, 28.0, 28.0)  # expanded 1.5x: 8..32 covers the change
    assert not face_free_mask((40, 40), [box])[20, 20] and face_free_mask((40, 40), [box])[2, 2]
    assert background_change(image, base, [box]) == 0.0
    image[0:4, :] = 51  # now the background changes too: 0.2 on its pixels
    keep = face_free_mask((40, 40), [box])
    want = (4 * 40 / keep.sum()) * 0.2
    assert np.isclose(background_change(image, base, [box]), want, atol=1e-6)
    assert np.isclose(background_change(image, base, []), float(np.abs(image / 255.0).mean()))
    assert background_change(image, base, [(0.0, 0.0, 40.0, 40.0)]) is None  # nothing left


def test_paired_with_the_baseline_in_a_run(tmp_path):
    from sameface.imageio import save_image_atomic

    rows = []
    for method, value in (("none", 0), ("feedface", 102)):
        img = np.full((16, 16, 3), value, np.uint8)
        path = f"images/{method}/a/p00_s0.png"
        save_image_atomic(img, tmp_path / path)
        rows.append({"type": "image", "method": method, "identity": "a", "prompt_index": 0,
                     "seed": 0, "image": path})  # fmt: skip
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    class OneFace:
        def detect(self, image):
            return [Face(bbox=(6.0, 6.0, 10.0, 10.0), landmarks=np.zeros((5, 2)), score=1.0)]

    got = background_changes(tmp_path, OneFace(), ["feedface"])
    assert list(got) == ["feedface"] and np.allclose(got["feedface"], [0.4])
