"""Faces as users hand them over: tight crops found at any size (retries), pre-cut crops read
by their crop mode, and the model chosen per face recorded (issue 27), on real faces."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

import lrface
from lrface.errors import LrfaceError
from lrface.faces.align import align_face
from lrface.faces.degrade import box_crop
from lrface.faces.detect import load_detector
from lrface.faces.find_face import PASSES, find_faces
from lrface.faces.pipeline import CropOptions, prepare_face
from lrface.io.images import read_image


@pytest.fixture(scope="module")
def photo_and_face(same_pair):
    img = read_image(same_pair[0])
    return img, load_detector("auto").detect(img)[0]


@pytest.mark.parametrize("size", [160, 200, 319, 400])
def test_tight_crop_found_at_any_size(photo_and_face, size):
    """The detector's own box (x1.0) cut out and resized to 160-400 px: a face filling the
    whole frame, missed by SCRFD's first pass; the padded retry finds it (reported), and the
    face found is the crop's subject (landmarks inside the crop, face filling most of it)."""
    img, face = photo_and_face
    crop = box_crop(img, face.box, margin=1.0, size=size)
    found = find_faces(crop)
    assert found.faces and found.found_by in PASSES
    assert found.tried[-1] == found.found_by
    lm = found.faces[0].landmarks
    assert (lm >= 0).all() and (lm <= size).all()
    assert np.sqrt(found.faces[0].area) > 0.5 * size
    prepared = prepare_face(crop)  # the one crop pipeline does the same search
    assert prepared.to_dict()["found_by"] == found.found_by
    assert prepared.crop_kind == "aligned-5pt"


def test_first_pass_alone_misses_a_tight_crop_the_retries_find(photo_and_face):
    """What the retries are for, on this real face: at 200 px and x1.0 the first pass alone
    finds nothing (as in issue 27), the full search finds the face."""
    img, face = photo_and_face
    crop = box_crop(img, face.box, margin=1.0, size=200)
    assert not find_faces(crop, retry=False).faces
    assert find_faces(crop).found_by != "image"


def _crops(img, face):
    """An aligned crop, an unaligned 200-px box crop and a faceless patch (uint8 BGR)."""
    rng = np.random.default_rng(0)
    faceless = cv2.GaussianBlur(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), (0, 0), 3)
    return [align_face(img, face.landmarks, 112), box_crop(img, face.box, 1.1, 200), faceless]


def test_crop_modes_per_crop(photo_and_face):
    """embed(detect=False): auto aligns where landmarks are found inside the crop and takes
    the box path elsewhere; aligned and box do what they say; the result says per crop which
    path and which model (box crops: the box model, lrface-box)."""
    crops = _crops(*photo_and_face)
    emb, info = lrface.embed(crops, detect=False, return_info=True)
    assert emb.shape == (3, 128)
    assert [i["crop"] for i in info] == ["aligned-5pt", "aligned-5pt", "box"]
    assert {i["crop_mode"] for i in info} == {"auto"}
    assert [i["model"] for i in info] == ["mobilefacenet-arcface", "mobilefacenet-arcface",
                                          "lrface-box"]  # fmt: skip
    assert "found_by" in info[1] and "found_by" not in info[2]
    # the box crop aligned inside matches the aligned crop far better than read as a box
    _, boxed = lrface.embed(crops[1:2], detect=False, crop_mode="box", return_info=True)
    assert boxed[0]["crop"] == "box" and boxed[0]["model"] == "lrface-box"
    _, given = lrface.embed(crops, detect=False, crop_mode="aligned", return_info=True)
    assert [i["crop"] for i in given] == ["given"] * 3
    forced = lrface.embed(crops[1:2], detect=False, model="lrface-mbf")
    box_emb = lrface.embed(crops[1:2], detect=False, crop_mode="box")
    aligned_emb = lrface.embed(crops[:1], detect=False, crop_mode="aligned", model="lrface-mbf")
    assert float(forced[0] @ aligned_emb[0]) > float(box_emb[0] @ aligned_emb[0])


def test_crop_mode_options_that_do_not_apply_are_refused():
    with pytest.raises(LrfaceError, match="--crop-mode box applies to pre-cut crops"):
        CropOptions(crop_mode="box")
    with pytest.raises(LrfaceError, match="--crop-mode"):
        CropOptions(detect=False, crop_mode="landmarks")
    with pytest.raises(LrfaceError, match="--detector"):
        CropOptions(detect=False, crop_mode="aligned", detector="yunet")
    assert CropOptions(detect=False, detector="yunet").crop_mode == "auto"  # used to search


def test_choose_model_rule():
    assert lrface.choose_model(20.0) == "lrface-mbf"
    assert lrface.choose_model(120.0) == "mobilefacenet-arcface"
    assert lrface.choose_model(120.0, "box") == "lrface-box"  # no landmarks: the box model
    assert lrface.choose_model(120.0, "given") == "mobilefacenet-arcface"


def test_embed_cli_records_the_model_per_face(tmp_path, same_pair):
    """`lrface embed` without --model: each face by the model verify would choose, the
    choice recorded per face in the .npz (face_models, face_crops) and the meta."""
    big = tmp_path / "a_big.png"
    small = tmp_path / "b_small.png"
    img = read_image(same_pair[1])
    cv2.imwrite(str(big), img)
    cv2.imwrite(str(small), cv2.resize(img, (60, 60), interpolation=cv2.INTER_AREA))
    out = tmp_path / "e.npz"
    cmd = [
        sys.executable,
        "-m",
        "lrface",
        "embed",
        str(big),
        str(small),
        "--out",
        str(out),
        "--quiet",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with np.load(out, allow_pickle=False) as z:
        assert z["face_models"].tolist() == ["mobilefacenet-arcface", "lrface-mbf"]
        assert z["face_crops"].tolist() == ["aligned-5pt", "aligned-5pt"]
        assert "per-face" in str(z["meta"])
        e = z["embeddings"]
    assert float(e[0] @ e[1]) > 0.3  # same face, two models, one space


@pytest.fixture(params=[False, True], ids=["default", "fused"])
def fuse(request, monkeypatch):
    """The routing as shipped (``FUSE_GIVEN`` as the rule of docs/experiments/given-fusion.md
    chose: off) and with the aligned+box reading switched on (the candidate the rule tested)."""
    from lrface.faces import routing

    if request.param:
        monkeypatch.setattr(routing, "FUSE_GIVEN", True)
    return routing.FUSE_GIVEN


def test_the_shipped_routing_is_the_rules_outcome():
    """docs/experiments/given-fusion.md: the fused reading failed its rule on the LFW
    validation folds, so small given crops keep the aligned student alone."""
    from lrface.faces.routing import FUSE_GIVEN, fuses_given

    assert FUSE_GIVEN is False and not fuses_given(20.0)


def test_small_given_crop_read_both_ways_is_the_normalised_mean(photo_and_face, fuse):
    """A small pre-cut box crop (the detector's box, 1.1x, 24 px) in the default crop mode:
    its landmarks are found inside it; read both ways (fusion on) -- aligned by them for
    lrface-mbf and whole for lrface-box -- its embedding is the L2-normalised mean of the two
    single paths, else the aligned path alone; a large one keeps the teacher alone."""
    from lrface.faces.routing import FUSED_MODEL

    img, face = photo_and_face
    small = box_crop(img, face.box, 1.1, 24)
    emb, info = lrface.embed([small], detect=False, return_info=True)
    assert info[0]["crop_mode"] == "auto" and info[0]["face_size_px"] < 64
    want = ("aligned+box", FUSED_MODEL) if fuse else ("aligned-5pt", "lrface-mbf")
    assert (info[0]["crop"], info[0]["model"]) == want
    aligned = lrface.embed([small], detect=False, model="lrface-mbf")  # aligned crop alone
    boxed = lrface.embed([small], detect=False, crop_mode="box")  # whole crop, lrface-box
    mean = aligned[0] + boxed[0]
    single = mean / np.linalg.norm(mean) if fuse else aligned[0]
    np.testing.assert_allclose(emb[0], single, atol=1e-5)
    assert float(aligned[0] @ boxed[0]) < 0.999  # two different views, not one
    _, big = lrface.embed([box_crop(img, face.box, 1.1, 200)], detect=False, return_info=True)
    assert (big[0]["crop"], big[0]["model"]) == ("aligned-5pt", "mobilefacenet-arcface")


def test_fused_faces_take_the_aligned_students_card():
    """The name recorded for a face read both ways, its threshold and the rule."""
    from lrface.faces.routing import FUSED_MODEL, ModelRouter, choose_model, probe_threshold

    assert FUSED_MODEL == "lrface-mbf+lrface-box"
    assert choose_model(20.0, "aligned+box") == FUSED_MODEL
    assert ModelRouter().embedder(FUSED_MODEL).name == "lrface-mbf"
    teacher = "mobilefacenet-arcface"
    assert probe_threshold(FUSED_MODEL, teacher, 0.3) == probe_threshold("lrface-mbf", teacher, 0.3)
    with pytest.raises(LrfaceError, match="box crop"):
        ModelRouter().embed([np.zeros((112, 112, 3), np.uint8)], [20.0], ["aligned+box"])


def test_verify_and_embed_cli_record_the_path_of_small_given_crops(tmp_path, same_pair, fuse):
    """Two small pre-cut box crops (24 px) of one person: verify and `lrface embed
    --no-detect` record per face the path and model (aligned+box and both students when
    fusion is on), and verify's answer is the same person."""
    from lrface.cli.main import main
    from lrface.faces.routing import FUSED_MODEL

    paths = []
    for i, src in enumerate(same_pair):
        img = read_image(src)
        face = load_detector("auto").detect(img)[0]
        paths.append(tmp_path / f"s{i}.png")
        cv2.imwrite(str(paths[-1]), box_crop(img, face.box, 1.1, 24))
    res = lrface.verify(*paths, detect=False)
    crop, model = ("aligned+box", FUSED_MODEL) if fuse else ("aligned-5pt", "lrface-mbf")
    assert [im["crop"] for im in res.images] == [crop] * 2
    assert list(res.models) == [model] * 2 and "lrface-mbf card" in res.threshold_from
    assert res.same
    out = tmp_path / "e.npz"
    assert main(["embed", *map(str, paths), "--no-detect", "--out", str(out), "--quiet"]) == 0
    with np.load(out, allow_pickle=False) as z:
        assert z["face_crops"].tolist() == [crop] * 2
        assert z["face_models"].tolist() == [model] * 2
        np.testing.assert_allclose(
            z["embeddings"][0], lrface.embed(paths[:1], detect=False)[0], atol=1e-5
        )
