"""`lrface adapt --method degradation-match`: the camera estimate, and the command end to end.

Real faces only: the LFW photos of tests/data (centre crops as aligned faces for the
estimator; whole photos, reduced and JPEG-compressed, as a "camera" folder for the
command), the shipped lrface-tiny-16 weights, the teacher and the shipped test-identity
guard.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import PHOTOS, REPO

from lrface.cli.main import main
from lrface.distill.camera_estimate import N_FEATURES, estimate_camera, summaries
from lrface.faces.degrade import RealisticDraw, apply_realistic

LFW_PHOTOS = sorted(PHOTOS.glob("*_000?.jpg"))  # six 250x250 LFW photos, four people


def _faces() -> np.ndarray:
    """(24, 112, 112, 3) uint8 BGR: two centre crops of each LFW photo and their mirrors
    (LFW deep-funneled photos have the face in the centre)."""
    out = []
    for p in LFW_PHOTOS:
        img = cv2.imread(str(p))
        for dy in (0, 8):
            c = cv2.resize(
                img[68 + dy : 182 + dy, 68:182], (112, 112), interpolation=cv2.INTER_AREA
            )
            out += [c, np.ascontiguousarray(c[:, ::-1])]
    return np.stack(out)


def _blur_var(d: RealisticDraw) -> float:
    """Variance (px^2) of the blur: Gaussian sigma^2 + the motion segment's (L - 1)^2 / 12."""
    return d.gauss_sigma**2 + (d.motion_length - 1.0) ** 2 / 12.0


def _noise_mid_grey(d: RealisticDraw) -> float:
    return float(np.sqrt(d.read_std**2 + d.shot_gain * 128.0))


@pytest.mark.parametrize(
    "true",
    [
        RealisticDraw(0.75, 1.0, 0.0, 3.0, 0.135, 40),
        RealisticDraw(0.45, 2.0, 45.0, 1.0, 0.02, 30),
    ],
    ids=["blur-noise-q40", "motion-q30"],
)
def test_estimator_recovers_a_known_camera(true):
    faces = _faces()
    rng = np.random.default_rng(7)  # another noise draw than the estimator's reference
    small = [cv2.resize(f, (16, 16), interpolation=cv2.INTER_AREA) for f in faces]
    camera = np.stack([apply_realistic(f, true, rng) for f in small])
    est = estimate_camera(camera, faces, side=16).draw
    # JPEG exactly on this grid; blur and noise within a tolerance (with 24 faces, Gaussian
    # and motion blur of the same total spread are hard to tell apart, so their sum counts)
    assert est.jpeg_quality == true.jpeg_quality, est
    assert abs(_blur_var(est) - _blur_var(true)) <= 0.15, est
    assert abs(_noise_mid_grey(est) - _noise_mid_grey(true)) <= 1.5, est
    # and the clean faces are not taken for this camera: the estimate depends on the faces
    clean = estimate_camera(np.stack(small), faces, side=16).draw
    assert clean != est


def test_summaries_see_jpeg_and_blur():
    faces = np.stack([cv2.resize(f, (16, 16), interpolation=cv2.INTER_AREA) for f in _faces()])
    sharp = summaries(faces)
    blurred = summaries(np.stack([cv2.GaussianBlur(f, (0, 0), 0.9) for f in faces]))
    hf = [8 * u + v for u in range(8) for v in range(8) if u + v >= 8]  # high-frequency DCT
    assert sharp.shape == (24, N_FEATURES) == (24, 132) and sharp.dtype == np.float64
    assert blurred[:, hf].mean() < sharp[:, hf].mean() - 1.0, "blur lowers HF log power"
    jpeg = np.stack([cv2.imdecode(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 30])[1], 1)
                     for f in faces])  # fmt: skip
    zero_share = summaries(jpeg)[:, 64 + np.array(hf)].mean()
    assert zero_share > sharp[:, 64 + np.array(hf)].mean() + 0.1, "JPEG zeroes HF coefficients"
    with pytest.raises(ValueError, match="multiple of 8"):
        summaries(faces[:, :12, :12])


def _folder(dest: Path, photos: list[Path], side: int, quality: int) -> Path:
    """Each photo, its mirror and a shifted copy, reduced to ``side`` px, JPEG ``quality``."""
    dest.mkdir(parents=True)
    for p in photos:
        img = cv2.imread(str(p))
        for tag, v in (("a", img), ("m", img[:, ::-1]), ("s", np.roll(img, 6, axis=1))):
            small = cv2.resize(np.ascontiguousarray(v), (side, side), interpolation=cv2.INTER_AREA)
            cv2.imwrite(
                str(dest / f"{p.stem}_{tag}.jpg"), small, [cv2.IMWRITE_JPEG_QUALITY, quality]
            )
    return dest


def test_adapt_degradation_match_end_to_end(tmp_path, capsys):
    cam = _folder(tmp_path / "cam1", LFW_PHOTOS, 100, 40)  # 18 photos of a "camera"
    # HR faces: Abel Pacheco and Colin Powell (LFW train identities) and George W Bush (an
    # LFW test-split identity: the guard must drop his two faces as distill does)
    keep = [p for p in LFW_PHOTOS if p.name.startswith(("Abel", "Colin"))]
    hr = _folder(tmp_path / "hr", [*keep, PHOTOS / "George_W_Bush_0001.jpg"], 250, 95)
    out = tmp_path / "runs" / "cam1"
    args = ["adapt", "--data", str(cam), "--method", "degradation-match",
            "--hr-data", f"unlabelled:{hr}", "--steps", "1", "--batch-size", "4",
            "--out", str(out), "--quiet"]  # fmt: skip
    rc = main(args)
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["method"] == "degradation-match" and "JPEG q" in res["camera_estimate"]
    card = json.loads((out / "lrface-tiny-16-adapted.json").read_text())
    ad = card["adapted"]
    assert ad["method_name"] == "degradation-match" and ad["faces"] >= 16
    assert set(ad["camera_estimate"]) >= {"gauss_sigma", "read_std", "jpeg_quality", "distance"}
    assert "aligned crops" in ad["camera_estimate"]["input"]  # 100x100 photos, not 16 px crops
    assert ad["finetune"]["steps"] == 1 and ad["loss_log"][-1]["step"] == 1
    src = ad["hr_data"]["sources"][0]
    assert src["kind"] == "unlabelled" and src["test_guard_dropped"] == 3, src  # his 3 copies
    assert ad["hr_data"]["images"] == 3 * len(keep)
    base = json.loads(((REPO / "weights") / "lrface-tiny-16.json").read_text())
    assert card["threshold"] == base["threshold"] and "no threshold" in card["threshold_note"]
    new = torch.load(out / "lrface-tiny-16-adapted.pt", weights_only=True)
    old = torch.load((REPO / "weights") / "lrface-tiny-16.pt", weights_only=True)
    assert any(not torch.equal(new[k], old[k]) for k in new if k.endswith("weight"))  # trained

    a, b = PHOTOS / "George_W_Bush_0001.jpg", PHOTOS / "George_W_Bush_0002.jpg"
    rc = main(
        ["verify", str(a), str(b), "--model", str(out / "lrface-tiny-16-adapted.pt"), "--json"]
    )
    verdict = json.loads(capsys.readouterr().out)
    assert rc in (0, 1) and verdict["threshold"] == pytest.approx(base["threshold"])


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--method", "degradation-match"], "needs --hr-data"),
        (["--hr-data", "PHOTOS"], "only by --method degradation-match"),
        (["--steps", "5"], "only by --method degradation-match"),
        (["--method", "degradation-match", "--hr-data", "unlabelled:MISSING"], "MISSING"),
        (["--method", "degradation-match", "--hr-data", "PHOTOS", "--steps", "0"], "--steps 0"),
        (
            ["--method", "degradation-match", "--hr-data", "PHOTOS", "--model", "lrface-mbf"],
            "takes 112 px",
        ),
    ],
    ids=["no-hr-data", "hr-data-with-bn", "steps-with-bn", "missing-hr-data", "steps-0", "mbf"],
)
def test_adapt_bad_options_one_line_exit_2(tmp_path, capsys, extra, needle):
    extra = [str(PHOTOS) if e == "PHOTOS" else e for e in extra]
    extra = [e.replace("MISSING", str(tmp_path / "nowhere")) for e in extra]
    needle = needle.replace("MISSING", "nowhere")
    out = tmp_path / "out"
    cam = _folder(tmp_path / "cam", LFW_PHOTOS, 100, 40)
    rc = main(["adapt", "--data", str(cam), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().count("\n") == 0 and needle in err and not out.exists(), err


def test_camera_pixels_reads_small_crop_files_themselves(tmp_path):
    from lrface.distill.adapt import camera_pixels
    from lrface.distill.faces import FaceSet

    faces = _faces()[:6]
    small = [cv2.resize(f, (16, 16), interpolation=cv2.INTER_AREA) for f in faces]
    for i, f in enumerate(small):
        cv2.imwrite(str(tmp_path / f"{i}.png"), f)
    paths = [f"{i}.png" for i in range(6)]
    got, read = camera_pixels(FaceSet(tmp_path, paths, [""] * 6, faces), 16)
    assert np.array_equal(got, np.stack(small)) and "own pixels" in read
    cv2.imwrite(str(tmp_path / "5.png"), cv2.resize(faces[5], (20, 20)))  # one is not 16x16
    got, read = camera_pixels(FaceSet(tmp_path, paths, [""] * 6, faces), 16)
    assert got.shape == (6, 112, 112, 3) and "aligned crops" in read
