"""Dataset-photo crops through the one crop pipeline: CropOptions(pick="central"), the
retry ladder, the template fallback and the warp/native upscale (lrface.faces.face_choice)."""

import cv2
import numpy as np
import pytest
from conftest import PHOTOS

from lrface.errors import LrfaceError, NoFaceError
from lrface.faces.align import align_face, native_face_size
from lrface.faces.detect import load_detector
from lrface.faces.face_choice import central_candidates, fallback_square, template_landmarks
from lrface.faces.pipeline import CropOptions, dataset_photo_options, prepare_face
from lrface.io.images import read_image

DET = "yunet"  # shipped in weights/: these tests need no ../shared


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pick": "middle"}, "pick must be one of 'largest', 'central'"),
        ({"upscale": "nearest"}, "upscale must be one of 'native', 'warp'"),
        ({"on_no_face": "skip"}, "on_no_face must be one of 'error', 'resize', 'template'"),
        ({"pick": "central", "face_index": 1}, "--face-index applies to pick='largest'"),
        ({"tight_crops": True}, "tight_crops applies to pick='central' only"),
        ({"tight_crops": "yes", "pick": "central"}, "tight_crops must be True or False"),
        ({"detect": False, "pick": "central"}, "pick='central' only applies when faces"),
        ({"detect": False, "upscale": "warp"}, "upscale='warp' only applies when faces"),
        ({"detect": False, "on_no_face": "template"}, "on_no_face='template' only applies"),
    ],
)
def test_options_that_do_not_apply_are_refused(kwargs, message):
    with pytest.raises(LrfaceError, match=message.replace("(", r"\(")) as err:
        CropOptions(**kwargs)
    assert "\n" not in str(err.value)


def test_central_pick_takes_the_face_nearest_the_centre():
    """The right half of t1.jpg holds three faces: pick="central" takes the one whose box
    centre is nearest the image centre (relative to its size), not the largest."""
    image = np.ascontiguousarray(read_image(PHOTOS / "t1.jpg")[:, 600:])
    h, w = image.shape[:2]
    faces = load_detector(DET).detect(image)
    assert len(faces) == 3
    cost = [
        np.hypot((f.box[0] + f.box[2]) / 2 - w / 2, (f.box[1] + f.box[3]) / 2 - h / 2)
        / np.sqrt(f.area)
        for f in faces
    ]
    central = prepare_face(image, CropOptions(detector=DET, pick="central"))
    largest = prepare_face(image, CropOptions(detector=DET))
    assert central.n_faces == largest.n_faces == 3
    assert central.face_index == int(np.argmin(cost)) and largest.face_index == 0
    assert central.face_index != 0  # the largest face is not the central one here
    assert np.array_equal(central.landmarks, faces[int(np.argmin(cost))].landmarks)


def _gradient(h: int, w: int) -> np.ndarray:
    """uint8 BGR (h, w, 3) colour ramps: no face at any threshold, padded or not."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x, y, (x + y) // 2], -1).astype(np.uint8)


def test_no_face_uses_the_template_framing():
    """No face: on_no_face="template" aligns the template landmarks at the LFW framing and
    flags the crop; "error" raises NoFaceError with the --no-detect hint."""
    noise = _gradient(250, 200)
    got = prepare_face(noise, dataset_photo_options(DET))
    lm = template_landmarks(250, 200)
    assert got.fallback and got.face is None and got.n_faces == 0
    assert np.array_equal(got.landmarks, lm) and got.landmarks.dtype == np.float32
    assert np.array_equal(got.crop, align_face(noise, lm, 112))
    x1, y1, side = fallback_square(250, 200)
    assert side == 90.0 and x1 == 55.0 and y1 == 80.0 + 7.5
    with pytest.raises(NoFaceError, match="--no-detect"):
        prepare_face(noise, CropOptions(detector=DET, pick="central"))


def test_small_faces_native_or_warped():
    """A face smaller than the crop: upscale="warp" is a straight warp to the size,
    "native" aligns at the face's own resolution and enlarges (the two differ)."""
    image = read_image(PHOTOS / "Abel_Pacheco_0001.jpg")
    small = cv2.resize(image, (80, 80), interpolation=cv2.INTER_AREA)
    warp = prepare_face(small, CropOptions(detector=DET, upscale="warp"))
    native = prepare_face(small, CropOptions(detector=DET))
    assert warp.face_size == native.face_size == native_face_size(warp.landmarks) < 112
    assert np.array_equal(warp.crop, align_face(small, warp.landmarks, 112))
    assert not np.array_equal(warp.crop, native.crop)


class _Recorder:
    """A real detector whose calls are recorded: (padded?, threshold) per call;
    ``padded_only``: what it finds on the unpadded image is withheld."""

    def __init__(self, detector, shape, padded_only=False):
        self.detector, self.shape, self.calls = detector, shape, []
        self.det_thresh, self.padded_only = detector.det_thresh, padded_only

    def detect(self, image, det_thresh=None):
        padded = image.shape != self.shape
        self.calls.append((padded, det_thresh))
        if self.padded_only and not padded:
            return []
        return self.detector.detect(image, det_thresh=det_thresh)


def test_retry_ladder_order_and_tight_crops():
    """Nothing found: four attempts, the padded copy last (default) or second
    (tight_crops); a face found on the padded copy comes back in the photo's coordinates."""
    noise = _gradient(120, 120)
    det = load_detector(DET)
    t0 = det.det_thresh
    for tight, order in ((False, [False, False, True, True]), (True, [False, True, False, True])):
        rec = _Recorder(det, noise.shape)
        assert central_candidates(noise, rec, tight) == []  # type: ignore[arg-type]
        assert [p for p, _ in rec.calls] == order
        assert sorted(t for _, t in rec.calls) == sorted([t0, t0, 0.1, 0.1])
    # a face found only on the padded copy comes back in the photo's own coordinates
    image = read_image(PHOTOS / "Abel_Pacheco_0001.jpg")
    direct = det.detect(image)[0].landmarks
    rec = _Recorder(det, image.shape, padded_only=True)
    found = central_candidates(image, rec, True)  # type: ignore[arg-type]
    assert rec.calls == [(False, t0), (True, t0)] and len(found) == 1
    # px (the pad is 125 px; the 500 px padded copy and the 250 px photo are seen on
    # canvases of different scale, 1.0 and 1.28, which moves a landmark by up to ~8 px)
    assert np.abs(found[0].landmarks - direct).max() < 12.0
