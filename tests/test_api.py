"""The Python API: verify/embed/detect on real faces; model choice by face size."""

import cv2
import numpy as np
import pytest
from conftest import needs_shared

import lrface
from lrface.faces.degrade import Degradation, degrade


def test_verify_fields_and_decision(same_pair, diff_pair):
    res = lrface.verify(*same_pair, model="mobilefacenet-arcface")
    assert res.same is True and res.models == ("mobilefacenet-arcface",) * 2
    assert set(res.to_dict()) >= {"same", "similarity", "threshold", "models", "images"}
    assert lrface.verify(*diff_pair, model="mobilefacenet-arcface").same is False


def test_embed_pre_cut_crops_of_any_size(aligned_crop):
    crops = [degrade(aligned_crop, Degradation(size=s)) for s in (8, 12, 16, 24, 32)] + [
        aligned_crop
    ]
    emb = lrface.load_embedder("mobilefacenet-arcface")
    out = lrface.embed(crops, model=emb, detect=False)
    assert out.shape == (6, 128) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # the 32-px copy is still close to the original; the 8-px one much less so
    assert out[4] @ out[5] > out[0] @ out[5]


def test_detect_api(multi_face_image):
    faces = lrface.detect(multi_face_image)
    assert len(faces) == 6
    assert set(faces[0]) == {"box", "landmarks", "score", "found_by", "found_with"}
    assert faces[0]["found_by"] == "image"  # found by the first pass: no retry ran


def test_default_model_is_chosen_per_face(same_pair, diff_pair):
    """HR face -> teacher, small face -> lrface-mbf (as every headline figure is measured),
    with the threshold calibrated for that mix; --model forces one model for both."""
    assert lrface.choose_model(120.0) == "mobilefacenet-arcface"
    assert lrface.choose_model(20.0) == "lrface-mbf"
    img = cv2.imread(str(same_pair[1]))
    tiny = cv2.resize(img, (40, 40), interpolation=cv2.INTER_AREA)
    res = lrface.verify(same_pair[0], tiny)
    assert res.models == ("mobilefacenet-arcface", "lrface-mbf") and res.same
    assert [im["model"] for im in res.images] == list(res.models)
    assert [im["crop"] for im in res.images] == ["aligned-5pt"] * 2  # small faces too
    assert res.images[1]["face_size_px"] < 64 < res.images[0]["face_size_px"]
    card = lrface.models.registry.get_spec("lrface-mbf")
    assert res.threshold == card.threshold_vs_teacher and "vs" in res.threshold_from
    other = cv2.resize(cv2.imread(str(diff_pair[1])), (40, 40), interpolation=cv2.INTER_AREA)
    assert not lrface.verify(same_pair[0], other).same
    forced = lrface.verify(same_pair[0], tiny, model="lrface-mbf")
    assert forced.models == ("lrface-mbf", "lrface-mbf") and forced.threshold == card.threshold


def test_face_index_per_image(multi_face_image, lfw_image):
    """A face picked in a group photo against a portrait: --face-index1 applies to image 1."""
    res = lrface.verify(multi_face_image, lfw_image, face_index1=3, model="mobilefacenet-arcface")
    assert res.images[0]["face_index"] == 3 and res.images[1]["face_index"] == 0
    with pytest.raises(lrface.LrfaceError, match="out of range"):
        lrface.verify(lfw_image, multi_face_image, face_index2=6)


@pytest.mark.parametrize(
    "bad",
    [[None], ["not an array"], [np.zeros((8, 8), np.float32)], [np.full((16, 16, 3), np.nan)]],
)
def test_embed_crops_refuses_bad_crops_with_lrface_error(bad):
    emb = lrface.load_embedder("lrface-tiny-16")
    with pytest.raises(lrface.LrfaceError, match="crop 0"):
        emb.embed_crops(bad)


def test_embed_refuses_a_single_path(lfw_image):
    with pytest.raises(lrface.LrfaceError, match="wrap a single image in a list"):
        lrface.embed(str(lfw_image))


def test_nan_image_is_refused_not_scored(aligned_crop):
    nan = np.full((32, 32, 3), np.nan, np.float32)
    with pytest.raises(lrface.LrfaceError):
        lrface.verify(nan, aligned_crop, detect=False, model="lrface-mbf")


@needs_shared
def test_benchmark_student_hr_side_is_its_teacher(tmp_path, capsys):
    """--hr-model auto (default): hr-lr compares teacher HR embeddings with student LR ones,
    while hr-hr stays student vs student."""
    import json

    from conftest import LFW_ROOT

    from lrface.cli.main import main

    rc = main(
        [
            "benchmark",
            "--protocol",
            "lfw",
            "--data",
            str(LFW_ROOT),
            "--split",
            "test",
            "--mode",
            "hr-hr,hr-lr",
            "--sizes",
            "12",
            "--model",
            "lrface-mbf",
            "--max-pairs-per-fold",
            "20",
            "--out",
            str(tmp_path),
            "--json",
            "--no-progress",
        ]
    )
    assert rc == 0
    res = json.loads((tmp_path / "results.json").read_text())
    rows = {r["mode"]: r for r in res["results"]}
    assert rows["hr-lr"]["hr_model"] == "mobilefacenet-arcface"
    assert rows["hr-hr"]["hr_model"] is None
    # the student at 12 px beats the teacher's ~72 % by a wide margin even on 100 pairs
    assert rows["hr-lr"]["metrics"]["accuracy_mean"] > 0.85
    capsys.readouterr()


@pytest.mark.parametrize(
    "kwargs, exc, needle",
    [
        (
            {"threshold": "0.3"},
            TypeError,
            "threshold must be a number between -1 and 1, got str '0.3'",
        ),
        ({"threshold": True}, TypeError, "got bool True"),  # not taken as 1.0
        ({"threshold": float("nan")}, ValueError, "got nan"),
        ({"threshold": 1.5}, ValueError, "got 1.5"),
        (
            {"det_thresh": "0.5"},
            TypeError,
            "--det-thresh must be a number between 0 and 1 (exclusive)",
        ),
        ({"face_index": True}, TypeError, "--face-index must be an integer >= 0, got bool"),
        ({"face_index1": -1}, ValueError, "--face-index must be an integer >= 0, got -1"),
        ({"detect": "no"}, TypeError, "detect must be True or False, got 'no'"),
        ({"model": 0}, TypeError, "model must be a model name or a card path, got int 0"),
        ({"model": ""}, ValueError, "model must be a model name or a card path, got ''"),
    ],
)
def test_verify_scalar_arguments_are_validated(same_pair, kwargs, exc, needle):
    """Issue 29 (9): a wrong type is a TypeError, a bad value a ValueError -- both
    LrfaceError, one line naming the argument; never numpy's error or a silent cast."""
    with pytest.raises(exc) as info:
        lrface.verify(*same_pair, **kwargs)
    assert isinstance(info.value, lrface.LrfaceError) and "\n" not in str(info.value)
    assert needle in str(info.value)


def test_verify_valid_numeric_thresholds_are_used(same_pair):
    """numpy and int thresholds are real numbers: used as given (1 -> nobody is the same)."""
    assert lrface.verify(*same_pair, threshold=np.float32(-1.0)).same is True
    res = lrface.verify(*same_pair, threshold=1)
    assert res.same is False and res.threshold == 1.0 and res.threshold_from == "--threshold"


@pytest.mark.parametrize(
    "image, exc, needle",
    [
        (np.zeros((0, 0), np.uint8), ValueError, "image is empty"),
        (np.zeros((0, 5, 3), np.uint8), ValueError, "image is empty"),
        (np.zeros((64, 64, 2), np.uint8), ValueError, "unsupported image shape"),
        (np.full((64, 64, 3), 40000, np.uint16), TypeError, "unsupported dtype uint16"),
        (np.full((64, 64, 3), 40, np.int64), TypeError, "unsupported dtype int64"),
        (np.full((64, 64), 300.0, np.float32), ValueError, "outside 0..255"),
        (np.zeros((64, 64, 3), bool), TypeError, "unsupported dtype bool"),
    ],
)
def test_bad_image_arrays_get_a_type_or_value_message(same_pair, image, exc, needle):
    """Issue 29 (9): an empty array was a cv2.error, a uint16 one 'no face found'; now one
    line naming the array and the fix, through verify, detect and embed alike."""
    for call in (
        lambda: lrface.verify(image, same_pair[0]),
        lambda: lrface.detect(image),
        lambda: lrface.embed([image], detect=False),
    ):
        with pytest.raises(exc, match=needle) as info:
            call()
        assert isinstance(info.value, lrface.LrfaceError) and "\n" not in str(info.value)
    assert "(img >> 8).astype(np.uint8)" in str(info.value) or image.dtype != np.uint16


@pytest.mark.parametrize("model", [None, "lrface-tiny-16", "lrface-mbf"])
def test_verify_and_embed_take_one_road_from_a_face_to_a_model(same_pair, model):
    """verify's similarity is the dot product of the embeddings ``lrface.embed`` gives the
    same two photos (a forced model of another input side, and the per-face choice
    alike), and each face's crop is the one embed cuts for that model."""
    from lrface.faces.pipeline import CropOptions, prepare_face
    from lrface.faces.routing import crop_for
    from lrface.models.loader import load_embedder

    result, faces = lrface.api.verify_detailed(*same_pair, model=model)
    emb, info = lrface.embed(list(same_pair), model=model, return_info=True)
    assert [i["model"] for i in info] == list(result.models)
    assert result.similarity == round(float(np.dot(emb[0], emb[1])), 4)
    side = 112 if model is None else load_embedder(model).input_size
    for face, path in zip(faces, same_pair):
        assert face.crop.shape == (side, side, 3)
        assert np.array_equal(face.crop, prepare_face(path, CropOptions(size=side)).crop)
    tiny = load_embedder("lrface-tiny-16")
    assert crop_for(tiny, faces[0]).shape == (16, 16, 3)
    if side == 16:  # cut for this model: given as it is
        assert crop_for(tiny, faces[0]) is faces[0].crop


def test_size_rule_boundary_on_a_real_face(same_pair):
    """The size rule (``STUDENT_BELOW_PX``, measured in docs/experiments/
    realistic-aligned-views.md) on a real photo shrunk so its face lands just below and
    just above the boundary: the student takes the smaller, the teacher the larger."""
    from lrface.faces.routing import STUDENT_BELOW_PX

    img = cv2.imread(str(same_pair[0]))
    full = lrface.verify(img, img, model="mobilefacenet-arcface").images[0]["face_size_px"]
    sides = {}
    for target in (STUDENT_BELOW_PX * 0.88, STUDENT_BELOW_PX * 1.15):
        side = int(round(img.shape[1] * target / full))
        small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
        face = lrface.verify(img, small).images[1]
        sides[face["model"]] = face["face_size_px"]
    assert set(sides) == {"lrface-mbf", "mobilefacenet-arcface"}
    assert sides["lrface-mbf"] < STUDENT_BELOW_PX <= sides["mobilefacenet-arcface"]
