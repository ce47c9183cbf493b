"""`lrface adapt`: batch-norm statistics of a student re-estimated on one camera's faces.

Real faces: 20 LFW train-split photos made into a "camera" (reduced to 100x100, JPEG
quality 40) in a temporary folder; the shipped lrface-tiny-16 torch weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest
import torch
from conftest import LFW_IMAGES, LFW_ROOT, PHOTOS, REPO

from lrface.cli.main import main
from lrface.datasets.lfw import LFW


def _camera(dest: Path, n: int) -> Path:
    dest.mkdir(parents=True)
    for rel in LFW(LFW_ROOT).train_images()[:: 6922 // n][:n]:
        img = cv2.resize(
            cv2.imread(str(LFW_IMAGES / rel)), (100, 100), interpolation=cv2.INTER_AREA
        )
        cv2.imwrite(str(dest / Path(rel).name), img, [cv2.IMWRITE_JPEG_QUALITY, 40])
    return dest


def test_adapt_re_estimates_batch_norm_and_writes_a_usable_model(tmp_path, capsys):
    cam = _camera(tmp_path / "cam1", 20)
    out = tmp_path / "runs" / "cam1"
    rc = main(
        ["adapt", "--data", str(cam), "--model", "lrface-tiny-16", "--out", str(out), "--quiet"]
    )
    assert rc == 0, capsys.readouterr().err
    card = json.loads((out / "lrface-tiny-16-adapted.json").read_text())
    base = json.loads(((REPO / "weights") / "lrface-tiny-16.json").read_text())
    assert card["adapted"]["base_model"] == "lrface-tiny-16"
    assert card["adapted"]["base_sha256"] == base["torch_weights"]["sha256"]
    assert card["adapted"]["faces"] + card["adapted"]["no_face_skipped"] == 20
    assert card["adapted"]["faces"] >= 16
    assert card["threshold"] == base["threshold"] and "no threshold" in card["threshold_note"]
    new = torch.load(out / "lrface-tiny-16-adapted.pt", weights_only=True)
    old = torch.load((REPO / "weights") / "lrface-tiny-16.pt", weights_only=True)
    means = [k for k in new if k.endswith("running_mean")]
    assert means and all(not torch.equal(new[k], old[k]) for k in means)  # re-estimated
    learned = [k for k in new if not k.endswith(("running_mean", "running_var", "batches_tracked"))]
    assert all(torch.equal(new[k], old[k]) for k in learned)  # weights untouched

    capsys.readouterr()
    a, b = PHOTOS / "George_W_Bush_0001.jpg", PHOTOS / "George_W_Bush_0002.jpg"
    pt = str(out / "lrface-tiny-16-adapted.pt")
    rc = main(["verify", str(a), str(b), "--model", pt, "--json"])
    res = json.loads(capsys.readouterr().out)
    assert rc in (0, 1) and res["threshold"] == pytest.approx(base["threshold"])
    assert "card" in res["threshold_from"]

    # deterministic: the same faces give the same statistics
    rc = main(["adapt", "--data", str(cam), "--out", str(tmp_path / "again"), "--quiet"])
    again = torch.load(tmp_path / "again" / "lrface-tiny-16-adapted.pt", weights_only=True)
    assert rc == 0 and all(torch.equal(again[k], new[k]) for k in new)


def test_adapt_refuses_too_few_faces_and_non_students_before_any_work(tmp_path, capsys):
    few = tmp_path / "few"
    few.mkdir()
    for f in sorted(PHOTOS.glob("*_000*.jpg"))[:3]:
        shutil.copy(f, few / f.name)
    out = tmp_path / "out"
    rc = main(["adapt", "--data", str(few), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "at least 16" in err and not out.exists(), err
    for model, needle in (("mobilefacenet-arcface", "a student"), ("lrface-mbf", "folded")):
        rc = main(["adapt", "--data", str(few), "--model", model, "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and needle in err and not out.exists(), err
