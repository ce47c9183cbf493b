"""Reading and validating input images.

Every image that enters lrface goes through :func:`read_image`, which returns a
``uint8`` BGR array of shape ``(H, W, 3)`` (OpenCV convention) whatever the input was:
a path, raw encoded bytes, a numpy array (``HxW`` grayscale, ``HxWx3`` BGR or ``HxWx4``
BGRA) or a PIL image (any mode, converted to BGR).

Encoded images (paths and bytes) go through one pipeline:

1. **Sniff** the format from the first bytes (never from the file name): JPEG, PNG, GIF,
   BMP, WebP, TIFF, PNM (PBM/PGM/PPM/PAM), AVIF and JPEG 2000 are decoded; HEIC/HEIF and
   JPEG XL are recognised and refused with a hint on how to convert them.
2. **Header-first guard** (:func:`_read_header`): width and height are read from the
   header alone (own parsers; Pillow's lazy header readers for AVIF and JPEG 2000, without
   its decompression-bomb warnings).  Refused before a single pixel is decoded: more than
   :data:`MAX_PIXELS` pixels, or a decode whose estimated peak memory (``pixels * cost``,
   the measured bytes per pixel of that format's decoder, see :class:`_Header`) exceeds
   :data:`DECODE_BUDGET` -- so AVIF, JPEG 2000 and animated WebP have lower pixel limits.
   A JPEG without its end-of-image marker is refused as truncated; bytes *after* the
   marker (Motion Photos, camera trailers) are allowed.
3. **Decode** with OpenCV (GIF with Pillow's palette decoder, lighter than OpenCV's; PAM
   ourselves; Pillow for AVIF/JPEG 2000 on OpenCV builds without them).  Any ``cv2.error``
   becomes :class:`ImageError`; what libpng, libjpeg, libtiff or OpenCV print on stderr
   during decoding is silenced.  The alpha channel is kept (composited over grey) only
   while its larger decode still fits the budget; otherwise the image is decoded straight
   to 8-bit BGR.
4. **Orientation** (:func:`_orientation`): the EXIF Orientation tag is applied exactly once,
   per format -- JPEG (APP1), PNG (eXIf), WebP (EXIF chunk), AVIF (irot/imir as reported by
   Pillow); OpenCV's TIFF decoder already applies the TIFF Orientation tag itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io as _io
import os
import re
import stat
import struct
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lrface.errors import ImageError, ImageTypeError, ImageValueError

#: Refuse images above this many pixels (decompression bombs, absurd inputs).
MAX_PIXELS = 50_000_000

#: Refuse encoded inputs (files or bytes) larger than this many bytes.
MAX_FILE_BYTES = 256 * 1024 * 1024

#: Most bytes a decode may take at its peak (estimated from the header with the measured
#: per-format costs of :class:`_Header`): with a ~100 MB interpreter this keeps reading any
#: input below ~500 MB of RSS.  A 49 MP JPEG/PNG (7 bytes/pixel) fits; AVIF, JPEG 2000 and
#: animated WebP, whose decoders need 12-35 bytes/pixel, are refused at fewer pixels.
DECODE_BUDGET = 360 * 1024 * 1024

#: File extensions of the formats lrface decodes (lower case, with the dot).
DECODABLE_EXTENSIONS = frozenset(
    {
        ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".bmp", ".dib",
        ".webp", ".tif", ".tiff", ".pbm", ".pgm", ".ppm", ".pnm", ".pam",
        ".avif", ".jp2", ".j2k", ".j2c", ".jpf", ".jpx",
    }
)  # fmt: skip
#: Image extensions lrface recognises but cannot decode (refused with a conversion hint).
UNSUPPORTED_EXTENSIONS = frozenset({".heic", ".heif", ".hif", ".jxl"})
#: Every extension :func:`list_images` lists.
IMAGE_EXTENSIONS = DECODABLE_EXTENSIONS | UNSUPPORTED_EXTENSIONS

_FORMAT_NAMES = {
    "jpeg": "JPEG", "png": "PNG", "gif": "GIF", "bmp": "BMP", "webp": "WebP", "tiff": "TIFF",
    "pnm": "PNM", "avif": "AVIF", "jp2": "JPEG 2000", "heif": "HEIC/HEIF", "jxl": "JPEG XL",
}  # fmt: skip
_SUPPORTED_HINT = "pass a JPEG/PNG/WebP/BMP/TIFF/GIF image"

#: Formats whose OpenCV decoder applies the Orientation tag itself (even with
#: ``IMREAD_IGNORE_ORIENTATION``): lrface must not apply it a second time.
_DECODER_APPLIES_ORIENTATION = frozenset({"tiff"})
#: Formats that Pillow decodes when OpenCV cannot (OpenCV builds without AVIF/JPEG 2000).
_PIL_FALLBACK = frozenset({"avif", "jp2"})

ImageInput = str | os.PathLike[str] | bytes | np.ndarray | Any


def describe(source: ImageInput) -> str:
    """A short human name for an image source, used in error messages."""
    if isinstance(source, str | os.PathLike):
        return str(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return f"<array {source.shape} {source.dtype}>"
    if source is None:
        return "<None>"
    return f"<{type(source).__name__}>"


def read_image(
    source: ImageInput, name: str | None = None, *, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Read ``source`` into a BGR ``uint8`` array of shape ``(H, W, 3)``.

    ``source`` is a file path, encoded bytes (``bytes``/``bytearray``/``memoryview``), a
    numpy array (``HxW`` grayscale, ``HxWx1``, ``HxWx3`` BGR or ``HxWx4`` BGRA; ``uint8``,
    other integers with values in 0..255, or finite floats -- all in ``[0, 1]``: scaled by
    255, else in 0..255; :func:`lrface.io.validation.check_image_array`) or a PIL image.
    Transparent pixels are composited over mid-grey (127).  EXIF orientation is applied
    for encoded inputs and PIL images.

    Raises :class:`ImageError` with a one-line message naming the input for a missing
    path, a directory, an unreadable, truncated or non-image file, an unsupported format
    (HEIC/HEIF, JPEG XL: with a conversion hint), an empty/zero-size image, an image above
    :data:`MAX_PIXELS` (refused from its header, before decoding), a NaN/inf array, pixel
    values outside 0..255 (a uint16 image: never clipped), or an input of unsupported
    type, shape or dtype.  Its subclass :class:`~lrface.errors.ImageTypeError` (also a
    ``TypeError``) is raised for a wrong type or dtype,
    :class:`~lrface.errors.ImageValueError` (also a ``ValueError``) for a wrong shape,
    size or values.  No other exception escapes for bad input.
    ``max_pixels`` lowers the pixel limit of encoded inputs (paths and bytes: the header
    guard refuses larger images before decoding; ``lrface serve``'s ``--max-pixels``).
    """
    label = name or describe(source)
    if isinstance(source, str | os.PathLike):
        img = _read_path(source, label, max_pixels)
    elif isinstance(source, bytes | bytearray | memoryview):
        img = _decode_bytes(bytes(source), label, max_pixels=max_pixels)
    elif isinstance(source, np.ndarray):
        img = _from_array(source, label)
    elif _is_pil(source):
        img = _from_pil(source, label)
    else:
        kind = "None" if source is None else type(source).__name__
        raise ImageTypeError(
            f"{label}: cannot read an image from {kind}; pass a file path, encoded bytes, "
            "a numpy array (HxW, HxWx3 BGR, HxWx4 BGRA) or a PIL image"
        )
    return _validate(img, label)


# --------------------------------------------------------------------------- paths


def _read_path(
    source: str | os.PathLike[str], label: str, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    try:
        path = Path(source)
    except TypeError:
        raise ImageError(f"{label}: not a valid path; pass a file path") from None
    if not str(source).strip():
        raise ImageError("empty path: pass the path of an image file")
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file; check the path") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ImageError(f"{label}: cannot be read ({reason}); check the path") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{label}: is a directory, not an image; pass an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(
            f"{label}: not a regular file (device, pipe or socket); pass an image file"
        )
    if st.st_size > MAX_FILE_BYTES:
        raise ImageError(
            f"{label}: file is {st.st_size / 2**20:.0f} MB, above the "
            f"{MAX_FILE_BYTES // 2**20} MB limit; downscale or recompress it first"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{label}: cannot be read ({exc.strerror}); check permissions") from None
    return _decode_bytes(data, label, path.name, max_pixels)


# --------------------------------------------------------------------------- decoding


@dataclasses.dataclass
class _Header:
    """What the header says, read without decoding pixels."""

    fmt: str
    width: int
    height: int
    #: the image may carry an alpha channel (an unchanged decode gives 2 or 4 channels)
    alpha: bool = False
    #: peak bytes per pixel of decoding to 8-bit BGR (decoder buffers + lrface's copies),
    #: measured with OpenCV 5 / Pillow 13 on 9-49 MP images
    cost: float = 7.0
    #: peak bytes per pixel when the alpha channel is kept and composited
    alpha_cost: float = 9.0
    #: TIFF-structured EXIF block found in the container (JPEG APP1, PNG eXIf, WebP EXIF)
    exif: bytes | None = None
    #: PAM (P7) only: (offset of the samples, depth, maxval)
    pam: tuple[int, int, int] | None = None
    #: AVIF only: the orientation (1..8) Pillow derives from the irot/imir boxes and EXIF
    orientation: int | None = None


class _Corrupt(Exception):
    """A header parser found an impossible or missing field (message: what)."""


class _Unsupported(Exception):
    """A valid header of a variant lrface does not decode (message: what)."""


class _Truncated(Exception):
    """The data ends before the header (or, for JPEG, the image data) is complete."""


def _decode_bytes(
    data: bytes, label: str, filename: str | None = None, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Sniff, size-check from the header (at most ``max_pixels``), decode, orient: BGR
    ``uint8`` ``(H, W, 3)``."""
    if len(data) == 0:
        raise ImageError(f"{label}: file is empty; {_SUPPORTED_HINT}")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(
            f"{label}: {len(data) / 2**20:.0f} MB of data, above the "
            f"{MAX_FILE_BYTES // 2**20} MB limit; downscale or recompress it first"
        )
    hdr = _read_header(data, label, filename, max_pixels)
    img = _decode_pixels(data, hdr, label)
    return _orient(img, _orientation(hdr))


def _sniff(data: bytes) -> str | None:
    """The image format from the magic bytes, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if len(data) >= 3 and data[0] == 0x50 and data[1] in b"1234567" and data[2] in b" \t\r\n#":
        return "pnm"
    if data[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or data[:4] == b"\xff\x4f\xff\x51":
        return "jp2"
    if data[:2] == b"\xff\x0a" or data[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        return "jxl"
    if data[4:8] == b"ftyp":
        size = struct.unpack(">I", data[:4])[0]
        brands = {data[8:12]} | {data[i : i + 4] for i in range(16, min(size, 256, len(data)), 4)}
        if brands & {b"avif", b"avis"}:
            return "avif"
        heif = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"}
        if brands & (heif | {b"mif1", b"msf1"}):
            return "heif"
    return None


def _read_header(
    data: bytes, label: str, filename: str | None = None, max_pixels: int = MAX_PIXELS
) -> _Header:
    """The single header-first guard run before any pixel decode.

    Identifies the format, reads width/height without decoding, and refuses unsupported
    formats, corrupt or truncated headers and images above ``max_pixels`` (default
    :data:`MAX_PIXELS`).
    """
    fmt = _sniff(data)
    ext = os.path.splitext(filename or "")[1].lower()
    if fmt is None:
        if ext in UNSUPPORTED_EXTENSIONS:
            fmt = {".jxl": "jxl"}.get(ext, "heif")
        else:
            raise ImageError(f"{label}: not a readable image (unknown format); {_SUPPORTED_HINT}")
    if fmt in ("heif", "jxl"):
        raise ImageError(f"{label}: {_FORMAT_NAMES[fmt]} images are not supported; "
                         f"{_conversion_hint(fmt, filename)}")  # fmt: skip
    name = _FORMAT_NAMES[fmt]
    try:
        hdr = _HEADER_PARSERS[fmt](data)
    except _Unsupported as exc:
        raise ImageError(
            f"{label}: {name} images {exc} are not supported; convert it to 8-bit PNG or JPEG first"
        ) from None
    except _Truncated:
        raise ImageError(
            f"{label}: {name} data is truncated; re-export or re-download the file"
        ) from None
    except (_Corrupt, struct.error, IndexError, ValueError, OverflowError) as exc:
        why = f" ({exc})" if isinstance(exc, _Corrupt) and str(exc) else ""
        raise ImageError(
            f"{label}: corrupt {name} file{why}; re-export or re-download the file"
        ) from None
    w, h = hdr.width, hdr.height
    if w <= 0 or h <= 0:
        raise ImageError(f"{label}: image is empty ({w}x{h} pixels); pass a real image")
    if w * h > max_pixels:
        raise ImageError(
            f"{label}: {w}x{h} is {w * h / 1e6:.0f} megapixels, above the "
            f"{max_pixels / 1e6:g} MP limit; downscale it first"
        )
    need = w * h * hdr.cost
    if need > DECODE_BUDGET:
        raise ImageError(
            f"{label}: decoding this {w}x{h} {name} image would take about "
            f"{need / 2**20:.0f} MB, above lrface's {DECODE_BUDGET // 2**20} MB limit; "
            "downscale it or convert it to JPEG/PNG first"
        )
    if fmt == "jpeg" and not _jpeg_complete(data):
        raise ImageError(f"{label}: JPEG data is truncated; re-export or re-download the file")
    return hdr


def _conversion_hint(fmt: str, filename: str | None) -> str:
    src = filename or ("image.jxl" if fmt == "jxl" else "image.heic")
    dst = os.path.splitext(src)[0] + (".png" if fmt == "jxl" else ".jpg")
    if fmt == "jxl":
        return f"convert it first, e.g. `djxl {src} {dst}` or `convert {src} {dst}` (ImageMagick)"
    return (
        f"convert it first, e.g. `convert {src} {dst}` (ImageMagick) or `heif-convert {src} {dst}`"
    )


def _decode_pixels(data: bytes, hdr: _Header, label: str) -> np.ndarray:
    """Decode with OpenCV (Pillow fallback); returns BGR ``uint8`` ``(H, W, 3)``, unoriented."""
    pixels = hdr.width * hdr.height
    keep_alpha = hdr.alpha and pixels * hdr.alpha_cost <= DECODE_BUDGET
    color = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    if hdr.pam is not None:
        img = _decode_pam(data, hdr)
    elif hdr.fmt == "gif":
        img = _decode_gif(data)
    else:
        img = _cv2_decode(data, cv2.IMREAD_UNCHANGED if keep_alpha else color)
    if img is not None and img.dtype not in (np.uint8, np.uint16):
        img = _cv2_decode(data, color)  # float/int32 samples: let OpenCV scale to 8 bits
    if img is None and hdr.fmt in _PIL_FALLBACK:
        img = _decode_with_pil(data, keep_alpha)
    if img is None or img.size == 0:
        raise ImageError(
            f"{label}: {_FORMAT_NAMES[hdr.fmt]} data is corrupt or truncated; "
            "re-export or re-download the file"
        )
    if img.dtype == np.uint16:
        np.right_shift(img, 8, out=img)
        img = img.astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 2:  # gray + alpha
        gray = np.ascontiguousarray(img[:, :, 0])
        return _composite_bgra(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGRA), img[:, :, 1])
    return _to_bgr(img, label)


_stderr_lock = threading.Lock()
_stderr_depth = 0
_stderr_saved: int | None = None


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null while native decoders run.

    libpng ("libpng warning: iCCP: ..."), libjpeg ("Corrupt JPEG data: ...") and OpenCV's
    own logger write straight to fd 2, bypassing Python.  Re-entrant across threads (the
    first thread in redirects, the last one out restores); output written to fd 2 by other
    threads during a decode is lost.
    """
    global _stderr_depth, _stderr_saved
    with _stderr_lock:
        if _stderr_depth == 0:
            try:
                if sys.stderr is not None:
                    sys.stderr.flush()
                saved = os.dup(2)
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 2)
                os.close(null)
                _stderr_saved = saved
            except (OSError, ValueError):
                _stderr_saved = None
        _stderr_depth += 1
    try:
        yield
    finally:
        with _stderr_lock:
            _stderr_depth -= 1
            if _stderr_depth == 0 and _stderr_saved is not None:
                os.dup2(_stderr_saved, 2)
                os.close(_stderr_saved)
                _stderr_saved = None


def _cv2_decode(data: bytes, flags: int) -> np.ndarray | None:
    """``cv2.imdecode`` that returns None instead of raising, with native stderr silenced."""
    buf = np.frombuffer(data, dtype=np.uint8)
    with _quiet_native_stderr():
        try:
            return cv2.imdecode(buf, flags)
        except cv2.error:
            return None


def _decode_gif(data: bytes) -> np.ndarray | None:
    """First frame of a GIF as BGR ``uint8`` (transparent pixels grey), or None.

    Pillow decodes the palette indices; the palette (transparent entry set to grey 127) is
    applied with one lookup, so a 49 MP GIF peaks at about 5 bytes per pixel (OpenCV's
    GIF decoder needs twice that).  The size was checked from the header before.
    """
    try:
        from PIL import GifImagePlugin

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = GifImagePlugin.GifImageFile(_io.BytesIO(data))
            try:
                im.load()
                mode, info = im.mode, dict(im.info)
                if mode in ("P", "L"):
                    idx = np.asarray(im)
                    if mode == "P":
                        pal = np.frombuffer(bytes(im.getpalette("RGB") or b""), np.uint8)
                    else:
                        pal = np.repeat(np.arange(256, dtype=np.uint8), 3)
                else:  # RGB/RGBA first frame (rare): Pillow converts
                    rgb = np.asarray(im.convert("RGB"))
                    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            finally:
                im.close()
        lut = np.zeros((256, 3), np.uint8)
        pal = pal[: (len(pal) // 3) * 3].reshape(-1, 3)[:256]
        lut[: len(pal)] = pal[:, ::-1]
        t = info.get("transparency")
        if isinstance(t, int) and 0 <= t < 256:
            lut[t] = 127
        return lut[idx]
    except Exception:
        return None


def _decode_with_pil(data: bytes, keep_alpha: bool) -> np.ndarray | None:
    """First frame decoded by Pillow as BGR(A) ``uint8``, or None (size already checked)."""
    try:
        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(_io.BytesIO(data)) as im:
                im.seek(0)
                has_alpha = "A" in im.getbands() or "transparency" in im.info
                rgb = im.convert("RGBA" if keep_alpha and has_alpha else "RGB")
        arr = np.asarray(rgb)
        del rgb
        code = cv2.COLOR_RGBA2BGRA if arr.shape[2] == 4 else cv2.COLOR_RGB2BGR
        return cv2.cvtColor(arr, code)
    except Exception:
        return None


# --------------------------------------------------------------------------- headers


def _u16(data: bytes, off: int, endian: str = ">") -> int:
    return struct.unpack_from(endian + "H", data, off)[0]


def _u32(data: bytes, off: int, endian: str = ">") -> int:
    return struct.unpack_from(endian + "I", data, off)[0]


def _need(data: bytes, n: int) -> None:
    if len(data) < n:
        raise _Truncated


_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, payload start, payload end) of each JPEG header segment up to SOS.

    Tolerates fill bytes and stray bytes between segments (as libjpeg does).  Raises
    :class:`_Truncated` when the data ends first, :class:`_Corrupt` for a bad length.
    """
    n, pos = len(data), 2
    while True:
        if pos >= n:
            raise _Truncated
        if data[pos] != 0xFF:
            pos = data.find(b"\xff", pos)
            if pos < 0:
                raise _Truncated
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            raise _Truncated
        marker = data[pos]
        pos += 1
        if marker == 0x01 or marker == 0xD8 or 0xD0 <= marker <= 0xD7:
            continue
        if marker == 0xD9:
            raise _Corrupt("end of image before any image data")
        _need(data, pos + 2)
        length = _u16(data, pos)
        if length < 2:
            raise _Corrupt(f"segment length {length}")
        _need(data, pos + length)
        yield marker, pos + 2, pos + length
        pos += length
        if marker == 0xDA:
            return


def _parse_jpeg(data: bytes) -> _Header:
    size = None
    exif = None
    for marker, a, b in _jpeg_segments(data):
        if marker in _JPEG_SOF and size is None:
            if b - a < 6:
                raise _Corrupt("short frame header")
            size = (_u16(data, a + 3), _u16(data, a + 1))
        elif marker == 0xE1 and exif is None and data[a : a + 6] == b"Exif\x00\x00":
            exif = data[a + 6 : b]
    if size is None:
        raise _Corrupt("no frame header")
    return _Header("jpeg", size[0], size[1], exif=exif)


def _jpeg_complete(data: bytes) -> bool:
    """Whether the JPEG's image data runs up to an end-of-image marker (FFD9).

    Walks the header segments, then the entropy-coded data (skipping stuffed ``FF00``
    bytes, restart markers and the segments between progressive scans) until EOI.  Bytes
    after EOI (Motion Photo videos, camera trailers, a second JPEG) do not matter.
    """
    try:
        pos = max(b for _, _, b in _jpeg_segments(data))
    except (_Truncated, _Corrupt, struct.error, ValueError):
        return False
    n = len(data)
    while True:
        i = data.find(b"\xff", pos)
        if i < 0 or i + 1 >= n:
            return False
        marker = data[i + 1]
        if marker == 0x00 or marker == 0xFF or 0xD0 <= marker <= 0xD7:
            pos = i + 1
            continue
        if marker == 0xD9:
            return True
        if i + 4 > n:
            return False
        length = _u16(data, i + 2)
        if length < 2:
            return False
        pos = i + 2 + length


_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


def _parse_png(data: bytes) -> _Header:
    _need(data, 33)
    if data[12:16] != b"IHDR":
        raise _Corrupt("first chunk is not IHDR")
    w, h = struct.unpack_from(">II", data, 16)
    depth, ctype = data[24], data[25]
    if ctype not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise _Corrupt(f"bit depth {depth}, colour type {ctype}")
    trns = False
    exif = None
    pos, n = 8, len(data)
    while pos + 8 <= n:
        length = _u32(data, pos)
        kind = data[pos + 4 : pos + 8]
        if length > 0x7FFFFFFF:  # OpenCV 5 would try to read a 4 GB chunk
            raise _Corrupt(f"{kind!r} chunk length {length}")
        if pos + 12 + length > n:
            raise _Truncated
        if kind == b"tRNS":
            trns = True
        elif kind == b"eXIf" and exif is None:
            exif = data[pos + 8 : pos + 8 + length]
        elif kind == b"IEND":
            break
        pos += 12 + length
    channels = 4 if trns else _PNG_CHANNELS[ctype]
    return _Header(
        "png", w, h,
        alpha=ctype in (4, 6) or trns,
        alpha_cost=max(9.0, 2.0 * channels * (2 if depth == 16 else 1) + 1.0),
        exif=exif,
    )  # fmt: skip


def _parse_gif(data: bytes) -> _Header:
    _need(data, 13)
    w, h = struct.unpack_from("<HH", data, 6)
    packed = data[10]
    pos = 13 + (3 * (2 << (packed & 7)) if packed & 0x80 else 0)
    transparent = False
    n = len(data)
    while pos < n:
        block = data[pos]
        if block == 0x21:  # extension: label, then sub-blocks
            if pos + 1 < n and data[pos + 1] == 0xF9 and pos + 3 < n:
                transparent = transparent or bool(data[pos + 3] & 1)
            pos += 2
            while pos < n:
                size = data[pos]
                pos += 1 + size
                if size == 0:
                    break
        elif block == 0x2C:  # first image descriptor: the frame may exceed the screen
            left, top, fw, fh = struct.unpack_from("<HHHH", data, pos + 1)
            w, h = max(w, left + fw), max(h, top + fh)
            break
        else:
            break
    return _Header("gif", w, h, cost=4.5)  # transparency is applied through the palette


def _parse_bmp(data: bytes) -> _Header:
    _need(data, 26)
    dib = _u32(data, 14, "<")
    if dib == 12:
        w, h = struct.unpack_from("<HH", data, 18)
        bpp = _u16(data, 24, "<")
    elif 16 <= dib <= 1024:
        _need(data, 30)
        w, h = struct.unpack_from("<ii", data, 18)
        bpp = _u16(data, 28, "<")
    else:
        raise _Corrupt(f"header size {dib}")
    if w < 0:
        raise _Corrupt(f"width {w}")
    return _Header("bmp", w, abs(h), alpha=bpp == 32)


def _parse_webp(data: bytes) -> _Header:
    _need(data, 30)
    kind = data[12:16]
    alpha = animated = False
    if kind == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise _Corrupt("bad VP8 start code")
        w, h = _u16(data, 26, "<") & 0x3FFF, _u16(data, 28, "<") & 0x3FFF
    elif kind == b"VP8L":
        if data[20] != 0x2F:
            raise _Corrupt("bad VP8L signature")
        bits = _u32(data, 21, "<")
        w, h = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        alpha = bool((bits >> 28) & 1)
    elif kind == b"VP8X":
        alpha = bool(data[20] & 0x10)
        animated = bool(data[20] & 0x02)
        w = 1 + int.from_bytes(data[24:27], "little")
        h = 1 + int.from_bytes(data[27:30], "little")
    else:
        raise _Corrupt(f"unknown chunk {kind!r}")
    exif = None
    pos, n = 12, len(data)
    while pos + 8 <= n:
        size = _u32(data, pos + 4, "<")
        if data[pos : pos + 4] == b"EXIF":
            exif = data[pos + 8 : pos + 8 + size]
            break
        pos += 8 + size + (size & 1)
    if animated:  # the animation decoder composes frames on an RGBA canvas
        return _Header("webp", w, h, alpha=alpha, cost=12.5, alpha_cost=13.5, exif=exif)
    return _Header("webp", w, h, alpha=alpha, cost=8.0, exif=exif)


_TIFF_TYPES = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}  # SHORT, LONG, LONG8


def _tiff_ifd0(data: bytes) -> dict[int, int]:
    """First value of each SHORT/LONG/LONG8 tag in a TIFF's first IFD (classic or BigTIFF)."""
    e = "<" if data[:2] == b"II" else ">"
    big = _u16(data, 2, e) == 43
    if big:
        off = struct.unpack_from(e + "Q", data, 8)[0]
        count = struct.unpack_from(e + "Q", data, off)[0]
        first, entry, field, cfmt = off + 8, 20, 8, "Q"
    else:
        off = _u32(data, 4, e)
        count = _u16(data, off, e)
        first, entry, field, cfmt = off + 2, 12, 4, "I"
    if count > 4096:
        raise _Corrupt(f"{count} tags")
    tags: dict[int, int] = {}
    for k in range(int(count)):
        pos = first + k * entry
        tag, typ = struct.unpack_from(e + "HH", data, pos)
        if typ not in _TIFF_TYPES:
            continue
        n = struct.unpack_from(e + cfmt, data, pos + 4)[0]
        code, size = _TIFF_TYPES[typ]
        vpos = pos + 4 + field  # the count is as wide as the value field
        if n * size > field:  # values stored elsewhere: field holds their offset
            vpos = struct.unpack_from(e + cfmt, data, vpos)[0]
        if n >= 1:
            tags.setdefault(tag, struct.unpack_from(e + code, data, vpos)[0])
    return tags


def _parse_tiff(data: bytes) -> _Header:
    _need(data, 16)
    tags = _tiff_ifd0(data)
    if 256 not in tags or 257 not in tags:
        raise _Corrupt("no image width/length")
    w, h = tags[256], tags[257]
    spp = tags.get(277, 1)
    bps = tags.get(258, 1)
    tile = tags.get(322, 0) * tags.get(323, 0)
    if tile > MAX_PIXELS:
        raise _Corrupt(f"tiles of {tags[322]}x{tags[323]}")
    if not 1 <= spp <= 64 or not 1 <= bps <= 64:
        raise _Corrupt(f"{spp} samples of {bps} bits")
    alpha = spp in (2, 4) or 338 in tags
    if bps > 16:
        raise _Unsupported(f"with {bps}-bit samples")
    # OpenCV converts TIFF strip by strip to 8-bit BGR: ~7 bytes/pixel whatever the depth;
    # an unchanged decode (alpha kept) holds every sample
    unchanged = spp * ((bps + 7) // 8)
    return _Header("tiff", w, h, alpha=alpha, alpha_cost=max(9.0, 2.0 * unchanged + 1.0))


_PNM_TOKEN = re.compile(rb"(?:\s|#[^\r\n]*[\r\n])*(\d+)")


def _parse_pnm(data: bytes) -> _Header:
    head = data[:4096]
    kind = head[1:2]
    offset = 0
    if kind == b"7":
        end = head.find(b"ENDHDR\n")
        if end < 0:
            raise _Truncated if len(data) < 4096 else _Corrupt("no ENDHDR")
        offset = end + 7
        fields = dict(re.findall(rb"(?m)^[ \t]*(WIDTH|HEIGHT|DEPTH|MAXVAL)[ \t]+(\d+)", head[:end]))
        if b"WIDTH" not in fields or b"HEIGHT" not in fields:
            raise _Corrupt("no WIDTH/HEIGHT")
        w, h = int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
        depth = int(fields.get(b"DEPTH", b"1"))
        maxval = int(fields.get(b"MAXVAL", b"255"))
    else:
        values = []
        pos = 2
        for _ in range(2 if kind in b"14" else 3):
            m = _PNM_TOKEN.match(head, pos)
            if not m:
                raise (
                    _Truncated
                    if len(head) == len(data) and pos >= len(head) - 1
                    else _Corrupt("bad size fields")
                )
            values.append(int(m.group(1)))
            pos = m.end()
        w, h = values[0], values[1]
        maxval = values[2] if len(values) > 2 else 1
        depth = 3 if kind in b"36" else 1
    if not 1 <= depth <= 4 or not 1 <= maxval <= 65535:
        raise _Corrupt(f"depth {depth}, maxval {maxval}")
    return _Header(
        "pnm", w, h,
        alpha=depth in (2, 4),
        pam=(offset, depth, maxval) if kind == b"7" else None,
    )  # fmt: skip


def _decode_pam(data: bytes, hdr: _Header) -> np.ndarray | None:
    """Decode a PAM (P7) ourselves: OpenCV returns RGB for it, or fails without TUPLTYPE.

    Returns ``uint8`` gray ``(H, W)``, gray+alpha ``(H, W, 2)``, BGR or BGRA; None if short.
    """
    assert hdr.pam is not None
    offset, depth, maxval = hdr.pam
    wide = maxval > 255
    count = hdr.width * hdr.height * depth
    raw = data[offset : offset + count * (2 if wide else 1)]
    if len(raw) < count * (2 if wide else 1):
        return None
    arr = np.frombuffer(raw, dtype=">u2" if wide else np.uint8).reshape(
        hdr.height, hdr.width, depth
    )
    top = 65535 if wide else 255
    if maxval != top:  # rescale through a lookup table (values above maxval saturate)
        lut = np.minimum(np.arange(top + 1, dtype=np.int64) * 255 // maxval, 255).astype(np.uint8)
        arr = lut[arr]
    elif wide:
        arr = (arr >> 8).astype(np.uint8)
    if depth == 1:
        return np.ascontiguousarray(arr[:, :, 0])
    if depth == 3:
        return np.ascontiguousarray(arr[:, :, ::-1])
    if depth == 4:
        return np.ascontiguousarray(arr[:, :, [2, 1, 0, 3]])
    return np.ascontiguousarray(arr)


def _parse_jp2(data: bytes) -> _Header:
    """JPEG 2000 (JP2 box file or raw codestream): size and components from the SIZ marker,
    which is what OpenJPEG allocates from (a JP2 ``ihdr`` box could disagree)."""
    if data[:4] == b"\xff\x4f\xff\x51":
        siz = 2
    else:
        cs = data.find(b"jp2c")
        if cs < 0:
            raise _Truncated if len(data) < 4096 else _Corrupt("no codestream")
        siz = cs + 6
        if data[siz : siz + 2] != b"\xff\x51":
            raise _Truncated if len(data) < siz + 2 else _Corrupt("no SIZ marker")
    _need(data, siz + 40)
    xs, ys, xo, yo = struct.unpack_from(">IIII", data, siz + 6)
    comps = _u16(data, siz + 38)
    # OpenJPEG holds every component as int32 planes plus per-tile buffers: measured 16-20
    # bytes/pixel for 3 components (the high end with many small tiles), 22-27 for 4
    cost = 7.0 * max(comps, 3)
    return _Header("jp2", xs - xo, ys - yo, alpha=comps in (2, 4), cost=cost, alpha_cost=cost)


def _isobmff_boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the ISOBMFF boxes in ``data[start:end]``."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1:
            size, head = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            raise _Corrupt(f"box {kind!r} of {size} bytes")
        yield kind, pos + head, pos + size
        pos += size


def _av1_sequence_size(obus: bytes) -> tuple[int, int] | None:
    """(max_frame_width, max_frame_height) of the first AV1 sequence header OBU, or None."""
    pos = 0
    while pos < len(obus):
        header = obus[pos]
        kind, has_ext, has_size = (header >> 3) & 15, header & 4, header & 2
        pos += 2 if has_ext else 1
        size = 0
        if has_size:
            for k in range(8):  # leb128
                byte = obus[pos]
                pos += 1
                size |= (byte & 0x7F) << (7 * k)
                if not byte & 0x80:
                    break
        else:
            size = len(obus) - pos
        if kind == 1:
            return _parse_av1_sequence_header(obus[pos : pos + size])
        pos += size
    return None


def _parse_av1_sequence_header(payload: bytes) -> tuple[int, int]:
    """max_frame_width/height of an AV1 sequence_header_obu (AV1 spec 5.5.1)."""
    bits = int.from_bytes(payload, "big")
    total = 8 * len(payload)
    at = 0

    def f(n: int) -> int:
        nonlocal at
        if at + n > total:
            raise _Corrupt("short AV1 sequence header")
        at += n
        return (bits >> (total - at)) & ((1 << n) - 1)

    f(3)  # seq_profile
    f(1)  # still_picture
    if f(1):  # reduced_still_picture_header
        f(5)  # seq_level_idx[0]
    else:
        decoder_model = False
        delay_bits = 0
        if f(1):  # timing_info_present_flag
            f(32)
            f(32)
            if f(1):  # equal_picture_interval: uvlc
                zeros = 0
                while not f(1):
                    zeros += 1
                    if zeros >= 32:
                        break
                if zeros < 32:
                    f(zeros)
            decoder_model = bool(f(1))
            if decoder_model:
                delay_bits = f(5) + 1
                f(32)
                f(5)
                f(5)
        initial_delay = f(1)
        for _ in range(f(5) + 1):  # operating points
            f(12)
            if f(5) > 7:
                f(1)
            if decoder_model and f(1):
                f(delay_bits)
                f(delay_bits)
                f(1)
            if initial_delay and f(1):
                f(4)
    wbits, hbits = f(4) + 1, f(4) + 1
    return f(wbits) + 1, f(hbits) + 1


def _avif_coded_pixels(data: bytes) -> int:
    """Pixels the AV1 decoder will allocate: the sum over the file's ``av01`` items of
    their sequence headers' maximum frame size (colour, alpha and grid tiles alike).

    The ``ispe`` box that Pillow reports can claim less than the coded stream holds;
    dav1d allocates what the stream says.
    """
    meta = next((b for b in _isobmff_boxes(data, 0, len(data)) if b[0] == b"meta"), None)
    if meta is None:
        raise _Corrupt("no meta box (animated AVIF is not supported)")
    av01: set[int] = set()
    locations: dict[int, list[tuple[int, int]]] = {}
    for kind, a, b in _isobmff_boxes(data, meta[1] + 4, meta[2]):
        if kind == b"iinf":
            version = data[a]
            count_size = 2 if version == 0 else 4
            for ekind, ea, _eb in _isobmff_boxes(data, a + 4 + count_size, b):
                if ekind == b"infe" and data[ea] >= 2:
                    wide = data[ea] >= 3
                    item = _u32(data, ea + 4) if wide else _u16(data, ea + 4)
                    if data[ea + (10 if wide else 8) : ea + (14 if wide else 12)] == b"av01":
                        av01.add(item)
        elif kind == b"iloc":
            locations = _iloc(data, a, b)
    pixels = 0
    for item in av01:
        extents = locations.get(item)
        if not extents:
            raise _Corrupt(f"no location for AV1 item {item}")
        off, length = extents[0]
        size = _av1_sequence_size(data[off : off + min(length, 4096)])
        if size is None:
            raise _Corrupt(f"no AV1 sequence header in item {item}")
        pixels += size[0] * size[1]
    if not av01:
        raise _Corrupt("no AV1 image item (animated AVIF is not supported)")
    return pixels


def _iloc(data: bytes, a: int, b: int) -> dict[int, list[tuple[int, int]]]:
    """Item id -> [(file offset, length)] from an ``iloc`` box (construction method 0)."""
    version = data[a]
    sizes = _u16(data, a + 4)
    off_size, len_size, base_size = sizes >> 12, (sizes >> 8) & 15, (sizes >> 4) & 15
    index_size = sizes & 15 if version in (1, 2) else 0
    if not {off_size, len_size, base_size, index_size} <= {0, 4, 8}:
        raise _Corrupt("bad iloc field sizes")
    pos = a + 6

    def read(n: int) -> int:
        nonlocal pos
        if pos + n > b:
            raise _Corrupt("short iloc")
        value = int.from_bytes(data[pos : pos + n], "big")
        pos += n
        return value

    count = read(2) if version < 2 else read(4)
    out: dict[int, list[tuple[int, int]]] = {}
    for _ in range(count):
        item = read(2) if version < 2 else read(4)
        method = read(2) & 15 if version in (1, 2) else 0
        read(2)  # data_reference_index
        base = read(base_size)
        extents = []
        for _ in range(read(2)):
            read(index_size)
            extents.append((base + read(off_size), read(len_size)))
        if method == 0:
            out[item] = extents
    return out


def _parse_avif(data: bytes) -> _Header:
    """AVIF: display size, alpha and orientation via Pillow (lazy), decode size via AV1."""
    try:
        from PIL.AvifImagePlugin import AvifImageFile

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = AvifImageFile(_io.BytesIO(data))
            w, h = im.size
            alpha = "A" in im.getbands()
            orientation = int(im.getexif().get(0x0112, 1))
            im.close()
    except Exception as exc:
        raise _Corrupt(f"{type(exc).__name__}") from None
    coded = _avif_coded_pixels(data)
    # measured with libavif/dav1d: 17.5 bytes per coded pixel (alpha planes included)
    cost = 17.5 * max(coded, w * h) / max(w * h, 1)
    orientation = orientation if 1 <= orientation <= 8 else 1
    return _Header(
        "avif", w, h, alpha=alpha, cost=cost, alpha_cost=cost + 1.0, orientation=orientation
    )


_HEADER_PARSERS = {
    "jpeg": _parse_jpeg,
    "png": _parse_png,
    "gif": _parse_gif,
    "bmp": _parse_bmp,
    "webp": _parse_webp,
    "tiff": _parse_tiff,
    "pnm": _parse_pnm,
    "avif": _parse_avif,
    "jp2": _parse_jp2,
}


# --------------------------------------------------------------------------- orientation


def _exif_orientation(block: bytes) -> int:
    """The Orientation tag (1..8) of a TIFF-structured EXIF block; 1 if absent or invalid."""
    if block.startswith(b"Exif\x00\x00"):
        block = block[6:]
    try:
        e = {b"II": "<", b"MM": ">"}[block[:2]]
        if _u16(block, 2, e) != 42:
            return 1
        off = _u32(block, 4, e)
        count = _u16(block, off, e)
        for k in range(min(count, 1024)):
            tag, typ = struct.unpack_from(e + "HH", block, off + 2 + 12 * k)
            if tag == 0x0112:
                if typ == 3:
                    value = _u16(block, off + 2 + 12 * k + 8, e)
                elif typ == 4:
                    value = _u32(block, off + 2 + 12 * k + 8, e)
                else:
                    return 1
                return value if 1 <= value <= 8 else 1
    except (KeyError, struct.error, IndexError):
        return 1
    return 1


def _orientation(hdr: _Header) -> int:
    """The EXIF orientation lrface must still apply to the decoded pixels (1 = none).

    The one place that knows, per format, where the tag lives and whether OpenCV's
    decoder has already applied it (TIFF), so that it is applied exactly once.
    """
    if hdr.fmt in _DECODER_APPLIES_ORIENTATION:
        return 1
    if hdr.orientation is not None:  # AVIF: irot/imir boxes (and EXIF), via Pillow
        return hdr.orientation
    return _exif_orientation(hdr.exif) if hdr.exif else 1


def _flip_in_place(a: np.ndarray) -> np.ndarray:
    return cv2.flip(a, -1, a)


_ORIENT_OPS = {
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: lambda a: cv2.transpose(a),
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: _flip_in_place(cv2.transpose(a)),  # transverse, without a third copy
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def _orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Transform stored pixels so that they display upright (EXIF orientation 1..8)."""
    op = _ORIENT_OPS.get(orientation)
    return np.ascontiguousarray(op(img)) if op else img


# --------------------------------------------------------------------------- arrays, PIL


def _from_array(arr: np.ndarray, label: str) -> np.ndarray:
    """An image array as uint8 BGR: validated (and made uint8) by
    :func:`lrface.io.validation.check_image_array`, then grey/BGRA converted."""
    from lrface.io.validation import check_image_array

    return _to_bgr(check_image_array(arr, label, MAX_PIXELS), label)


def _to_bgr(img: np.ndarray, label: str) -> np.ndarray:
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 3:
        return np.ascontiguousarray(img)
    if img.ndim == 3 and img.shape[2] == 4:
        return _composite_bgra(img)
    raise ImageValueError(
        f"{label}: unsupported image shape {img.shape}; expected HxW, HxWx3 or HxWx4"
    )


def _composite_bgra(img: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """Composite BGRA ``uint8`` over mid-grey (127) in row blocks (bounded temporaries)."""
    h, w = img.shape[:2]
    a_all = img[:, :, 3] if alpha is None else alpha
    out = np.empty((h, w, 3), np.uint8)
    step = max(1, (1 << 20) // max(w, 1))
    for r in range(0, h, step):
        a = a_all[r : r + step, :, None].astype(np.float32) / 255.0
        rgb = img[r : r + step, :, :3].astype(np.float32)
        out[r : r + step] = np.clip(rgb * a + 127.0 * (1.0 - a) + 0.5, 0, 255)
    return out


def _is_pil(obj: Any) -> bool:
    return type(obj).__module__.startswith("PIL.")


def _from_pil(im: Any, label: str) -> np.ndarray:
    from PIL import Image, ImageOps

    if not isinstance(im, Image.Image):
        raise ImageError(f"{label}: not a PIL image; pass a PIL.Image.Image")
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise ImageError(
            f"{label}: {w}x{h} is {w * h / 1e6:.0f} megapixels, above the "
            f"{MAX_PIXELS // 1_000_000} MP limit; downscale it first"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = ImageOps.exif_transpose(im)
            if im.mode not in ("RGB", "RGBA", "L"):
                im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
            arr = np.asarray(im)
    except Exception as exc:
        raise ImageError(
            f"{label}: PIL image cannot be loaded ({type(exc).__name__}: {exc}); "
            "check the file it came from"
        ) from None
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
    return _to_bgr(np.ascontiguousarray(arr), label)


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


# --------------------------------------------------------------------------- folders


def list_images(root: str | os.PathLike[str]) -> list[Path]:
    """Every image file below ``root`` (recursive), sorted by path.

    A file is listed when its extension (case-insensitive) is in
    :data:`IMAGE_EXTENSIONS`: the formats lrface decodes (JPEG, PNG, GIF, BMP, WebP, TIFF,
    PNM, AVIF, JPEG 2000) **and** the image formats it cannot decode (HEIC/HEIF, JPEG XL).
    Nothing with an image extension is dropped: an undecodable format, a broken symlink or
    a non-image file named ``x.jpg`` is listed, and :func:`read_image` refuses it with one
    line, so batch commands report it as a per-file failure.  Files with any other
    extension (``.txt``, ``.json``, ``.npz``, ``.tsv``, no extension, ...) are not images
    and are skipped.  Directories are never listed, whatever their name.
    """
    root = Path(root)
    return sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and not p.is_dir()
    )
