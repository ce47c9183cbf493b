#!/usr/bin/env python
"""Fuzz lrface's loaders of untrusted files and its other input surfaces.

    python benchmarks/fuzz.py --target image|gallery|card|model|api|outpath|all --n 100000

Targets (each input is generated from ``(seed, target, index)`` alone, so any input can
be regenerated with ``--repro INDEX``):

* ``image``: :func:`lrface.io.images.read_image` on mutated bytes of real small PNG, JPEG, WebP,
  TIFF, GIF, BMP, PNM, AVIF and JPEG 2000 files made from an LFW face (bit flips, byte
  and word overwrites, truncations, insertions, splices, header dimension rewrites, PNG
  chunk edits with their CRC fixed, EXIF orientation rewrites, random bytes).
* ``gallery``: :meth:`lrface.search.gallery.FlatGallery.load` on mutated ``.npz`` bytes of
  real small galleries (byte mutations, members re-zipped after mutation so their CRC is valid,
  ``meta`` JSON edited, arrays of the wrong dtype/shape/values, pickled object arrays,
  dropped/duplicated/extra members).
* ``card``: :func:`lrface.models.registry.spec_from_card` on mutated JSON model cards
  (the shipped ``weights/*.json``): field values replaced by values of other types,
  fields deleted/renamed/added, byte mutations of the text, deep nesting, bad encodings.
* ``model``: :func:`lrface.models.loader.load_embedder` on a card that names a real model
  file (:data:`MODEL_FILES`: students as ONNX and torch, the teacher, a detector) with
  its true sha256, and sizes, runtime, architecture, ``arch_kwargs`` or preprocessing that
  may not fit it; a load must embed a real face into finite unit rows of its own size.
* ``api``: ``lrface.verify``/``detect``/``embed`` on image arrays of any dtype, shape and
  fill (a real face, NaN, 255, ...) and scalar arguments of any type (strings, bools,
  numpy scalars, NaN, out of range).
* ``outpath``: the writers of outputs (``write_npz``, ``FlatGallery.save``, JSON, an ``embed``
  output directory) on odd paths in a sandbox (existing files and directories, a dangling
  link, ``..``, 300-character and control-character names, a trailing slash).  Here an
  ``OSError`` that names the path also counts as refused (the CLI prints it as one line),
  as does a message whose only line break is in the user's own file name.

Property: each input either succeeds or raises :class:`lrface.errors.LrfaceError`.  Any
other exception, or the worker process dying (segfault, abort), is a **crash**; an input
that runs longer than ``--timeout`` seconds (default 10: a legal 49 MP GIF takes 2-3 s on
a busy 2-core machine) is a **hang** (a watchdog kills the worker and the run resumes with
the next input).  ``peak_rss_mb`` is the worker's peak resident set (VmHWM) over all its
inputs.  For ``image``, the "bombs" of :func:`make_bombs` (inputs of at most 10 MB that
decode to close to :data:`lrface.io.images.MAX_PIXELS` pixels, or claim far more) are also read,
each once, in a fresh process, and that process's peak RSS is reported: it must stay below
500 MB.  Inputs that write to stderr (libpng, libjpeg or Python warnings) count as
``noisy``.

Prints one JSON summary (also written to ``--json``); crashing and hanging inputs are saved
under ``--out``.  Exit status 1 if any input crashed or hung, or a peak RSS reached 500 MB.
The module is importable: ``tests/test_fuzz.py`` drives the same seeds and mutators from
hypothesis.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import os
import random
import resource
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
FACE = REPO / "tests" / "data" / "Aaron_Eckhart_0001.jpg"  # a committed LFW photo
TARGETS = ("image", "gallery", "card", "model", "api", "outpath")
RSS_LIMIT_MB = 500


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB.

    ``VmHWM`` of /proc/self/status where available: unlike ``ru_maxrss`` it does not
    inherit the peak of the parent that forked/spawned this process.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- choices


class Chooser(Protocol):
    """Source of choices for the mutators: a seeded RNG (benchmark) or hypothesis (tests)."""

    def integer(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]`` (inclusive)."""

    def binary(self, n: int) -> bytes:
        """``n`` arbitrary bytes."""


class RngChooser:
    """:class:`Chooser` backed by :class:`random.Random` (fast, reproducible per seed)."""

    def __init__(self, seed: Any) -> None:
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def binary(self, n: int) -> bytes:
        return self.rng.randbytes(n)


def _pick(c: Chooser, seq: Any) -> Any:
    return seq[c.integer(0, len(seq) - 1)]


# --------------------------------------------------------------------------- helpers


def _chunk(kind: bytes, payload: bytes) -> bytes:
    """A PNG chunk with a valid CRC."""
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_bytes(
    width: int, height: int, depth: int, ctype: int, idat: bytes, extra: bytes = b""
) -> bytes:
    """A PNG file: IHDR (valid CRC), ``extra`` chunks, one IDAT holding ``idat``, IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, ctype, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + extra
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def zlib_repeat(block: bytes, times: int) -> bytes:
    """zlib stream of ``block * times`` built from ONE compressed copy of ``block``.

    A full flush makes the compressed block byte-aligned and self-contained, so it can be
    repeated; only the Adler-32 of the whole (cheap) is computed over the full data.
    """
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = co.compress(block) + co.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
    adler = 1
    for _ in range(times):
        adler = zlib.adler32(block, adler)
    return b"\x78\xda" + piece * times + end + struct.pack(">I", adler & 0xFFFFFFFF)


def exif_block(orientation: int) -> bytes:
    """A minimal little-endian TIFF-structured EXIF block holding only Orientation."""
    return (
        b"II*\x00\x08\x00\x00\x00\x01\x00"
        + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
        + b"\x00" * 4
    )


def face_bgr(size: int = 48) -> np.ndarray:
    """A real face: the centre of an LFW photo, ``size`` x ``size`` BGR ``uint8``."""
    img = cv2.imread(str(FACE))
    if img is None:
        raise SystemExit(f"{FACE}: test photo not found; restore tests/data (git checkout)")
    return cv2.resize(img[50:200, 50:200], (size, size), interpolation=cv2.INTER_AREA)


def _pil_bytes(img_bgr: np.ndarray, fmt: str, mode: str = "RGB", **kw: Any) -> bytes:
    from PIL import Image

    rgb = img_bgr[:, :, [2, 1, 0, 3]] if img_bgr.shape[2] == 4 else img_bgr[:, :, ::-1]
    im = Image.fromarray(np.ascontiguousarray(rgb)).convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _cv2_bytes(ext: str, img: np.ndarray, params: tuple[int, ...] = ()) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    if not ok:
        raise RuntimeError(f"cv2 cannot encode {ext}")
    return buf.tobytes()


# --------------------------------------------------------------------------- image seeds


def image_seeds(size: int = 48) -> dict[str, bytes]:
    """Real small encoded images of an LFW face, one per format/variant."""
    from PIL import Image

    face = face_bgr(size)
    gray = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    alpha = np.tile(np.linspace(0, 255, size, dtype=np.uint8), (size, 1))
    bgra = np.dstack([face, alpha])
    ex6 = Image.Exif()
    ex6[0x0112] = 6
    seeds = {
        "png_rgb": _cv2_bytes(".png", face),
        "png_rgba": _cv2_bytes(".png", bgra),
        "png_gray16": _cv2_bytes(".png", gray.astype(np.uint16) * 257),
        "png_palette_trns": _pil_bytes(face, "PNG", "P", transparency=0),
        "png_exif6": _pil_bytes(face, "PNG", exif=ex6.tobytes()),
        "jpeg_exif6": _pil_bytes(face, "JPEG", quality=80, exif=ex6.tobytes()),
        "jpeg_progressive": _pil_bytes(face, "JPEG", quality=80, progressive=True),
        "jpeg_gray": _cv2_bytes(".jpg", gray, (cv2.IMWRITE_JPEG_QUALITY, 80)),
        "jpeg_cmyk": _pil_bytes(face, "JPEG", "CMYK", quality=80),
        "jpeg_restart": _cv2_bytes(".jpg", face, (cv2.IMWRITE_JPEG_RST_INTERVAL, 2)),
        "webp_lossy": _pil_bytes(face, "WEBP", quality=70),
        "webp_lossless_alpha": _cv2_bytes(".webp", bgra, (cv2.IMWRITE_WEBP_QUALITY, 101)),
        "webp_exif6": _pil_bytes(face, "WEBP", quality=70, exif=ex6.tobytes()),
        "tiff_rgb": _pil_bytes(face, "TIFF"),
        "tiff_lzw_exif6": _pil_bytes(face, "TIFF", compression="tiff_lzw", exif=ex6.tobytes()),
        "tiff_rgba": _pil_bytes(bgra, "TIFF", "RGBA"),
        "tiff_gray16": _cv2_bytes(".tiff", gray.astype(np.uint16) * 257),
        "tiff_jpeg": _pil_bytes(face, "TIFF", compression="jpeg"),
        "gif_transparent": _pil_bytes(face, "GIF", "P", transparency=0),
        "bmp_24": _cv2_bytes(".bmp", face),
        "bmp_32": _pil_bytes(bgra, "BMP", "RGBA"),
        "bmp_8": _pil_bytes(face, "BMP", "P"),
        "ppm": _cv2_bytes(".ppm", face),
        "pgm16": _cv2_bytes(".pgm", gray.astype(np.uint16) * 257),
        "pam_rgba": b"P7\nWIDTH %d\nHEIGHT %d\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n"
        % (size, size)
        + bgra[:, :, [2, 1, 0, 3]].tobytes(),
    }
    # animated GIF (two frames) and animated WebP
    from PIL import Image as _I

    f1 = _I.fromarray(face[:, :, ::-1].copy())
    f2 = f1.transpose(_I.FLIP_LEFT_RIGHT)
    for name, fmt in (("gif_animated", "GIF"), ("webp_animated", "WEBP")):
        buf = io.BytesIO()
        f1.save(buf, format=fmt, save_all=True, append_images=[f2], duration=100)
        seeds[name] = buf.getvalue()
    for name, make in (
        ("avif", lambda: _pil_bytes(face, "AVIF", quality=50)),
        ("jp2", lambda: _cv2_bytes(".jp2", face)),
    ):
        with contextlib.suppress(Exception):  # codec not in this build: fuzz the others
            seeds[name] = make()
    return seeds


def _rewrite_dims(c: Chooser, data: bytes, near_limit: bool = True) -> bytes:
    """Overwrite the width/height fields of a known format with extreme or random values.

    ``near_limit=False`` avoids sizes between 4 MP and 50 MP (legal but slow to decode:
    the short CI pass leaves those to :func:`make_bombs`).
    """
    d = bytearray(data)
    pool = [0, 1, 2, 7, 255, 256, 4096, 7000, 7071, 7072, 16383, 16384, 20000, 65535]
    w, h = _pick(c, pool), _pick(c, pool)
    if c.integer(0, 3) == 0:
        w, h = c.integer(0, 70000), c.integer(0, 70000)
    if not near_limit and 4_000_000 < w * h <= 50_000_000:
        w, h = min(w, 2000), min(h, 2000)
    try:
        if d[4:8] == b"ftyp" and d.find(b"ispe") > 0:  # AVIF: image spatial extents
            i = d.find(b"ispe")
            struct.pack_into(">II", d, i + 8, w & 0xFFFFFFFF, h & 0xFFFFFFFF)
        elif d[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" and d.find(b"\xff\x51") > 0:
            i = d.find(b"\xff\x51")  # JPEG 2000 SIZ: Lsiz, Rsiz, Xsiz, Ysiz
            struct.pack_into(">II", d, i + 6, w & 0xFFFFFFFF, h & 0xFFFFFFFF)
            j = d.find(b"ihdr")
            if j > 0 and c.integer(0, 1):
                struct.pack_into(">II", d, j + 4, h & 0xFFFFFFFF, w & 0xFFFFFFFF)
        elif d[:8] == b"\x89PNG\r\n\x1a\n" and len(d) >= 33:
            if c.integer(0, 9) == 0:  # beyond 2**31 too
                w, h = _pick(c, [2**31 - 1, 2**31, 2**32 - 1]), h
            struct.pack_into(">II", d, 16, w, h)
            struct.pack_into(">I", d, 29, zlib.crc32(bytes(d[12:29])) & 0xFFFFFFFF)
        elif d[:3] == b"\xff\xd8\xff":
            for m in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
                i = d.find(m, 2)
                if i > 0 and i + 9 <= len(d):
                    struct.pack_into(">HH", d, i + 5, h & 0xFFFF, w & 0xFFFF)
                    break
        elif d[:3] == b"GIF" and len(d) >= 10:
            struct.pack_into("<HH", d, 6, w & 0xFFFF, h & 0xFFFF)
            i = d.find(b"\x2c", 13)
            if i > 0 and i + 9 <= len(d) and c.integer(0, 1):
                struct.pack_into("<HH", d, i + 5, w & 0xFFFF, h & 0xFFFF)
        elif d[:2] == b"BM" and len(d) >= 26:
            struct.pack_into("<ii", d, 18, min(w, 2**31 - 1), min(h, 2**31 - 1) * _pick(c, [1, -1]))
        elif d[:4] == b"RIFF" and len(d) >= 30:
            kind = bytes(d[12:16])
            if kind == b"VP8X":
                d[24:27] = (
                    (max(w, 1) - 1).to_bytes(3, "little", signed=False)[:3]
                    if w < 2**24
                    else b"\xff\xff\xff"
                )
                d[27:30] = (
                    (max(h, 1) - 1).to_bytes(3, "little", signed=False)[:3]
                    if h < 2**24
                    else b"\xff\xff\xff"
                )
            elif kind == b"VP8 ":
                struct.pack_into("<HH", d, 26, w & 0x3FFF, h & 0x3FFF)
            elif kind == b"VP8L":
                bits = struct.unpack_from("<I", d, 21)[0] & ~0x0FFFFFFF
                bits |= ((max(w, 1) - 1) & 0x3FFF) | (((max(h, 1) - 1) & 0x3FFF) << 14)
                struct.pack_into("<I", d, 21, bits)
        elif d[:2] in (b"II", b"MM") and len(d) >= 8:
            e = "<" if d[:2] == b"II" else ">"
            off = struct.unpack_from(e + "I", d, 4)[0]
            n = struct.unpack_from(e + "H", d, off)[0]
            for k in range(n):
                p = off + 2 + 12 * k
                tag, typ = struct.unpack_from(e + "HH", d, p)
                if tag in (256, 257, 322, 323):
                    v = w if tag in (256, 322) else h
                    if typ == 3:
                        struct.pack_into(e + "H", d, p + 8, v & 0xFFFF)
                    else:
                        struct.pack_into(e + "I", d, p + 8, v & 0xFFFFFFFF)
        elif d[:1] == b"P" and d[1:2] in b"123456":
            head = d[:64].split(maxsplit=3)
            if len(head) >= 3:
                rest = d[len(b" ".join(head[:3])) :]
                d = bytearray(head[0] + b"\n%d %d" % (w, h) + rest)
    except (struct.error, IndexError, OverflowError, ValueError):
        pass
    return bytes(d)


def _png_chunk_edit(c: Chooser, data: bytes) -> bytes:
    """Mutate one PNG chunk's payload (or length/type) and fix its CRC."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return data
    chunks = []
    pos = 8
    while pos + 12 <= len(data):
        n = struct.unpack_from(">I", data, pos)[0]
        if pos + 12 + n > len(data):
            break
        chunks.append([data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]])
        pos += 12 + n
    if not chunks:
        return data
    k = c.integer(0, len(chunks) - 1)
    op = c.integer(0, 4)
    if op == 0:
        chunks[k][1] = mutate_bytes(c, chunks[k][1]) if chunks[k][1] else c.binary(4)
    elif op == 1:
        chunks.insert(
            k,
            [
                _pick(
                    c,
                    [
                        b"tRNS",
                        b"eXIf",
                        b"iCCP",
                        b"PLTE",
                        b"acTL",
                        b"fcTL",
                        b"IDAT",
                        b"zTXt",
                        b"sBIT",
                    ],
                ),
                c.binary(c.integer(0, 64)),
            ],
        )
    elif op == 2:
        del chunks[k]
    elif op == 3:
        chunks.insert(c.integer(0, len(chunks)), list(chunks[k]))
    else:  # split IDAT into many tiny chunks
        body = b"".join(p for t, p in chunks if t == b"IDAT")
        step = c.integer(1, 64)
        rest = [ch for ch in chunks if ch[0] != b"IDAT"]
        idats = [[b"IDAT", body[i : i + step]] for i in range(0, len(body), step)]
        chunks = rest[:-1] + idats + rest[-1:]
    return data[:8] + b"".join(_chunk(t, p) for t, p in chunks)


def _orientation_edit(c: Chooser, data: bytes) -> bytes:
    """Set the EXIF Orientation value (if any) to 0..9 or a random 16-bit value."""
    d = bytearray(data)
    for pat, e in ((b"\x12\x01\x03\x00", "<"), (b"\x01\x12\x00\x03", ">")):
        i = d.find(pat)
        if i >= 0 and i + 10 <= len(d):
            v = c.integer(0, 9) if c.integer(0, 3) else c.integer(0, 0xFFFF)
            struct.pack_into(e + "H", d, i + 8, v)
    return bytes(d)


def mutate_image(c: Chooser, seeds: dict[str, bytes], near_limit: bool = True) -> bytes:
    """One fuzz input for the image reader, built from ``seeds`` by 1-3 mutations."""
    names = sorted(seeds)
    data = seeds[_pick(c, names)]
    op = c.integer(0, 19)
    if op == 0:  # random bytes, sometimes behind a real magic
        junk = c.binary(c.integer(0, 256))
        return data[: c.integer(0, 16)] + junk if c.integer(0, 1) else junk
    for _ in range(c.integer(1, 3)):
        kind = c.integer(0, 9)
        if kind <= 1:
            data = _rewrite_dims(c, data, near_limit)
        elif kind == 2:
            data = _png_chunk_edit(c, data)
        elif kind == 3:
            data = _orientation_edit(c, data)
        else:
            data = mutate_bytes(c, data, seeds)
    return data


# --------------------------------------------------------------------------- generic bytes

_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE, 0x20, 0x0A, 0x2C, 0x3B, 0xD9, 0xD8)
_WORDS = (
    0,
    1,
    2,
    0x7F,
    0xFF,
    0x100,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
)


def mutate_bytes(c: Chooser, data: bytes, seeds: dict[str, bytes] | None = None) -> bytes:
    """One generic byte-level mutation (bit flips, overwrites, cuts, inserts, splices)."""
    if not data:
        return c.binary(c.integer(1, 64))
    d = bytearray(data)
    n = len(d)
    op = c.integer(0, 9)
    if op == 0:  # flip 1-8 bits
        for _ in range(c.integer(1, 8)):
            bit = c.integer(0, 8 * n - 1)
            d[bit // 8] ^= 1 << (bit % 8)
    elif op == 1:  # interesting byte(s)
        for _ in range(c.integer(1, 4)):
            d[c.integer(0, n - 1)] = _pick(c, _BYTES)
    elif op == 2:  # interesting 16/32-bit word, either endianness
        fmt = _pick(c, ["<H", ">H", "<I", ">I"])
        size = struct.calcsize(fmt)
        if n >= size:
            v = _pick(c, _WORDS) & (0xFFFF if "H" in fmt else 0xFFFFFFFF)
            struct.pack_into(fmt, d, c.integer(0, n - size), v)
    elif op == 3:  # truncate
        d = d[: c.integer(0, n - 1)]
    elif op == 4:  # delete a slice
        a = c.integer(0, n - 1)
        del d[a : a + c.integer(1, max(1, n // 4))]
    elif op == 5:  # insert random bytes
        a = c.integer(0, n)
        d[a:a] = c.binary(c.integer(1, 64))
    elif op == 6:  # copy a slice over another place
        a, b = c.integer(0, n - 1), c.integer(0, n - 1)
        k = c.integer(1, max(1, n // 8))
        d[b : b + k] = d[a : a + k]
    elif op == 7:  # append junk or a whole other file (trailers)
        other = _pick(c, sorted(seeds.values(), key=len)) if seeds and c.integer(0, 1) else None
        d += other if other is not None else c.binary(c.integer(1, 1024))
    elif op == 8 and seeds:  # splice the head of this with the tail of another
        other = _pick(c, sorted(seeds.values(), key=len))
        d = d[: c.integer(0, n)] + other[c.integer(0, len(other)) :]
    else:  # random run of bytes
        a = c.integer(0, n - 1)
        k = c.integer(1, 32)
        d[a : a + k] = c.binary(k)
    return bytes(d)


# --------------------------------------------------------------------------- bombs


def make_bombs() -> dict[str, bytes]:
    """Image inputs of at most 10 MB that decode to ~49 MP or claim far more.

    The worst cases for peak memory: 16-bit RGBA and RGBA PNGs just under the pixel limit,
    one with EXIF orientation 6 (rotation copies the image), a JPEG whose frame header was
    rewritten to 7000x7000 (libjpeg fills the missing data), a 7000x7000 16-bit RGBA TIFF
    with orientation 6, a 7000x7000 GIF, an RLE BMP and a PNM that claim 49 MP, and
    headers claiming 400 MP to 4 GP (a real 20000x20000 1-bit PNG among them).
    """
    from PIL import Image

    side = 7000  # 49 MP, just under MAX_PIXELS
    ex6 = _chunk(b"eXIf", exif_block(6))
    bombs = {
        "png_rgba16_49mp": png_bytes(side, side, 16, 6, zlib_repeat(bytes(1 + side * 8), side)),
        "png_rgba8_49mp": png_bytes(side, side, 8, 6, zlib_repeat(bytes(1 + side * 4), side)),
        "png_rgb8_49mp_exif6": png_bytes(
            side, side, 8, 2, zlib_repeat(bytes(1 + side * 3), side), ex6
        ),
        "png_gray16_49mp": png_bytes(side, side, 16, 0, zlib_repeat(bytes(1 + side * 2), side)),
        "png_1bit_20000sq": png_bytes(20000, 20000, 1, 0, zlib_repeat(bytes(1 + 2500), 20000)),
        "png_claims_50000sq": png_bytes(50000, 50000, 8, 2, zlib.compress(bytes(1000))),
        "png_claims_4gp": png_bytes(65535, 65535, 16, 6, zlib.compress(bytes(1000))),
    }
    face = face_bgr(64)
    jpeg = _pil_bytes(face, "JPEG", quality=90, exif=_exif_obj(6))
    i = jpeg.find(b"\xff\xc0")
    bombs["jpeg_sof_7000sq_exif6"] = jpeg[: i + 5] + struct.pack(">HH", side, side) + jpeg[i + 9 :]
    bombs["jpeg_sof_65535sq"] = jpeg[: i + 5] + struct.pack(">HH", 65535, 65535) + jpeg[i + 9 :]
    bombs["tiff_rgba16_49mp_orient6"] = _tiff_strips(side, side, 4, 16, orientation=6)
    bombs["tiff_rgb8_49mp"] = _tiff_strips(side, side, 3, 8)
    gif = io.BytesIO()
    Image.new("P", (side, side)).save(gif, format="GIF")
    bombs["gif_7000sq"] = gif.getvalue()
    bombs["gif_claims_65535sq"] = (
        gif.getvalue()[:6] + struct.pack("<HH", 65535, 65535) + gif.getvalue()[10:]
    )
    bombs["bmp_rle8_7000sq"] = _bmp_rle8(side, side)
    bombs["pnm_p6_7000sq_short"] = b"P6\n%d %d\n255\n" % (side, side) + bytes(4096)
    bombs["webp_vp8x_16384sq"] = _webp_vp8x(16384, 16384)
    for name, data in bombs.items():
        assert len(data) <= 10 * 2**20, (name, len(data))
    return bombs


def _exif_obj(orientation: int) -> bytes:
    from PIL import Image

    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex.tobytes()


def _tiff_strips(w: int, h: int, spp: int, bps: int, orientation: int = 1) -> bytes:
    """A deflate TIFF whose strips all point at ONE compressed strip of zeros."""
    rows = 64
    strip = zlib.compress(bytes(w * rows * spp * bps // 8), 9)
    nstrips = (h + rows - 1) // rows
    entries: list[tuple[int, int, int, int | bytes]] = []
    data_off = 8
    # layout: header, strip data, arrays, IFD
    arrays = bytearray()
    base = data_off + len(strip)

    def array(values: list[int], code: str) -> int:
        nonlocal arrays
        off = base + len(arrays)
        arrays += struct.pack(f"<{len(values)}{code}", *values)
        if len(arrays) % 2:
            arrays += b"\0"
        return off

    bps_off = array([bps] * spp, "H")
    offsets_off = array([data_off] * nstrips, "I")
    counts_off = array([len(strip)] * nstrips, "I")
    entries = [
        (256, 4, 1, w), (257, 4, 1, h), (258, 3, spp, bps_off if spp > 1 else bps),
        (259, 3, 1, 8), (262, 3, 1, 2 if spp >= 3 else 1), (273, 4, nstrips, offsets_off),
        (274, 3, 1, orientation), (277, 3, 1, spp), (278, 4, 1, rows),
        (279, 4, nstrips, counts_off), (284, 3, 1, 1),
    ]  # fmt: skip
    if spp in (2, 4):
        entries.append((338, 3, 1, 2))
    ifd_off = base + len(arrays)
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in sorted(entries):
        if typ == 3 and count == 1:
            ifd += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, typ, count, value)
    ifd += b"\0\0\0\0"
    return b"II*\x00" + struct.pack("<I", ifd_off) + strip + bytes(arrays) + ifd


def _bmp_rle8(w: int, h: int) -> bytes:
    """An 8-bit RLE BMP claiming ``w`` x ``h`` whose data ends at once (end of bitmap)."""
    palette = bytes(range(256)) * 4
    pixels = b"\x00\x01"
    off = 14 + 40 + len(palette)
    head = b"BM" + struct.pack("<IHHI", off + len(pixels), 0, 0, off)
    dib = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    return head + dib + palette + pixels


def _webp_vp8x(w: int, h: int) -> bytes:
    body = (
        b"VP8X"
        + struct.pack("<I", 10)
        + b"\x00\x00\x00\x00"
        + (w - 1).to_bytes(3, "little")
        + (h - 1).to_bytes(3, "little")
    )
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


# --------------------------------------------------------------------------- gallery


def gallery_seeds(workdir: Path | None = None) -> dict[str, bytes]:
    """Saved ``.npz`` bytes of small real galleries (random normalised embeddings)."""
    from lrface.search.gallery import FlatGallery

    rng = np.random.default_rng(0)
    seeds = {}
    tmp = Path(workdir or tempfile.mkdtemp(prefix="lrface-fuzz-"))
    for agg, people in (("mean", 3), ("all", 2), ("mean", 0)):
        g = FlatGallery(
            "lrface-mbf", "4a9cc4fc" * 8, 128, agg, 0.27, {"name": "t", "sha256": "e7" * 32}
        )
        for k in range(people):
            e = rng.standard_normal((k + 1, 128)).astype(np.float32)
            e /= np.linalg.norm(e, axis=1, keepdims=True)
            g.add(f"person_{k}", e, [f"person_{k}/img_{j}.jpg" for j in range(k + 1)])
        path = tmp / f"g_{agg}_{people}.npz"
        g.save(path)
        seeds[path.stem] = path.read_bytes()
    return seeds


_JSON_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1, 2**31, 2**63, -(2**63), 1e308, -1e308, 0.5, float("nan"),
    float("inf"), "", "x", "abc", "../../etc/passwd", "a" * 300, "\u00e9\u4e2d", [], {}, [1, 2, 3],
    ["a"], [None], {"a": 1}, [[[]]],
)  # fmt: skip


def mutate_json_value(c: Chooser, doc: Any) -> Any:
    """Replace, delete, rename or add one field somewhere in a JSON document (copy)."""
    doc = json.loads(json.dumps(doc))
    op = c.integer(0, 9)
    if op == 0:
        return _pick(c, _JSON_VALUES)
    # walk to a random container
    node: Any = doc
    for _ in range(c.integer(0, 3)):
        kids = (
            list(node.values())
            if isinstance(node, dict)
            else node
            if isinstance(node, list)
            else []
        )
        kids = [k for k in kids if isinstance(k, dict | list) and k]
        if not kids:
            break
        node = _pick(c, kids)
    if isinstance(node, dict) and node:
        key = _pick(c, sorted(node))
        if op <= 5:
            node[key] = _pick(c, _JSON_VALUES)
        elif op == 6:
            del node[key]
        elif op == 7:
            node[key + "_x"] = node.pop(key)
        else:
            node[_pick(c, ["extra", "sha256", "kind", "runtime", "__proto__", ""])] = _pick(
                c, _JSON_VALUES
            )
    elif isinstance(node, list) and node:
        i = c.integer(0, len(node) - 1)
        if op <= 6:
            node[i] = _pick(c, _JSON_VALUES)
        else:
            del node[i]
    return doc


def _npz_members(data: bytes) -> list[tuple[str, bytes]] | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return [(i.filename, zf.read(i)) for i in zf.infolist()]
    except Exception:
        return None


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def mutate_npz(c: Chooser, seeds: dict[str, bytes]) -> bytes:
    """One fuzz input for the gallery loader: a mutated ``.npz``."""
    data = seeds[_pick(c, sorted(seeds))]
    op = c.integer(0, 9)
    members = _npz_members(data)
    if op <= 3 or members is None:
        for _ in range(c.integer(1, 3)):
            data = mutate_bytes(c, data, seeds)
        return data
    names = [n for n, _ in members]
    k = c.integer(0, len(members) - 1)
    if op == 4:  # mutate one member's bytes, re-zip (valid CRC)
        members[k] = (members[k][0], mutate_bytes(c, members[k][1]))
    elif op == 5:  # edit the meta JSON
        i = names.index("meta.npy") if "meta.npy" in names else k
        try:
            meta = json.loads(str(np.load(io.BytesIO(members[i][1]))))
        except Exception:
            meta = {}
        meta = mutate_json_value(c, meta)
        payload = json.dumps(meta) if c.integer(0, 3) else meta
        try:
            arr = (
                np.array(payload)
                if not isinstance(payload, dict)
                else np.array(json.dumps(payload))
            )
        except Exception:
            arr = np.array("x")
        members[i] = ("meta.npy", _npy(arr))
    elif op == 6:  # an array of the wrong dtype/shape/values
        arrays = [
            np.full((3, 128), np.nan, np.float32), np.zeros((3, 128), np.float64),
            np.ones((3, 64), np.float32), np.zeros((0,), np.float32), np.array(["a", "b"]),
            np.array([1, 2, 3]), np.array({"a": 1}, dtype=object), np.zeros((2, 2, 2), np.float32),
            np.array(3.0), np.full((6, 128), 1 / np.sqrt(128), np.float32), np.array([b"x"]),
        ]  # fmt: skip
        members[k] = (members[k][0], _npy(_pick(c, arrays)))
    elif op == 7:  # drop, duplicate or add a member
        which = c.integer(0, 2)
        if which == 0:
            del members[k]
        elif which == 1:
            members.append(members[k])
        else:
            members.append(
                (_pick(c, ["extra.npy", "meta", "../x.npy", ""]), c.binary(c.integer(0, 200)))
            )
    else:  # rename a member
        members[k] = (
            _pick(c, ["meta.npy", "embeddings.npy", "labels.npy", "sources.npy", "x.npy"]),
            members[k][1],
        )
    buf = io.BytesIO()
    comp = zipfile.ZIP_DEFLATED if c.integer(0, 1) else zipfile.ZIP_STORED
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", comp) as zf:
        warnings.simplefilter("ignore")  # duplicate member names are the point
        for name, payload in members:
            zf.writestr(name or "noname", payload)
    return buf.getvalue()


# --------------------------------------------------------------------------- cards


def card_seeds() -> dict[str, bytes]:
    """The shipped model cards (``weights/*.json``) as bytes."""
    return {p.stem: p.read_bytes() for p in sorted((REPO / "weights").glob("*.json"))}


def mutate_card(c: Chooser, seeds: dict[str, bytes]) -> bytes:
    """One fuzz input for the card loader: a mutated JSON model card."""
    data = seeds[_pick(c, sorted(seeds))]
    op = c.integer(0, 9)
    if op <= 5:
        doc = json.loads(data)
        for _ in range(c.integer(1, 3)):
            doc = mutate_json_value(c, doc)
        return json.dumps(doc, indent=c.integer(0, 2) or None).encode()
    if op == 6:  # deep nesting or odd top-level documents
        depth = _pick(c, [10, 1000, 100000])
        return _pick(
            c,
            [
                b"[" * depth + b"]" * depth,
                b'{"a":' * depth + b"1" + b"}" * depth,
                b"[" * depth,
                b"null",
                b"1",
                b'"x"',
                b"",
            ],
        )
    if op == 7:  # other encodings
        text = data.decode()
        return _pick(
            c,
            [
                text.encode("utf-16"),
                b"\xef\xbb\xbf" + data,
                text.encode("latin-1", "replace") + b"\xff\xfe",
                data.replace(b'"', b"'", 3),
            ],
        )
    for _ in range(c.integer(1, 3)):
        data = mutate_bytes(c, data, seeds)
    return data


# --------------------------------------------------------------------------- cards vs files

#: Model files the ``model`` target's cards may name (shipped, small): the 16- and 24-px
#: students (ONNX and torch), the ONNX teacher and the YuNet detector (not a recogniser).
MODEL_FILES = (
    "lrface-tiny-16.onnx", "lrface-tiny-16.pt", "lrface-tiny-24.onnx", "lrface-tiny-24.pt",
    "mobilefacenet_arcface.onnx", "yunet_2026may.onnx",
)  # fmt: skip
_SIZES = (0, 1, 7, 8, 12, 16, 24, 32, 64, 112, 128, 256, 512, 1024, 4096, 65536, -1, 10**9)


def model_seeds() -> dict[str, bytes]:
    """The shipped cards of the students and the teacher (``weights/*.json``), and the
    16-px student's card turned into the card of its torch weights (``.pt``)."""
    names = ("lrface-tiny-16", "lrface-tiny-24", "mobilefacenet-arcface")
    seeds = {n: (REPO / "weights" / f"{n}.json").read_bytes() for n in names}
    card = json.loads(seeds["lrface-tiny-16"])
    tw = card.pop("torch_weights")
    card.update(runtime="torch", weights_file=tw["file"], sha256=tw["sha256"])
    seeds["lrface-tiny-16-torch"] = json.dumps(card).encode()
    return seeds


def _file_sha256(name: str) -> str:
    from lrface.io.fileio import sha256_file

    return sha256_file(REPO / "weights" / name)


def mutate_model_card(c: Chooser, seeds: dict[str, bytes]) -> bytes:
    """One input of the ``model`` target: a card that names a real model file, with its
    true sha256 (so loading gets past the hash) and fields that may not fit the file:
    input/embedding sizes, runtime, architecture and its keyword arguments, another
    file, preprocessing, or any field mutated as in the ``card`` target."""
    card = json.loads(seeds[_pick(c, sorted(seeds))])
    card.pop("torch_weights", None)
    for _ in range(c.integer(1, 3)):
        op = c.integer(0, 7)
        if op == 0:  # another real file, its true hash; the runtime may or may not fit it
            name = _pick(c, MODEL_FILES)
            card["weights_file"], card["sha256"] = name, _file_sha256(name)
            fits = "torch" if name.endswith(".pt") else "onnx"
            card["runtime"] = _pick(c, ["onnx", "torch", fits])
            card["kind"] = "student" if c.integer(0, 3) else "teacher"
        elif op == 1:
            card[_pick(c, ["input_size", "embedding_size"])] = _pick(c, _SIZES)
        elif op == 2:
            card["arch"] = _pick(c, ["mbf", "tiny", "resnet", None, 3])
        elif op == 3:
            kw = card.get("arch_kwargs") if isinstance(card.get("arch_kwargs"), dict) else {}
            key = _pick(c, ["input_size", "embedding_size", "width", "head_channels", "blocks",
                            "expand_mult", "bogus"])  # fmt: skip
            kw[key] = _pick(c, [*_SIZES, 2.5, "8", None, True])
            card["arch_kwargs"] = kw
        elif op == 4:
            card["arch_kwargs"] = _pick(c, [{}, [], None, "x", {"width": 10**6}])
        elif op == 5:
            card["preprocessing"] = _pick(
                c, [{}, {"color": "BGR"}, {"mean": [0, 0, 0], "std": [1e-30, 1, 1]}, None]
            )
        else:
            card = mutate_json_value(c, card)
            if not isinstance(card, dict):  # the whole card replaced by another value
                break
    return json.dumps(card).encode()


def run_model_card(data: bytes, workdir: Path) -> str:
    """Load the card (beside copies of :data:`MODEL_FILES`) and embed one real face:
    the result must be (1, D) float32 rows of norm 1, D the embedder's own size."""
    from lrface.models import loader

    for name in MODEL_FILES:
        if not (workdir / name).is_file():
            (workdir / name).write_bytes((REPO / "weights" / name).read_bytes())
    card = workdir / "model.json"
    card.write_bytes(data)
    loader._load.cache_clear()  # the same card path holds a new card every time
    emb = loader.load_embedder(card)
    out = emb.embed_crops([face_bgr(max(8, min(int(emb.input_size), 128)))])
    assert out.shape == (1, emb.embedding_size) and out.dtype == np.float32, out.shape
    assert np.isfinite(out).all() and abs(float(np.linalg.norm(out)) - 1) < 1e-3
    return "ok"


# --------------------------------------------------------------------------- API arguments

#: Values tried for scalar arguments of ``verify``/``detect``/``embed``: JSON-encoded
#: ``[type tag, value]`` pairs, decoded by :func:`_decode_value`.
_SCALARS: tuple[Any, ...] = (
    ["none", None], ["bool", True], ["bool", False], ["int", 0], ["int", 1], ["int", -1],
    ["int", 7], ["int", 2**63], ["float", 0.3], ["float", -0.5], ["float", 1.5],
    ["float", "nan"], ["float", "inf"], ["str", "0.3"], ["str", ""], ["str", "auto"],
    ["str", "yunet"], ["str", "lrface-tiny-16"], ["np.float32", 0.3], ["np.int64", 2],
    ["np.bool_", True], ["list", [0.3]], ["bytes", "x"], ["array", [0.3]],
)  # fmt: skip
_DTYPES = ("uint8", "uint16", "int8", "int32", "int64", "float32", "float64", "float16",
           "bool", "complex64", "object", "<U1")  # fmt: skip
_SHAPES = ([0, 0], [0, 5, 3], [5, 0], [1, 1, 3], [3, 3], [8, 8, 3], [64, 64], [64, 64, 1],
           [64, 64, 2], [64, 64, 3], [64, 64, 4], [64, 64, 5], [2, 64, 64, 3], [64],
           [])  # fmt: skip
_FILLS = ("face", "zeros", "max", "ramp", "nan", "inf", "neg")
_API_KWARGS = {
    "verify": ("threshold", "model", "detect", "face_index", "face_index1", "face_index2",
               "detector", "det_thresh"),
    "detect": ("detector", "det_thresh"),
    "embed": ("model", "detect", "face_index", "detector", "det_thresh"),
}  # fmt: skip


def api_seeds() -> dict[str, bytes]:
    """A valid call of each API function on a real face (the mutator's starting points)."""
    image = {"dtype": "uint8", "shape": [112, 112, 3], "fill": "face"}
    return {
        "verify": json.dumps({"fn": "verify", "images": [image, image],
                              "kwargs": {"model": ["str", "lrface-tiny-16"]}}).encode(),
        "detect": json.dumps({"fn": "detect", "images": [image], "kwargs": {}}).encode(),
        "embed": json.dumps({"fn": "embed", "images": [image],
                             "kwargs": {"model": ["str", "lrface-tiny-16"],
                                        "detect": ["bool", False]}}).encode(),
    }  # fmt: skip


def mutate_api_call(c: Chooser, seeds: dict[str, bytes]) -> bytes:
    """One input of the ``api`` target: a JSON description of a call of ``verify``,
    ``detect`` or ``embed`` whose image arrays (dtype, shape, values) and scalar
    arguments (type and value) may be wrong."""
    call = json.loads(seeds[_pick(c, sorted(seeds))])
    for _ in range(c.integer(1, 3)):
        op = c.integer(0, 4)
        image = _pick(c, call["images"])
        if op == 0:
            image["dtype"] = _pick(c, _DTYPES)
        elif op == 1:
            image["shape"] = _pick(c, _SHAPES)
        elif op == 2:
            image["fill"] = _pick(c, _FILLS)
        else:
            key = _pick(c, _API_KWARGS[call["fn"]])
            call["kwargs"][key] = _pick(c, _SCALARS)
    return json.dumps(call).encode()


def _decode_value(tagged: list) -> Any:
    tag, v = tagged
    if tag == "float":
        return float(v)
    if tag.startswith("np."):
        return getattr(np, tag[3:])(v)
    if tag == "bytes":
        return v.encode()
    if tag == "array":
        return np.array(v)
    return v


def _decode_image(spec: dict[str, Any]) -> np.ndarray:
    """The array an ``api`` input describes: ``shape``, ``dtype``, and ``fill`` (a real
    face, zeros, 255, a ramp, NaN, infinity or -3), cast as numpy casts."""
    shape, dtype, fill = tuple(spec["shape"]), np.dtype(spec["dtype"]), spec["fill"]
    if fill == "face" and len(shape) in (2, 3) and min(shape[:2]) > 0:
        face = face_bgr(max(shape[:2])).astype(np.float64)[: shape[0], : shape[1]]
        a = face.mean(axis=2) if len(shape) == 2 else np.resize(face, shape)
    elif fill == "ramp":
        a = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) % 256
    else:
        value = {"zeros": 0.0, "max": 255.0, "nan": np.nan, "inf": np.inf, "neg": -3.0}
        a = np.full(shape, value.get(fill, 0.0))
    if dtype.kind in "uib":
        a = np.nan_to_num(a, posinf=0, neginf=0)
    with np.errstate(invalid="ignore", over="ignore"):
        return a.astype(dtype)


def run_api_call(data: bytes, workdir: Path) -> str:
    """Make the described call; it must answer or raise a one-line LrfaceError (a
    TypeError or ValueError from a bad argument must be an LrfaceError too)."""
    import lrface

    call = json.loads(data)
    images = [_decode_image(s) for s in call["images"]]
    kwargs = {k: _decode_value(v) for k, v in call["kwargs"].items()}
    fn = call["fn"]
    if fn == "verify":
        res = lrface.verify(images[0], images[-1], **kwargs)
        assert isinstance(res.same, bool) and -1.0 <= res.similarity <= 1.0, res
    elif fn == "detect":
        faces = lrface.detect(images[0], **kwargs)
        assert isinstance(faces, list)
    else:
        out = lrface.embed(images, **kwargs)
        assert out.ndim == 2 and len(out) == len(images) and np.isfinite(out).all()
    return "ok"


# --------------------------------------------------------------------------- output paths

#: Path components of the ``outpath`` target (relative to a fresh sandbox holding
#: ``file.npz`` (a gallery), ``dir/``, ``file.txt`` and ``dangling`` (a broken symlink)).
_COMPONENTS = ("out.npz", "out", "dir", "file.npz", "file.txt", "dangling", "..", ".", "",
               "new", "x" * 300, "a\nb.npz", "tab\tname", "sp ace.npz", "\u00e9.npz",
               "-dash.npz", "out.NPZ", "out.npz.work", ".hidden.npz")  # fmt: skip
WRITERS = ("write_npz", "gallery_save", "embed_dir", "json")


def outpath_seeds() -> dict[str, bytes]:
    """One plain output of each writer."""
    return {w: json.dumps({"writer": w, "path": ["out.npz"]}).encode() for w in WRITERS}


def mutate_outpath(c: Chooser, seeds: dict[str, bytes]) -> bytes:
    """One input of the ``outpath`` target: a writer and an output path of 1-4 odd
    components (existing files and directories, a dangling link, ``..``, 300-character
    and control-character names), optionally with a trailing slash."""
    doc = json.loads(seeds[_pick(c, sorted(seeds))])
    doc["path"] = [_pick(c, _COMPONENTS) for _ in range(c.integer(1, 4))]
    doc["slash"] = c.integer(0, 4) == 0
    return json.dumps(doc).encode()


def _sandbox(workdir: Path) -> Path:
    """A fresh ``workdir/box/1/2/3/4`` holding ``file.npz`` (a gallery), ``dir/``,
    ``file.txt`` and ``dangling`` (a broken symlink); nested so that the ``..`` of a
    path stays inside ``workdir/box``."""
    import shutil

    from lrface.search.gallery import FlatGallery

    shutil.rmtree(workdir / "box", ignore_errors=True)
    box = workdir / "box" / "1" / "2" / "3" / "4"
    (box / "dir").mkdir(parents=True)
    g = FlatGallery("lrface-tiny-16", "0" * 64, 4, "mean", 0.3)
    g.add("someone", np.eye(4, dtype=np.float32)[:1], ["a.jpg"])
    g.save(box / "file.npz")
    (box / "file.txt").write_text("keep me\n")
    (box / "dangling").symlink_to(box / "nowhere")
    return box


def run_outpath(data: bytes, workdir: Path) -> str:
    """Write with the described writer.  It must succeed (the output then reads back),
    or raise an LrfaceError whose message is one line once the path's own components are
    taken out (a name holding a line break is the user's), or an ``OSError`` that names
    the path (``filename`` set: the CLI prints it as its one-line error, exit 2); and
    never leave a ``.part`` temporary file behind."""
    from lrface.errors import LrfaceError

    doc = json.loads(data)
    box = _sandbox(workdir)
    path = os.path.join(str(box), *doc["path"]) + ("/" if doc.get("slash") else "")
    try:
        _write_output(doc["writer"], path)
    except LrfaceError as exc:
        msg = str(exc)
        for part in doc["path"]:
            msg = msg.replace(part, "<name>") if "\n" in part or "\r" in part else msg
        raise LrfaceError(msg) from None  # check_one: one line, or a crash
    except OSError as exc:
        if exc.filename is None:
            raise
        raise LrfaceError(f"OSError naming {exc.filename!r:.60}") from None
    finally:
        leftovers = list((workdir / "box").rglob("*.part"))
        assert not leftovers, leftovers
    return "ok"


def _write_output(writer: str, path: str) -> None:
    """Write a small output of ``writer``'s kind to ``path`` and read it back."""
    from lrface.batch import embed as batch_embed
    from lrface.io.fileio import write_json_atomic
    from lrface.search.gallery import FlatGallery

    if writer == "write_npz":
        batch_embed.write_npz(path, ["a.jpg"], np.ones((1, 4), np.float32) / 2, [])
        assert batch_embed.read_npz(path)[0] == ["a.jpg"]
    elif writer == "gallery_save":
        g = FlatGallery("lrface-tiny-16", "0" * 64, 4, "mean", 0.3)
        g.add("someone", np.eye(4, dtype=np.float32)[:1], ["a.jpg"])
        g.save(path)
        assert FlatGallery.load(path).identities == ["someone"]
    elif writer == "json":
        write_json_atomic(path, {"a": 1})
        assert json.loads(Path(path).read_text()) == {"a": 1}
    else:  # the output directory of `lrface embed --out DIR`, as embed_paths opens it
        model = {"name": "m", "sha256": None, "embedding_size": 4, "flip": True}
        fresh = batch_embed._new_manifest(model, {}, ["a.jpg"], 8, None)
        batch_embed._open_output(Path(path), fresh, ["a.jpg"])
        assert batch_embed._read_manifest(Path(path))["total_paths"] == 1


# --------------------------------------------------------------------------- targets


def run_image(data: bytes, workdir: Path) -> str:
    from lrface.io.images import read_image

    img = read_image(data)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, img.shape
    return "ok"


def run_gallery(data: bytes, workdir: Path) -> str:
    from lrface.search.gallery import FlatGallery

    path = workdir / "gallery.npz"
    path.write_bytes(data)
    FlatGallery.load(path)
    return "ok"


def run_card(data: bytes, workdir: Path) -> str:
    from lrface.models.registry import spec_from_card

    path = workdir / "card.json"
    path.write_bytes(data)
    spec_from_card(path)
    return "ok"


RUNNERS: dict[str, Callable[[bytes, Path], str]] = {
    "image": run_image,
    "gallery": run_gallery,
    "card": run_card,
    "model": run_model_card,
    "api": run_api_call,
    "outpath": run_outpath,
}
MUTATORS: dict[str, Callable[[Chooser, dict[str, bytes]], bytes]] = {
    "image": mutate_image,
    "gallery": mutate_npz,
    "card": mutate_card,
    "model": mutate_model_card,
    "api": mutate_api_call,
    "outpath": mutate_outpath,
}


def seeds_for(target: str, workdir: Path | None = None) -> dict[str, bytes]:
    if target == "image":
        return image_seeds()
    if target == "gallery":
        return gallery_seeds(workdir)
    others = {"model": model_seeds, "api": api_seeds, "outpath": outpath_seeds}
    return others.get(target, card_seeds)()


def make_input(target: str, seeds: dict[str, bytes], seed: int, index: int) -> bytes:
    """Input number ``index`` of ``target`` for run seed ``seed`` (deterministic)."""
    return MUTATORS[target](RngChooser(f"{seed}:{target}:{index}"), seeds)


def check_one(target: str, data: bytes, workdir: Path) -> tuple[str, str]:
    """("ok"|"refused", "") or ("crash", traceback) for one input."""
    from lrface.errors import LrfaceError

    try:
        return RUNNERS[target](data, workdir), ""
    except LrfaceError as exc:
        msg = str(exc)
        if "\n" in msg:
            return "crash", f"multi-line LrfaceError: {msg[:500]!r}"
        return "refused", ""
    except Exception:
        return "crash", traceback.format_exc(limit=8)


# --------------------------------------------------------------------------- worker + watchdog


_OK, _REFUSED, _NOISY, _MAX_S, _SLOWEST, _RSS, _RSS_INPUT = range(7)


def _worker(
    target: str,
    seeds: dict[str, bytes],
    seed: int,
    start: int,
    stop: int,
    current: Any,
    stats: Any,
    conn: Any,
    errlog: str,
) -> None:
    """Run inputs [start, stop): publish the current index and counters in shared memory
    (they survive a kill by the watchdog), send crashes and noisy inputs on ``conn``.
    Each seed is run once first, untimed (imports, model loading, file copies), so that
    the first input of a fresh worker is not mistaken for a hang."""
    err = os.open(errlog, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(err, 2)
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1)
    workdir = Path(tempfile.mkdtemp(prefix=f"lrface-fuzz-{target}-"))
    for data in seeds.values():  # warm up (imports, models, files), not timed or counted
        check_one(target, data, workdir)
    stats[_RSS] = peak_rss_mb()
    for i in range(start, stop):
        data = make_input(target, seeds, seed, i)
        before = os.fstat(2).st_size
        current.value = i
        t = time.perf_counter()
        outcome, tb = check_one(target, data, workdir)
        dt = time.perf_counter() - t
        current.value = -1
        if outcome == "crash":
            conn.send(("crash", i, tb))
        else:
            stats[_OK if outcome == "ok" else _REFUSED] += 1
        if os.fstat(2).st_size != before:
            stats[_NOISY] += 1
            conn.send(("noisy", i, ""))
        if dt > stats[_MAX_S]:
            stats[_MAX_S], stats[_SLOWEST] = dt, i
        now = peak_rss_mb()
        if now > stats[_RSS]:
            stats[_RSS], stats[_RSS_INPUT] = now, i
    conn.send(("done", stop, ""))


def fuzz(
    target: str, n: int, seed: int, timeout: float, out: Path, start: int = 0
) -> dict[str, Any]:
    """Run ``n`` inputs of ``target`` under a watchdog; return the summary dict.

    A worker process (forked) runs the inputs; the parent watches the index it is on and
    kills it when one input runs past ``timeout`` (a hang), or notices it died (a crash),
    then starts a new worker at the next input.
    """
    ctx = mp.get_context("fork")
    out.mkdir(parents=True, exist_ok=True)
    seeds = seeds_for(target, out)
    errlog = str(out / f"{target}-stderr.log")
    Path(errlog).write_bytes(b"")
    summary: dict[str, Any] = {
        "inputs": n, "ok": 0, "refused": 0, "crashes": 0, "hangs": 0, "noisy": 0,
        "worker_restarts": 0, "peak_rss_mb": 0.0, "max_input_s": 0.0, "slowest_input": None,
        "peak_rss_input": None, "crash_examples": [], "hang_examples": [], "noisy_examples": [],
        "seeds": len(seeds),
    }  # fmt: skip
    t0 = time.time()
    i, end = start, start + n
    while i < end:
        current = ctx.Value("q", -1, lock=False)
        stats = ctx.Array("d", 7, lock=False)
        parent, child = ctx.Pipe(duplex=False)
        args = (target, seeds, seed, i, end, current, stats, child, errlog)
        p = ctx.Process(target=_worker, args=args, daemon=True)
        p.start()
        child.close()
        last, since, finished = -1, time.time(), None
        while finished is None:
            alive = p.is_alive()
            while parent.poll(0.05 if alive else 0):
                try:
                    kind, index, detail = parent.recv()
                except EOFError:
                    break
                if kind == "done":
                    finished = index
                elif kind == "noisy":
                    summary["noisy_examples"] = (summary["noisy_examples"] + [index])[:5]
                else:
                    _record(summary, kind, index, detail, target, seeds, seed, out)
            if finished is not None:
                break
            cur = current.value
            if cur != last:
                last, since = cur, time.time()
            if cur >= 0 and time.time() - since > timeout:
                p.kill()
                _record(summary, "hang", cur, f"over {timeout} s", target, seeds, seed, out)
                finished = cur + 1
            elif not alive:
                code = p.exitcode
                _record(
                    summary, "crash", cur, f"worker died (exit {code})", target, seeds, seed, out
                )
                finished = cur + 1 if cur >= 0 else end
        p.join(timeout=10)
        parent.close()
        if finished < end:
            summary["worker_restarts"] += 1
        i = finished
        summary["ok"] += int(stats[_OK])
        summary["refused"] += int(stats[_REFUSED])
        summary["noisy"] += int(stats[_NOISY])
        if stats[_MAX_S] > summary["max_input_s"]:
            summary["max_input_s"], summary["slowest_input"] = stats[_MAX_S], int(stats[_SLOWEST])
        if stats[_RSS] > summary["peak_rss_mb"]:
            summary["peak_rss_mb"], summary["peak_rss_input"] = stats[_RSS], int(stats[_RSS_INPUT])
    summary["seconds"] = round(time.time() - t0, 1)
    summary["inputs_per_s"] = round(n / max(summary["seconds"], 1e-9), 1)
    summary["peak_rss_mb"] = round(summary["peak_rss_mb"], 1)
    summary["max_input_s"] = round(summary["max_input_s"], 3)
    return summary


def _record(
    summary: dict[str, Any],
    kind: str,
    index: int,
    detail: str,
    target: str,
    seeds: dict[str, bytes],
    seed: int,
    out: Path,
) -> None:
    key = "crashes" if kind == "crash" else "hangs"
    summary[key] += 1
    examples = summary["crash_examples" if kind == "crash" else "hang_examples"]
    if index >= 0:
        path = out / f"{target}-{kind}-{seed}-{index}.bin"
        path.write_bytes(make_input(target, seeds, seed, index))
    if len(examples) < 10:
        last = detail.strip().splitlines()[-1] if detail.strip() else ""
        examples.append(
            {"index": index, "error": last[:300], "file": f"{target}-{kind}-{seed}-{index}.bin"}
        )


# --------------------------------------------------------------------------- bombs run


def _bomb_worker(path: str, conn: Any) -> None:
    from lrface.errors import LrfaceError
    from lrface.io.images import read_image

    data = Path(path).read_bytes()
    t = time.perf_counter()
    try:
        img = read_image(data)
        result = f"decoded {img.shape[1]}x{img.shape[0]}"
    except LrfaceError as exc:
        result = f"refused: {str(exc)[:120]}"
    except Exception as exc:
        result = f"CRASH {type(exc).__name__}: {exc}"
    conn.send((result, time.perf_counter() - t, peak_rss_mb()))


def run_bombs(out: Path, timeout: float = 30.0) -> dict[str, Any]:
    """Read each bomb once in a fresh process: result, seconds and that process's peak RSS."""
    ctx = mp.get_context("spawn")
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, data in make_bombs().items():
        path = out / f"bomb-{name}.bin"
        path.write_bytes(data)
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_bomb_worker, args=(str(path), child))
        p.start()
        child.close()
        if parent.poll(timeout):
            result, secs, rss = parent.recv()
        else:
            p.kill()
            result, secs, rss = "HANG", timeout, float("nan")
        p.join()
        files.append(
            {
                "name": name,
                "bytes": len(data),
                "result": result,
                "seconds": round(secs, 3),
                "peak_rss_mb": round(rss, 1),
            }
        )
    peak = max(f["peak_rss_mb"] for f in files)
    return {
        "files": files,
        "peak_rss_mb": peak,
        "rss_limit_mb": RSS_LIMIT_MB,
        "within_limit": peak < RSS_LIMIT_MB,
    }


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    ap.add_argument("--n", type=int, default=100_000, help="inputs per target")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="first input index")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-input limit (s): over = hang")
    ap.add_argument(
        "--out", type=Path, default=REPO / "runs" / "fuzz", help="crash/hang inputs, logs"
    )
    ap.add_argument("--json", type=Path, help="also write the summary here")
    ap.add_argument("--no-bombs", action="store_true", help="skip the bomb RSS check (image)")
    ap.add_argument(
        "--repro", type=int, help="run input INDEX of --target in-process, print the traceback"
    )
    args = ap.parse_args(argv)
    targets = TARGETS if args.target == "all" else (args.target,)
    if args.repro is not None:
        target = targets[0]
        data = make_input(target, seeds_for(target, args.out), args.seed, args.repro)
        args.out.mkdir(parents=True, exist_ok=True)
        print(json.dumps({"target": target, "index": args.repro, "bytes": len(data)}))
        print(check_one(target, data, Path(tempfile.mkdtemp())))
        return 0
    summary: dict[str, Any] = {
        "command": "python benchmarks/fuzz.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "seed": args.seed,
        "timeout_s": args.timeout,
        "targets": {},
    }
    for target in targets:
        summary["targets"][target] = fuzz(
            target, args.n, args.seed, args.timeout, args.out, args.start
        )
        print(f"{target}: {json.dumps(summary['targets'][target])}", file=sys.stderr, flush=True)
    if "image" in targets and not args.no_bombs:
        summary["bombs"] = run_bombs(args.out)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    bad = sum(
        t["crashes"] + t["hangs"] + (t["peak_rss_mb"] >= RSS_LIMIT_MB)
        for t in summary["targets"].values()
    )
    if "bombs" in summary and not summary["bombs"]["within_limit"]:
        bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
