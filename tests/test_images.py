"""Image input: every accepted form, EXIF orientation, and clear errors for bad input.

Families (issue 17), each tested with inputs generated here: decompression bombs refused
from the header in milliseconds, without tracebacks, warnings or native stderr noise; EXIF
orientation applied exactly once in JPEG, TIFF, WebP, PNG and AVIF; JPEGs with trailers
accepted, truncated ones refused; folders with GIF/HEIC/non-image files listed and each
file read or refused with one line; API inputs of the wrong type or with NaN refused.
"""

import io
import os
import struct
import time
import warnings
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

import lrface
from benchmarks.fuzz import _tiff_strips, _webp_vp8x, png_bytes
from lrface.errors import ImageError, LrfaceError
from lrface.io.images import MAX_PIXELS, list_images, read_image


def test_path_bytes_array_pil_agree(lfw_image):
    a = read_image(lfw_image)
    assert a.shape == (250, 250, 3) and a.dtype == np.uint8
    b = read_image(lfw_image.read_bytes())
    np.testing.assert_array_equal(a, b)
    pil = Image.open(lfw_image)
    c = read_image(pil)
    # PIL and OpenCV JPEG decoders may differ by rounding only
    assert np.abs(c.astype(int) - a).mean() < 1.0
    np.testing.assert_array_equal(read_image(a), a)
    np.testing.assert_array_equal(read_image(memoryview(lfw_image.read_bytes())), a)


def test_grayscale_and_rgba(lfw_image):
    bgr = read_image(lfw_image)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    g = read_image(gray)
    assert g.shape == (250, 250, 3)
    np.testing.assert_array_equal(g[:, :, 0], gray)
    bgra = np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(read_image(bgra), bgr)
    bgra[:10, :10, 3] = 0  # transparent corner composites onto grey
    assert (read_image(bgra)[:10, :10] == 127).all()
    _, png = cv2.imencode(".png", bgra)
    decoded = read_image(png.tobytes())
    assert (decoded[:10, :10] == 127).all()
    np.testing.assert_array_equal(decoded[10:, 10:], bgr[10:, 10:])
    pil_rgba = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA))
    assert np.abs(read_image(pil_rgba).astype(int) - bgr).max() <= 1


def test_pam_and_gif_channel_order(lfw_image):
    """PAM (decoded by lrface: OpenCV returns RGB for it) and GIF (Pillow palette path)
    give the same BGR pixels as PNG."""
    bgr = read_image(lfw_image)[:64, :64]
    rgba = np.dstack([bgr[:, :, ::-1], np.full((64, 64), 255, np.uint8)])
    rgba[:8, :8, 3] = 0
    pam = b"P7\nWIDTH 64\nHEIGHT 64\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n"
    out = read_image(pam + rgba.tobytes())
    assert (out[:8, :8] == 127).all()
    np.testing.assert_array_equal(out[8:, 8:], bgr[8:, 8:])
    gif = io.BytesIO()
    Image.fromarray(bgr[:, :, ::-1].copy()).convert("P").save(gif, format="GIF")
    ref = np.asarray(Image.open(io.BytesIO(gif.getvalue())).convert("RGB"))[:, :, ::-1]
    np.testing.assert_array_equal(read_image(gif.getvalue()), ref)


# --------------------------------------------------------------------------- bombs


def _claims(fmt: str, w: int, h: int, lfw_image) -> bytes:
    """A small file of format ``fmt`` whose header claims ``w`` x ``h`` pixels."""
    face = read_image(lfw_image)[:64, :64]
    if fmt == "png":
        return png_bytes(w, h, 8, 2, zlib.compress(bytes(1000)))
    if fmt == "jpeg":
        data = cv2.imencode(".jpg", face)[1].tobytes()
        i = data.find(b"\xff\xc0")
        return data[: i + 5] + struct.pack(">HH", h, w) + data[i + 9 :]
    if fmt == "gif":
        buf = io.BytesIO()
        Image.fromarray(face).convert("P").save(buf, format="GIF")
        return buf.getvalue()[:6] + struct.pack("<HH", w, h) + buf.getvalue()[10:]
    if fmt == "bmp":
        data = bytearray(cv2.imencode(".bmp", face)[1].tobytes())
        struct.pack_into("<ii", data, 18, w, h)
        return bytes(data)
    if fmt == "webp":
        return _webp_vp8x(w, h)
    if fmt == "tiff":
        return _tiff_strips(w, h, 3, 8)
    if fmt == "pnm":
        return b"P6\n%d %d\n255\n" % (w, h) + bytes(1000)
    if fmt == "jp2":
        data = bytearray(cv2.imencode(".jp2", face)[1].tobytes())
        i = data.find(b"\xff\x51")
        struct.pack_into(">II", data, i + 6, w, h)
        return bytes(data)
    raise AssertionError(fmt)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "gif", "bmp", "webp", "tiff", "pnm", "jp2"])
@pytest.mark.parametrize("side", [11_000, 50_000])
def test_bomb_headers_refused_in_milliseconds(fmt, side, lfw_image, capfd):
    """One header-first guard for every decoder: a header claiming 121 MP (Pillow's
    warning zone) or 2.5 GP (Pillow's error zone, where OpenCV used to raise cv2.error) is
    refused before any pixel is decoded, with one line, no warning and no stderr output."""
    side = min(side, 16384) if fmt == "webp" else min(side, 65535)
    data = _claims(fmt, side, side, lfw_image)
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = time.perf_counter()
        with pytest.raises(ImageError, match=rf"{side}x{side} is \d+ megapixels") as exc:
            read_image(data)
        elapsed = time.perf_counter() - t
    assert elapsed < 0.05, elapsed
    assert not caught, [str(w.message) for w in caught]
    assert capfd.readouterr().err == ""
    assert "\n" not in str(exc.value)


def test_real_20000_square_png_refused_fast(tmp_path):
    """A real, complete 20000x20000 1-bit PNG of 0.5 MB (used to take 11 s and 2.4 GB)."""
    from benchmarks.fuzz import zlib_repeat

    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(20000, 20000, 1, 0, zlib_repeat(bytes(1 + 2500), 20000)))
    assert len(zlib.decompress(path.read_bytes()[41:-16])) == 20000 * 2501  # complete
    t = time.perf_counter()
    with pytest.raises(ImageError, match=r"bomb.png: 20000x20000 is 400 megapixels"):
        read_image(path)
    assert time.perf_counter() - t < 0.05


def test_opencv_errors_never_escape():
    """The original reproducer raised cv2.error inside imdecode; the wrapper turns any
    OpenCV exception into a failed decode (None), and read_image into ImageError."""
    from lrface.io.images import _cv2_decode

    data = png_bytes(50000, 50000, 8, 2, zlib.compress(bytes(1000)))
    with pytest.raises(cv2.error):
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert _cv2_decode(data, cv2.IMREAD_COLOR) is None
    with pytest.raises(ImageError):
        read_image(data)


def test_chunk_claiming_4gb_refused(lfw_image):
    """Found by benchmarks/fuzz.py: an IDAT chunk length of 0xFFFFFF7F made OpenCV 5 read
    for 7 s and take 4.2 GB before failing; the chunk walk refuses it first."""
    face = read_image(lfw_image)[:48, :48]
    png = cv2.imencode(".png", face)[1].tobytes()
    i = png.find(b"IDAT") - 4
    bad = png[:i] + struct.pack(">I", 0xFFFFFF7F) + png[i + 4 :]
    t = time.perf_counter()
    with pytest.raises(ImageError, match="corrupt PNG file"):
        read_image(bad)
    assert time.perf_counter() - t < 0.05
    with pytest.raises(ImageError, match="PNG data is truncated"):
        read_image(png[: len(png) // 2])


def test_decode_budget_per_format():
    """Formats whose decoders need more memory per pixel get lower limits (AVIF: ~17.5
    bytes per *coded* AV1 pixel, counted from the AV1 sequence header, not the ``ispe``
    box, which can claim less than the stream holds)."""
    from lrface.io.images import DECODE_BUDGET, _read_header

    rgb = np.zeros((48, 64, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="AVIF")
    avif = buf.getvalue()
    assert _read_header(avif, "a").cost == pytest.approx(17.5)
    i = avif.find(b"ispe")
    lie = avif[: i + 8] + struct.pack(">II", 8, 6) + avif[i + 16 :]
    hdr = _read_header(lie, "a")
    assert (hdr.width, hdr.height) == (8, 6)
    assert hdr.cost == pytest.approx(17.5 * 64 * 48 / (8 * 6))  # the coded size counts
    rgba = io.BytesIO()
    Image.fromarray(np.zeros((48, 64, 4), np.uint8), "RGBA").save(rgba, format="AVIF")
    assert _read_header(rgba.getvalue(), "a").cost == pytest.approx(35.0)  # + alpha plane
    # a 6000x6000 AVIF (36 MP, under MAX_PIXELS) would need ~600 MB: refused
    big = avif[: i + 8] + struct.pack(">II", 6000, 6000) + avif[i + 16 :]
    assert MAX_PIXELS > 6000 * 6000 and DECODE_BUDGET < 6000 * 6000 * 17.5
    with pytest.raises(ImageError, match="would take about 601 MB"):
        read_image(big)


def test_native_decoder_messages_are_silenced(lfw_image, capfd):
    """libpng ('iCCP: ...') and libjpeg ('Corrupt JPEG data') write to fd 2 themselves."""
    face = read_image(lfw_image)[:48, :48]
    raw = b"".join(b"\x00" + face[r, :, ::-1].tobytes() for r in range(48))
    payload = b"bad\x00\x00" + zlib.compress(b"not a profile" * 10)
    iccp = (
        struct.pack(">I", len(payload))
        + b"iCCP"
        + payload
        + struct.pack(">I", zlib.crc32(b"iCCP" + payload) & 0xFFFFFFFF)
    )
    png = png_bytes(48, 48, 8, 2, zlib.compress(raw), iccp)
    jpeg = bytearray(lfw_image.read_bytes())
    for k in range(1000, 4000, 97):  # corrupt entropy-coded data, keep the markers
        if jpeg[k] not in (0xFF, 0x00) and jpeg[k - 1] != 0xFF:
            jpeg[k] = 0x00
    capfd.readouterr()
    cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    cv2.imdecode(np.frombuffer(bytes(jpeg), np.uint8), cv2.IMREAD_COLOR)
    assert "libpng warning" in capfd.readouterr().err  # the raw decoders are noisy ...
    np.testing.assert_array_equal(read_image(png), face)
    read_image(bytes(jpeg))
    for bad in (png[:-30], b"\x89PNG\r\n\x1a\n" + b"x" * 40):
        with pytest.raises(ImageError):
            read_image(bad)
    assert capfd.readouterr().err == ""  # ... read_image is not
    print("stderr still works", file=os.sys.stderr)
    assert "stderr still works" in capfd.readouterr().err


# --------------------------------------------------------------------------- orientation

_STORE = {  # orientation -> PIL transpose that makes the stored image (inverse of display)
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _tagged(upright_bgr: np.ndarray, fmt: str, orientation: int) -> bytes:
    """``upright`` stored rotated/flipped and tagged so that a viewer shows it upright."""
    stored = Image.fromarray(upright_bgr[:, :, ::-1].copy()).transpose(_STORE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    extra = {"quality": 95} if fmt in ("JPEG", "WEBP", "AVIF") else {}
    stored.save(buf, format=fmt, exif=exif.tobytes(), **extra)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF", "WEBP", "PNG", "AVIF"])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_applied_once_in_every_format(lfw_image, fmt, orientation):
    """TIFF used to be rotated twice (OpenCV's TIFF decoder applies the tag itself), WebP
    and PNG (eXIf) not at all."""
    upright = read_image(lfw_image)[:, 25:225]  # 250 high, 200 wide
    out = read_image(_tagged(upright, fmt, orientation))
    assert out.shape == upright.shape
    err = np.abs(out.astype(int) - upright).mean()
    assert err < (1.0 if fmt in ("PNG", "TIFF") else 4.0), err


def test_all_eight_orientations_png_and_jpeg(lfw_image):
    upright = read_image(lfw_image)[:, 25:225]
    for fmt in ("PNG", "JPEG"):
        for orientation in range(2, 9):
            out = read_image(_tagged(upright, fmt, orientation))
            assert out.shape == upright.shape, (fmt, orientation)
            assert np.abs(out.astype(int) - upright).mean() < 4.0, (fmt, orientation)


def test_exif_png_is_detected_upright_and_verified(same_pair):
    """The PNG case used to answer 'different people': the face was read sideways."""
    upright = read_image(same_pair[0])
    png = _tagged(upright, "PNG", 6)
    faces = lrface.detect(png)
    assert faces, "no face found in the oriented PNG"
    (lx, ly), (rx, ry), _nose, (_, mly), (_, mry) = faces[0]["landmarks"]
    assert abs(ly - ry) < 0.3 * abs(rx - lx)  # eyes level ...
    assert max(ly, ry) < min(mly, mry)  # ... and above the mouth
    ref = lrface.detect(upright)[0]["box"]
    assert np.abs(np.subtract(faces[0]["box"], ref)).max() < 5
    assert lrface.verify(png, same_pair[1]).same is True


# --------------------------------------------------------------------------- trailers


def _progressive(jpeg: bytes) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(buf, format="JPEG", progressive=True, quality=90)
    return buf.getvalue()


def test_jpeg_trailers_accepted(lfw_image, rng):
    """Bytes after the end-of-image marker (Motion Photo video, camera trailers, a second
    JPEG, junk containing FFD9) used to be refused as 'truncated'."""
    for jpeg in (lfw_image.read_bytes(), _progressive(lfw_image.read_bytes())):
        ref = read_image(jpeg)
        for trailer in (
            lfw_image.read_bytes(),
            rng.bytes(100_000),
            b"\xff\xd9" * 10 + bytes(100_000),
            b"ftypmp42" + rng.bytes(50_000),
        ):
            np.testing.assert_array_equal(read_image(jpeg + trailer), ref)


def test_truncated_jpeg(tmp_path, lfw_image):
    data = lfw_image.read_bytes()
    p = tmp_path / "trunc.jpg"
    p.write_bytes(data[:3000])
    with pytest.raises(ImageError, match="trunc"):
        read_image(p)
    prog = _progressive(data)
    for cut in (data[:300], data[: len(data) // 2], data[:-2], prog[: len(prog) // 2]):
        for tail in (b"", bytes(5000)):  # zeros after the cut hold no end marker
            with pytest.raises(ImageError, match="JPEG data is truncated"):
                read_image(cut + tail)


# --------------------------------------------------------------------------- folders


def test_list_images(tmp_path, lfw_image):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(lfw_image.read_bytes())
    (tmp_path / "b.PNG").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["x.jpg", "b.PNG"]


def test_mixed_folder_nothing_dropped(tmp_path, lfw_image):
    """GIF, HEIC/HEIF and AVIF files are listed (they used to be skipped silently) and
    each file is then read or refused with one line naming it; .txt/.json are skipped."""
    face = read_image(lfw_image)
    frames = [Image.fromarray(face[:, :, ::-1].copy()), Image.fromarray(face[::-1, :, ::-1].copy())]
    frames[0].save(tmp_path / "c.gif", save_all=True, append_images=frames[1:])
    (tmp_path / "a.jpg").write_bytes(lfw_image.read_bytes())
    (tmp_path / "b.PNG").write_text("not an image")
    (tmp_path / "d.heic").write_bytes(
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
    )
    (tmp_path / "e.HEIF").write_bytes(os.urandom(200))
    frames[0].save(tmp_path / "f.avif", quality=90)
    (tmp_path / "g.jxl").write_bytes(b"\xff\x0a" + bytes(100))
    (tmp_path / "h.jpg").mkdir()  # a directory named like an image: not listed
    (tmp_path / "h.jpg" / "i.webp").write_bytes(cv2.imencode(".webp", face)[1].tobytes())
    (tmp_path / "j.jpg").symlink_to(tmp_path / "missing.jpg")  # broken link: listed
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "meta.json").write_text("{}")
    listed = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert listed == [
        "a.jpg", "b.PNG", "c.gif", "d.heic", "e.HEIF", "f.avif", "g.jxl", "h.jpg/i.webp", "j.jpg",
    ]  # fmt: skip
    outcomes = {}
    for rel in listed:
        try:
            outcomes[rel] = read_image(tmp_path / rel)
        except ImageError as exc:
            msg = str(exc)
            assert msg.startswith(str(tmp_path / rel)) and "\n" not in msg
            outcomes[rel] = msg
    assert isinstance(outcomes["a.jpg"], np.ndarray)
    with Image.open(tmp_path / "c.gif") as gif:  # the first frame, as Pillow shows it
        first = np.asarray(gif.convert("RGB"))[:, :, ::-1]
    np.testing.assert_array_equal(outcomes["c.gif"], first)
    assert np.abs(outcomes["c.gif"].astype(int) - face).mean() < 8  # not the flipped frame
    assert np.abs(outcomes["f.avif"].astype(int) - face).mean() < 4
    assert isinstance(outcomes["h.jpg/i.webp"], np.ndarray)
    assert "not a readable image" in outcomes["b.PNG"]
    for name in ("d.heic", "e.HEIF"):
        assert "HEIC/HEIF images are not supported" in outcomes[name]
        stem = name.split(".")[0]
        assert f"`convert {name} {stem}.jpg`" in outcomes[name]
    assert "JPEG XL images are not supported" in outcomes["g.jxl"]
    assert "no such file" in outcomes["j.jpg"]


def test_special_files(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file"):
        read_image(fifo)  # must not block reading a pipe
    with pytest.raises(ImageError, match="empty path"):
        read_image("")
    with pytest.raises(ImageError, match="cannot be read"):
        read_image("a\x00b.jpg")
    tiff = tmp_path / "float.tif"
    cv2.imwrite(str(tiff), np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ImageError, match=r"float\.tif: TIFF images with 32-bit samples are not"):
        read_image(tiff)


# --------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    "maker, needle",
    [
        (lambda p: p.write_text("hello, not an image"), "not a readable image"),
        (lambda p: p.write_bytes(b""), "empty"),
    ],
)
def test_bad_files(tmp_path, maker, needle):
    p = tmp_path / "bad.jpg"
    maker(p)
    with pytest.raises(ImageError, match=needle) as exc:
        read_image(p)
    assert str(p) in str(exc.value) and "\n" not in str(exc.value)


def test_missing_directory_tiny_and_huge(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="directory"):
        read_image(tmp_path)
    one = tmp_path / "one.png"
    cv2.imwrite(str(one), np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ImageError, match="too small"):
        read_image(one)
    with pytest.raises(ImageError, match="empty"):
        read_image(np.zeros((0, 5, 3), np.uint8))
    side = int(np.sqrt(MAX_PIXELS)) + 10
    huge = tmp_path / "huge.png"
    cv2.imwrite(str(huge), np.zeros((side, side), np.uint8))
    with pytest.raises(ImageError, match=r"megapixels|MP limit"):
        read_image(huge)
    with pytest.raises(ImageError, match="unsupported image shape"):
        read_image(np.zeros((10, 10, 2), np.uint8))


# --------------------------------------------------------------------------- API types


@pytest.mark.parametrize(
    "value, needle",
    [
        (None, "cannot read an image from None"),
        (np.full((50, 50, 3), np.nan, np.float32), "NaN or infinite"),
        (np.full((50, 50), np.inf), "NaN or infinite"),
        (np.where(np.eye(50) > 0, -np.inf, 0.5), "NaN or infinite"),
        (np.zeros((50, 50, 3), bool), "unsupported dtype bool"),
        (np.zeros((50, 50, 3), object), "unsupported dtype object"),
        (np.zeros((50, 50, 3), complex), "unsupported dtype complex128"),
        (np.zeros((50,), np.uint8), "unsupported image shape"),
        (np.array(3), "unsupported image shape"),
        ([[0, 1], [2, 3]], "cannot read an image from list"),
        (12, "cannot read an image from int"),
        ({"a": 1}, "cannot read an image from dict"),
    ],
)
def test_api_input_types(value, needle):
    with pytest.raises(ImageError, match=needle) as exc:
        read_image(value)
    assert "\n" not in str(exc.value)


def test_nan_array_is_not_a_face(lfw_image):
    """A NaN array passed with detect=False used to be called the same person as a face."""
    face = read_image(lfw_image)[60:190, 60:190]
    nan = np.full(face.shape, np.nan, np.float32)
    with pytest.raises(LrfaceError, match="NaN or infinite"):
        lrface.verify(nan, face, detect=False)
