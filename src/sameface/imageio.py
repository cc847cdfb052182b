"""Reading images safely: every failure becomes an `ImageLoadError` with one clear line.

Handles EXIF orientation, 16-bit / CMYK / palette / grayscale / alpha modes, truncated and
corrupt files, non-images and decompression bombs. Returns RGB uint8 numpy arrays.
"""

from __future__ import annotations

import hashlib
import os
import struct
import warnings
from pathlib import Path
from typing import Union

import numpy as np

from .errors import ImageLoadError

ImageInput = Union[str, os.PathLike, np.ndarray, "PIL.Image.Image"]  # noqa: F821

DEFAULT_MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
"""File suffixes sameface takes for an image where it lists a folder or checks a path."""
"""Refuse images above 64 megapixels by default (larger than any camera photo, smaller than a bomb)."""

_BACKGROUND = (255, 255, 255)  # transparent pixels become white, like a photo on paper


def describe_source(source: ImageInput) -> str:
    """Short human name of an image source for messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, np.ndarray):
        return f"<array {source.shape} {source.dtype}>"
    return f"<{type(source).__name__}>"


def load_image(source: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Load an image as an RGB uint8 array of shape (H, W, 3).

    Args:
        source: a file path, a PIL image, or a numpy array (H×W gray, H×W×3 RGB or H×W×4 RGBA;
            uint8, uint16 or float in [0, 1]).
        max_pixels: refuse larger images (decompression-bomb guard).

    Raises:
        ImageLoadError: missing, empty, corrupt, truncated, not an image, too large, or an
            array of an unsupported shape.
    """
    from PIL import Image

    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, max_pixels=max_pixels)
    if isinstance(source, Image.Image):
        name = describe_source(source)
        _check_size(source.size, max_pixels, name)
        return _decode(lambda: _load_pil(source), name)
    if not isinstance(source, (str, os.PathLike)):
        raise ImageLoadError(f"cannot read an image from a {type(source).__name__}")
    path = Path(source)
    name = str(path)
    try:
        if not path.exists():
            raise ImageLoadError(f"{name}: file not found")
        if path.is_dir():
            raise ImageLoadError(f"{name}: is a directory, not an image")
        if path.stat().st_size == 0:
            raise ImageLoadError(f"{name}: empty file (0 bytes)")
    except OSError as e:  # e.g. a name too long for the file system, a symlink loop
        raise ImageLoadError(f"{name}: cannot open ({e.strerror or e})") from None

    def read() -> np.ndarray:
        with Image.open(path) as im:
            _check_size(im.size, max_pixels, name)
            return _load_pil(im)

    return _decode(read, name)


def _load_pil(im) -> np.ndarray:
    im.load()  # forces a full decode, so truncated files fail here
    return _pil_to_rgb(im)


def _decode(read, name: str) -> np.ndarray:
    """Run a PIL read, turning every failure into one `ImageLoadError` line."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # PIL warns on huge images (we apply our own limit) and on corrupt EXIF; neither
            # should reach the user's terminal as a Python warning.
            warnings.simplefilter("ignore")
            return read()
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"{name}: image too large ({e})") from None
    except Image.UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image, or a format Pillow cannot read") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        detail = str(e) or type(e).__name__
        if "truncated" in detail:
            detail = "truncated file"
        raise ImageLoadError(f"{name}: corrupt or unreadable image ({detail})") from None


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (identities record where their photos came from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def array_sha256(image: np.ndarray) -> str:
    """Hex SHA-256 of an array's shape and bytes (for in-memory photos)."""
    h = hashlib.sha256(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def _check_size(size: tuple[int, int], max_pixels: int, name: str) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageLoadError(f"{name}: image has no pixels ({w}×{h})")
    if w * h > max_pixels:
        raise ImageLoadError(
            f"{name}: image too large ({w}×{h} = {w * h / 1e6:.0f} MP > {max_pixels / 1e6:.0f} MP limit); "
            "downscale it, or raise max_pixels (Pillow itself refuses more than ~179 MP)"
        )


def _pil_to_rgb(im) -> np.ndarray:
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(im)  # cameras store rotation in EXIF; faces must be upright
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _array_to_rgb(np.asarray(im), max_pixels=None)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (*_BACKGROUND, 255))
        im = Image.alpha_composite(bg, im)
    if im.mode != "RGB":
        im = im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def _array_to_rgb(a: np.ndarray, *, max_pixels: int | None) -> np.ndarray:
    name = describe_source(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageLoadError(f"{name}: expected H×W, H×W×3 or H×W×4 array")
    if max_pixels is not None:
        _check_size((a.shape[1], a.shape[0]), max_pixels, name)
    if a.dtype == np.uint8:
        out = a
    elif a.dtype == np.uint16 or (np.issubdtype(a.dtype, np.integer) and a.max(initial=0) > 255):
        # 16-bit images: keep the top 8 bits of the range actually used by the format.
        scale = 65535.0 if a.max(initial=0) <= 65535 else float(a.max())
        out = np.clip(a.astype(np.float64) / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
        out = (
            np.clip(a, 0, 255).astype(np.uint8) if a.dtype != np.bool_ else a.astype(np.uint8) * 255
        )
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageLoadError(f"{name}: array contains NaN or infinite values")
        hi = 255.0 if a.max(initial=0) > 1.0 else 1.0
        out = np.clip(a.astype(np.float64) / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
    else:
        raise ImageLoadError(f"{name}: unsupported dtype {a.dtype}")
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    elif out.shape[2] == 4:
        alpha = out[:, :, 3:4].astype(np.float32) / 255.0
        rgb = out[:, :, :3].astype(np.float32)
        bg = np.array(_BACKGROUND, dtype=np.float32)
        out = (rgb * alpha + bg * (1 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(out)


def save_image_atomic(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an RGB (or gray) uint8 array to `path` (format from the suffix), atomically.

    Raises:
        OutputError: the file cannot be written (the message names the path).
    """
    import io

    from PIL import Image

    from .fileio import write_bytes_atomic

    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}.get(
        path.suffix.lower(), "PNG"
    )
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format=fmt)
    return write_bytes_atomic(path, buf.getvalue())
