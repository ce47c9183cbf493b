"""Detection (SCRFD, YuNet; small faces, several faces) and 5-point alignment."""

import cv2
import numpy as np
import pytest
from conftest import needs_shared

from lrface.faces.align import align_face, native_face_size, similarity_transform, template
from lrface.faces.detect import load_detector
from lrface.io.images import read_image

# SCRFD (non-commercial) lives in ../shared, never in the repository
pytestmark = needs_shared


@pytest.mark.parametrize("size", [16, 24, 32, 112, 160])
def test_alignment_output_sizes(lfw_image, size):
    img = read_image(lfw_image)
    face = load_detector("scrfd-2.5g").detect(img)[0]
    crop = align_face(img, face.landmarks, size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    # the eyes of a real face land near the template's eyes (pose moves nose/mouth more)
    m = similarity_transform(face.landmarks, template(size))
    warped = face.landmarks @ m[:, :2].T + m[:, 2]
    assert np.linalg.norm(warped[:2] - template(size)[:2], axis=1).max() < 0.05 * size


@pytest.mark.parametrize("size", [112, 160])
def test_landmark_pixels_land_on_template(size):
    """Paint five dots where a (rotated, scaled, shifted) face's landmarks are, align, and
    find the dots again in the crop: each within 1 px of the template at that size."""
    ang, s, t = np.deg2rad(-12), 2.3, np.array([140.0, 90.0])
    rot = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    lm = template(112) @ rot.T + t
    for i, (x, y) in enumerate(lm):
        img = np.zeros((480, 480, 3), np.uint8)
        cv2.circle(
            img,
            (int(round(x * 8)), int(round(y * 8))),
            24,
            (255, 255, 255),
            -1,
            lineType=cv2.LINE_AA,
            shift=3,
        )
        crop = align_face(img, lm, size)[:, :, 0].astype(np.float64)
        ys, xs = np.mgrid[: crop.shape[0], : crop.shape[1]]
        centre = np.array([(xs * crop).sum(), (ys * crop).sum()]) / crop.sum()
        assert np.linalg.norm(centre - template(size)[i]) < 1.0, (i, centre)


def test_similarity_transform_recovers_known_transform():
    src = template(112)
    ang, s, t = np.deg2rad(20), 1.7, np.array([13.0, -4.0])
    rot = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = src @ rot.T + t
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-4)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-3)


@pytest.mark.parametrize("name", ["scrfd-2.5g", "scrfd-500m", "yunet"])
def test_detectors_find_the_lfw_face_and_six_in_t1(name, lfw_image, multi_face_image):
    det = load_detector(name)
    faces = det.detect(read_image(lfw_image))
    assert len(faces) >= 1
    f = faces[0]
    cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
    assert 90 < cx < 160 and 90 < cy < 170
    # eyes above nose above mouth, left eye on the image left
    lm = f.landmarks
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]
    assert lm[:2, 1].max() < lm[2, 1] < lm[3:, 1].min()
    many = det.detect(read_image(multi_face_image))
    assert len(many) == 6
    areas = [x.area for x in many]
    assert areas == sorted(areas, reverse=True)


def test_small_face_in_a_frame_is_found(lfw_image):
    img = read_image(lfw_image)
    face = load_detector("scrfd-2.5g").detect(img)[0]
    crop = align_face(img, face.landmarks, 112)
    small = cv2.resize(crop, (24, 24), interpolation=cv2.INTER_AREA)
    frame = np.full((240, 320, 3), 127, np.uint8)
    frame[100:124, 150:174] = small
    found = load_detector("scrfd-2.5g").detect(frame)
    assert found, "24x24 face in a 320x240 frame not found"
    cx = (found[0].box[0] + found[0].box[2]) / 2
    cy = (found[0].box[1] + found[0].box[3]) / 2
    assert 150 <= cx <= 174 and 100 <= cy <= 124
    assert 12 < native_face_size(found[0].landmarks) < 40


def test_no_face_in_noise():
    noise = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    assert load_detector("scrfd-2.5g").detect(noise) == []


@pytest.mark.parametrize("name", ["yunet", pytest.param("scrfd-2.5g", marks=needs_shared)])
def test_threshold_per_call_never_changes_the_shared_detector(name, multi_face_image):
    """``detect(det_thresh=...)`` filters that call only (the cached detector is shared), and
    works for YuNet too, whose threshold lives inside OpenCV's object."""
    det = load_detector(name)
    image = read_image(multi_face_image)
    default = det.detect(image)
    strict = det.detect(image, det_thresh=0.999)
    loose = det.detect(image, det_thresh=0.05)
    assert det.det_thresh == load_detector(name).det_thresh
    assert len(strict) < len(default) <= len(loose)
    assert all(f.score >= 0.05 for f in loose)
    again = det.detect(image)  # the next default call is unaffected
    assert [tuple(f.box) for f in again] == [tuple(f.box) for f in default]
