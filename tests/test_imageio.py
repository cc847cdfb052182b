"""Bad and unusual image inputs: each becomes a clear ImageLoadError or loads correctly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sameface.errors import ImageLoadError
from sameface.imageio import load_image, save_image_atomic


@pytest.fixture(scope="module")
def small(obama_rgb) -> np.ndarray:
    return np.asarray(Image.fromarray(obama_rgb).resize((182, 227)))


def test_missing_empty_dir_and_non_image(tmp_path):
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "nope.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty file"):
        load_image(tmp_path / "empty.jpg")
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)
    (tmp_path / "notes.png").write_text("these are not pixels\n")
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(tmp_path / "notes.png")


def test_corrupt_and_truncated(tmp_path, obama):
    data = obama.read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=r"truncated|corrupt"):
        load_image(tmp_path / "trunc.jpg")
    rng = np.random.default_rng(0)
    (tmp_path / "garbage.jpg").write_bytes(
        data[:20] + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    )
    with pytest.raises(ImageLoadError):
        load_image(tmp_path / "garbage.jpg")


def png_header(path, width, height):
    """A PNG that declares width×height pixels in a few bytes (what a decompression bomb looks like)."""
    import struct
    import zlib

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    return path


def test_decompression_bomb(tmp_path):
    # 9000×8000 = 72 MP: over our 64 MP limit, under Pillow's own; refused before decoding.
    with pytest.raises(ImageLoadError, match="72 MP > 64 MP"):
        load_image(png_header(tmp_path / "bomb.png", 9000, 8000))
    # 30000×30000 = 900 MP: Pillow's own guard fires first; still one clear error.
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(png_header(tmp_path / "huge.png", 30000, 30000))
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(np.zeros((100, 100, 3), np.uint8), max_pixels=5000)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "RGBA", "LA", "I;16", "I", "F", "1"])
def test_colour_modes_become_rgb(tmp_path, small, mode):
    im = Image.fromarray(small)
    if mode in ("I;16", "I", "F"):
        gray = np.asarray(im.convert("L"), dtype=np.float64)
        scale = {"I;16": 257.0, "I": 257.0, "F": 1 / 255.0}[mode]
        arr = gray * scale
        im = Image.fromarray(arr.astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]))
        if mode == "I;16":
            im = im.convert("I;16") if im.mode != "I;16" else im
    else:
        im = im.convert(mode)
    ext = "tiff" if mode in ("I", "F", "CMYK", "LA") else "png"
    path = tmp_path / f"img.{ext}"
    im.save(path)
    out = load_image(path)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape == (*small.shape[:2], 3)
    # Content survives: correlates with the grayscale original.
    ref = np.asarray(Image.fromarray(small).convert("L"), np.float64).ravel()
    got = out.astype(np.float64).mean(2).ravel()
    assert np.corrcoef(ref, got)[0, 1] > (0.4 if mode == "1" else 0.9)  # "1" is dithered


def test_rgba_transparent_becomes_white():
    a = np.zeros((4, 4, 4), np.uint8)
    out = load_image(a)
    assert (out == 255).all()


def test_exif_orientation_is_applied(tmp_path, small):
    upright = Image.fromarray(small)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a sideways camera writes
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    stored.save(tmp_path / "rot.png", exif=exif.tobytes())
    out = load_image(tmp_path / "rot.png")
    assert out.shape == small.shape
    np.testing.assert_array_equal(out, small)


def test_array_inputs(small):
    assert load_image(small).shape == small.shape
    assert load_image(small[:, :, 0]).shape == small.shape
    assert load_image(small.astype(np.float32) / 255).dtype == np.uint8
    assert load_image(Image.fromarray(small)).shape == small.shape
    with pytest.raises(ImageLoadError):
        load_image(np.zeros((2, 2, 2, 2), np.uint8))
    with pytest.raises(ImageLoadError, match="NaN"):
        load_image(np.full((4, 4, 3), np.nan, np.float32))
    with pytest.raises(ImageLoadError):
        load_image(12345)


def test_save_image_atomic_leaves_no_temp(tmp_path, small):
    p = save_image_atomic(small, tmp_path / "sub" / "x.png")
    assert p.is_file()
    assert [q.name for q in (tmp_path / "sub").iterdir()] == ["x.png"]


def test_corrupt_exif_gives_no_python_warnings(tmp_path, small, recwarn):
    exif = Image.Exif()
    exif[0x0112] = 65535  # not an orientation
    Image.fromarray(small).save(tmp_path / "odd.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "odd.jpg").shape == small.shape
    assert len(recwarn) == 0


def test_lazily_opened_truncated_pil_image(tmp_path, obama):
    data = obama.read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with Image.open(tmp_path / "t.jpg") as im, pytest.raises(ImageLoadError, match="truncated"):
        load_image(im)


def test_unusable_paths(tmp_path):
    with pytest.raises(ImageLoadError):
        load_image(tmp_path / ("a" * 300 + ".jpg"))
    (tmp_path / "file").write_text("x")
    from sameface.errors import OutputError

    with pytest.raises(OutputError, match="cannot write"):
        save_image_atomic(np.zeros((4, 4, 3), np.uint8), tmp_path / "file" / "x.png")
    long_name = tmp_path / ("b" * 250 + ".png")  # legal name; the temporary one must be too
    assert save_image_atomic(np.zeros((4, 4, 3), np.uint8), long_name).is_file()
