"""Reading and validating input images.

Every image that enters lrface goes through :func:`read_image`, which returns a
``uint8`` BGR array of shape ``(H, W, 3)`` (OpenCV convention) whatever the input was:
a path, raw encoded bytes, a numpy array (``HxW`` grayscale, ``HxWx3`` BGR or ``HxWx4``
BGRA) or a PIL image (RGB/RGBA/L, converted to BGR).  Orientation stored in EXIF is
applied for files and bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import ImageError

#: Refuse images above this many pixels (decompression bombs, absurd inputs).
MAX_PIXELS = 50_000_000

ImageInput = str | os.PathLike[str] | bytes | np.ndarray | Any


def describe(source: ImageInput) -> str:
    """A short human name for an image source, used in error messages."""
    if isinstance(source, str | os.PathLike):
        return str(source)
    if isinstance(source, bytes | bytearray):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return f"<array {source.shape} {source.dtype}>"
    return f"<{type(source).__name__}>"


def read_image(source: ImageInput, name: str | None = None) -> np.ndarray:
    """Read ``source`` into a BGR ``uint8`` array of shape ``(H, W, 3)``.

    Raises :class:`ImageError` with a one-line message naming the input for a missing
    path, a directory, an unreadable or non-image file, an empty/zero-size image, an
    image above :data:`MAX_PIXELS`, or an array of unsupported shape or dtype.
    """
    label = name or describe(source)
    if isinstance(source, str | os.PathLike):
        img = _read_path(Path(source), label)
    elif isinstance(source, bytes | bytearray):
        img = _decode_bytes(bytes(source), label)
    elif isinstance(source, np.ndarray):
        img = _from_array(source, label)
    elif _is_pil(source):
        img = _from_pil(source, label)
    else:
        raise ImageError(
            f"{label}: unsupported image type; pass a file path, encoded bytes, "
            "a numpy array (HxW, HxWx3 BGR, HxWx4 BGRA) or a PIL image"
        )
    return _validate(img, label)


def _read_path(path: Path, label: str) -> np.ndarray:
    if not path.exists():
        raise ImageError(f"{label}: no such file; check the path")
    if path.is_dir():
        raise ImageError(f"{label}: is a directory, not an image; pass an image file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{label}: cannot be read ({exc.strerror}); check permissions") from None
    return _decode_bytes(data, label)


def _decode_bytes(data: bytes, label: str) -> np.ndarray:
    if len(data) == 0:
        raise ImageError(f"{label}: file is empty; pass a JPEG/PNG/BMP/WebP image")
    buf = np.frombuffer(data, dtype=np.uint8)
    # Check the header size before decoding the pixels (decompression bombs).
    _check_pixel_count_from_header(data, label)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise ImageError(
            f"{label}: not a readable image (corrupt, truncated or not an image format); "
            "pass a JPEG/PNG/BMP/WebP file"
        )
    if _looks_truncated_jpeg(data):
        raise ImageError(f"{label}: JPEG data is truncated; re-export or re-download the file")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    img = _to_bgr(img, label)
    return _apply_exif_orientation(img, data)


def _looks_truncated_jpeg(data: bytes) -> bool:
    """A JPEG without its end-of-image marker (libjpeg fills the rest with grey)."""
    if not data.startswith(b"\xff\xd8"):
        return False
    return b"\xff\xd9" not in data[-64:]


def _check_pixel_count_from_header(data: bytes, label: str) -> None:
    try:
        import io as _io

        from PIL import Image

        with Image.open(_io.BytesIO(data)) as im:
            w, h = im.size
    except Exception:
        return  # let OpenCV decide whether this is an image at all
    if w * h > MAX_PIXELS:
        raise ImageError(
            f"{label}: {w}x{h} is {w * h / 1e6:.0f} megapixels, above the "
            f"{MAX_PIXELS // 1_000_000} MP limit; downscale it first"
        )


def _from_array(arr: np.ndarray, label: str) -> np.ndarray:
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.max() <= 1.0:
            arr = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
        elif np.issubdtype(arr.dtype, np.number):
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        else:
            raise ImageError(f"{label}: unsupported dtype {arr.dtype}; pass uint8 BGR")
    return _to_bgr(arr, label)


def _to_bgr(img: np.ndarray, label: str) -> np.ndarray:
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 3:
        return np.ascontiguousarray(img)
    if img.ndim == 3 and img.shape[2] == 4:
        return _composite_bgra(img)
    raise ImageError(f"{label}: unsupported image shape {img.shape}; expected HxW, HxWx3 or HxWx4")


def _composite_bgra(img: np.ndarray) -> np.ndarray:
    """Composite a BGRA image over a mid-grey background (transparent areas -> grey)."""
    alpha = img[:, :, 3:4].astype(np.float32) / 255.0
    rgb = img[:, :, :3].astype(np.float32)
    out = rgb * alpha + 127.0 * (1.0 - alpha)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _is_pil(obj: Any) -> bool:
    return type(obj).__module__.startswith("PIL.")


def _from_pil(im: Any, label: str) -> np.ndarray:
    from PIL import ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode not in ("RGB", "RGBA", "L"):
        im = im.convert("RGBA" if "A" in im.mode else "RGB")
    arr = np.asarray(im)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
    return _to_bgr(np.ascontiguousarray(arr), label)


def _apply_exif_orientation(img: np.ndarray, data: bytes) -> np.ndarray:
    """Rotate/flip according to the EXIF Orientation tag (JPEG/TIFF/WebP), if any."""
    if not (data.startswith(b"\xff\xd8") or data[:4] in (b"II*\x00", b"MM\x00*")):
        return img
    try:
        import io as _io

        from PIL import Image

        with Image.open(_io.BytesIO(data)) as im:
            orientation = im.getexif().get(0x0112, 1)
    except Exception:
        return img
    ops = {
        2: lambda a: cv2.flip(a, 1),
        3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
        4: lambda a: cv2.flip(a, 0),
        5: lambda a: cv2.flip(cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE), 1),
        6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
        7: lambda a: cv2.flip(cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE), 1),
        8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
    }
    op = ops.get(int(orientation))
    return np.ascontiguousarray(op(img)) if op else img


def _validate(img: np.ndarray, label: str) -> np.ndarray:
    h, w = img.shape[:2]
    if h == 0 or w == 0:
        raise ImageError(f"{label}: image is empty (0 pixels); pass a real image")
    if h * w > MAX_PIXELS:
        raise ImageError(
            f"{label}: {w}x{h} is above the {MAX_PIXELS // 1_000_000} MP limit; downscale it first"
        )
    if h < 4 or w < 4:
        raise ImageError(
            f"{label}: image is only {w}x{h} pixels, too small to hold a face "
            "(need at least 4x4; lrface handles crops from 8x8 up)"
        )
    return img


def list_images(root: str | os.PathLike[str]) -> list[Path]:
    """All image files below ``root`` (recursive), sorted by relative path."""
    exts = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in exts and p.is_file())
