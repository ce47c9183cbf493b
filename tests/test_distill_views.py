"""Training views cut as deployment cuts small faces (issue 21): detector boxes, jittered,
and the realistic degradation, as options of ``lrface distill``."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from conftest import LFW_IMAGES, LFW_ROOT

from lrface.cli.main import main
from lrface.datasets.lfw import LFW
from lrface.distill.views import CONTEXT, CONTEXT_SIDE, BoxJitter, box_view, read_as_given
from lrface.faces.degrade import BOX_HR_SIDE, BOX_MARGIN, box_crop
from lrface.faces.detect import load_detector
from lrface.io.images import read_image

NO_JITTER = BoxJitter(center_sd=0.0, log_scale_mean=0.0, log_scale_sd=0.0)


@pytest.fixture(scope="module")
def photo_and_box():
    image = read_image(LFW_IMAGES / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg")
    faces = load_detector("scrfd-2.5g").detect(image)
    return image, faces[0].box


def test_unjittered_box_view_is_the_evaluators_box_crop(photo_and_box):
    """With no jitter a training box view is the crop ``--probe-crop box`` evaluates."""
    image, box = photo_and_box
    context = box_crop(image, box, BOX_MARGIN * CONTEXT, CONTEXT_SIDE)
    view = box_view(context, NO_JITTER, np.random.default_rng(0))
    probe = box_crop(image, box)
    assert view.shape == probe.shape == (BOX_HR_SIDE, BOX_HR_SIDE, 3)
    assert view.dtype == np.uint8
    assert np.abs(view.astype(int) - probe).mean() < 4.0


def test_jitter_moves_the_box_as_measured(photo_and_box):
    image, box = photo_and_box
    context = box_crop(image, box, BOX_MARGIN * CONTEXT, CONTEXT_SIDE)
    rng = np.random.default_rng(1)
    draws = np.array([BoxJitter().sample(rng) for _ in range(4000)])
    assert abs(draws[:, 0].std() - 0.025) < 0.003 and abs(draws[:, 1].mean()) < 0.003
    assert abs(np.log(draws[:, 2]).mean() + 0.04) < 0.005
    assert np.abs(draws[:, :2]).max() <= 0.1
    # a shifted box is a different crop; the same generator state gives the same crop
    a = box_view(context, BoxJitter(center_sd=0.08), np.random.default_rng(2))
    b = box_view(context, BoxJitter(center_sd=0.08), np.random.default_rng(2))
    still = box_view(context, NO_JITTER, np.random.default_rng(2))
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - still).mean() > 3.0


def test_distill_with_box_and_realistic_views_on_a_folder(tmp_path):
    """A plain labelled folder trains with --p-box 1 --p-realistic 1: every face gets a
    detector box, the card says so, and the options are recorded."""
    lfw = LFW(LFW_ROOT)
    names = sorted({r.split("/")[0] for r in lfw.train_images()})[:6]
    root = tmp_path / "faces"
    for name in names:
        shutil.copytree(LFW_IMAGES / name, root / name)
    n = sum(len(list((root / name).iterdir())) for name in names)
    args = f"--student lrface-tiny-16 --epochs 1 --batch-size 4 --width 16 --blocks 1 \
        --head-channels 64 --loss kd --threads 1 --quiet --p-box 1 --p-realistic 1 \
        --calib-identities 0 --out {tmp_path / 'run'}"
    rc = main(["distill", "--data", str(root), "--val-sizes", "", *args.split()])
    assert rc == 0
    card = json.loads((tmp_path / "run" / "lrface-tiny-16.json").read_text())
    views = card["data"]["box_views"]
    assert views["faces"] == card["data"]["images"] == n
    assert views["faces_with_box"] == n and views["margin"] == BOX_MARGIN
    assert views["jitter"]["center_sd"] == BoxJitter().center_sd
    assert card["training"]["p_box"] == 1.0 and card["training"]["p_realistic"] == 1.0
    assert np.isfinite(card["history"][0]["loss_kd"])


def test_given_view_is_what_crop_mode_auto_reads(photo_and_box):
    """A --p-given view of a reduced box crop is the crop ``embed --no-detect`` (crop mode
    auto) hands the model: aligned by the landmarks found inside the small crop."""
    from lrface.faces.pipeline import CROP_ALIGNED, prepare_face

    image, box = photo_and_box
    lr = cv2.resize(box_crop(image, box), (16, 16), interpolation=cv2.INTER_AREA)
    view = read_as_given(lr, 112)
    face = prepare_face(lr, detect=False)
    assert face.crop_kind == CROP_ALIGNED and view.shape == (112, 112, 3)
    assert np.array_equal(view, face.crop)
    # a crop in which no face is found stays the reduced box (deployment's box path)
    grey = np.full((16, 16, 3), 128, np.uint8)
    assert read_as_given(grey, 112) is grey


def test_distill_with_given_views_on_a_folder(tmp_path):
    """--p-given trains on box crops read as pre-cut crops, recorded in the card."""
    lfw = LFW(LFW_ROOT)
    names = sorted({r.split("/")[0] for r in lfw.train_images()})[:6]
    root = tmp_path / "faces"
    for name in names:
        shutil.copytree(LFW_IMAGES / name, root / name)
    args = f"--student lrface-tiny-16 --epochs 1 --batch-size 4 --width 16 --blocks 1 \
        --head-channels 64 --loss kd --threads 1 --quiet --p-box 0.5 --p-given 0.5 \
        --sizes 12-16 --calib-identities 0 --out {tmp_path / 'run'}"
    rc = main(["distill", "--data", str(root), "--val-sizes", "", *args.split()])
    assert rc == 0
    card = json.loads((tmp_path / "run" / "lrface-tiny-16.json").read_text())
    assert card["training"]["p_given"] == 0.5 and card["data"]["box_views"]["faces_with_box"]
    assert np.isfinite(card["history"][0]["loss_kd"])


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--p-box", "1.5"], "--p-box 1.5: a probability in [0, 1]"),
        (["--p-given", "0.6", "--p-box", "0.5"], "--p-box 0.5 + --p-given 0.6"),
        (["--p-given", "0.5", "--targets", "online"], "--p-given 0.5"),
        (["--p-realistic", "0.5", "--targets", "online"], "--p-realistic 0.5"),
    ],
)
def test_bad_view_options_are_one_line_errors(tmp_path, capsys, flags, needle):
    rc = main(
        ["distill", "--data", str(LFW_ROOT), "--out", str(tmp_path / "r"), "--quiet", *flags]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0]
