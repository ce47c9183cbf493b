"""The detector canvas sized to the image finds the faces the 640 px canvas found, and the
batched SCRFD pass equals one call per image."""

import numpy as np
import pytest
from conftest import PHOTOS, needs_shared

from lrface.faces.detect import fit_scale, load_detector
from lrface.io.images import read_image

DETECTORS = ["yunet", pytest.param("scrfd-2.5g", marks=needs_shared)]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = np.maximum(a[:2], b[:2])
    x2, y2 = np.minimum(a[2:], b[2:])
    inter = max(x2 - x1, 0) * max(y2 - y1, 0)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return float(inter / (area - inter))


def test_fit_scale():
    assert fit_scale(250, 250, "image") == pytest.approx(320 / 250)  # small photo: up to 320
    assert fit_scale(288, 352, "image") == 1.0  # CCTV frame: its own size
    assert fit_scale(886, 1280, "image") == 0.5  # large: down to 640, as before
    assert fit_scale(250, 250, "fixed") == pytest.approx(640 / 250)
    assert fit_scale(250, 250) == fit_scale(250, 250, "fixed")  # the default canvas


@pytest.mark.parametrize("name", DETECTORS)
def test_image_canvas_keeps_the_faces_of_the_test_photos(name):
    det = load_detector(name)
    for path in sorted(PHOTOS.glob("*.jpg")):
        image = read_image(path)
        old, new = det.detect(image, canvas="fixed"), det.detect(image, canvas="image")
        assert len(new) == len(old), path.name
        for f in old:  # every face found before is found again, at the same place
            assert max(_iou(f.box, g.box) for g in new) > 0.7, path.name


@needs_shared
def test_batched_scrfd_equals_one_call_per_image():
    det = load_detector("scrfd-2.5g")
    images = [read_image(p) for p in sorted(PHOTOS.glob("*_000*.jpg"))]  # all 250x250
    images.append(images[0][:, ::-1].copy())
    batched, single = det.detect_many(images), [det.detect(im) for im in images]
    for a, b in zip(batched, single):
        assert len(a) == len(b) > 0
        for f, g in zip(a, b):
            assert np.array_equal(f.box, g.box) and np.array_equal(f.landmarks, g.landmarks)
