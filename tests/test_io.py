"""Image input: every accepted form, EXIF orientation, and clear errors for bad input."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from lrface.errors import ImageError
from lrface.io import MAX_PIXELS, list_images, read_image


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
    assert read_image(png.tobytes()).shape == (250, 250, 3)
    pil_rgba = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA))
    assert np.abs(read_image(pil_rgba).astype(int) - bgr).max() <= 1


def test_exif_orientation_is_applied(lfw_image):
    bgr = read_image(lfw_image)[:, :200]  # 250 high, 200 wide
    pil = Image.fromarray(bgr[:, :, ::-1])
    exif = pil.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", exif=exif, quality=95)
    out = read_image(buf.getvalue())
    assert out.shape == (200, 250, 3)


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


def test_truncated_jpeg(tmp_path, lfw_image):
    p = tmp_path / "trunc.jpg"
    p.write_bytes(lfw_image.read_bytes()[:3000])
    with pytest.raises(ImageError, match="trunc"):
        read_image(p)


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


def test_list_images(tmp_path, lfw_image):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(lfw_image.read_bytes())
    (tmp_path / "b.PNG").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["x.jpg", "b.PNG"]
