"""A usable model from a user's labelled folder, and the cheap checks that come first.

Real faces: labelled folders made of LFW **train**-split identities (never the test
split) copied into a temporary folder; a temporary, empty crop cache shows that a refused
run aligned nothing.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from conftest import LFW_IMAGES, LFW_ROOT, PHOTOS

from lrface.cli.main import main
from lrface.datasets.lfw import LFW
from lrface.distill import holdout

TINY = "--student lrface-tiny-16 --width 32 --blocks 1 --head-channels 256 --threads 1"


def _folder(root: Path, n_ids: int, per_id: int = 3, skip: int = 0) -> list[str]:
    """``root/<identity>/<photos>``: ``n_ids`` LFW train identities with >= ``per_id``
    photos, ``per_id`` photos each; returns the identities."""
    lfw = LFW(LFW_ROOT)
    counts = Counter(r.split("/")[0] for r in lfw.train_images())
    names = [k for k in sorted(counts) if counts[k] >= per_id][skip : skip + n_ids]
    for name in names:
        (root / name).mkdir(parents=True)
        for f in sorted((LFW_IMAGES / name).iterdir())[:per_id]:
            shutil.copy(f, root / name / f.name)
    return names


def test_cheap_checks_refuse_before_any_alignment_and_leave_no_out_folder(
    tmp_path, monkeypatch, capsys
):
    """`distill` on 3 photos refuses at once (one line, exit 2), nothing is aligned (the
    crop cache stays empty: no LFW either) and no --out folder is left; a --out under a
    file is refused the same way."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LRFACE_CACHE", str(cache))
    photos = tmp_path / "photos"
    photos.mkdir()
    for f in sorted(PHOTOS.glob("*_000*.jpg"))[:3]:
        shutil.copy(f, photos / f.name)
    out = tmp_path / "run"
    rc = main(["distill", "--data", f"unlabelled:{photos}", "--out", str(out), *TINY.split()])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert "3 images listed" in err and "fewer than one batch of 64" in err
    assert not out.exists()
    assert not cache.exists() or not any(cache.iterdir())  # nothing aligned, nothing embedded

    (tmp_path / "a.jpg").write_bytes((PHOTOS / "Aaron_Eckhart_0001.jpg").read_bytes())
    bad = tmp_path / "a.jpg" / "run"
    rc = main(["distill", "--data", str(photos), "--out", str(bad), "--batch-size", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "a.jpg" in err, err
    assert not cache.exists() or not any(cache.iterdir())


def test_labelled_folder_gives_a_model_that_verify_uses_without_a_threshold(tmp_path, capsys):
    """12 LFW train identities x 3 photos: a seeded share of the identities is held out,
    never trained on, and the card's threshold and threshold_vs_teacher are calibrated on
    their pairs; `verify --model run/x.pt` then works without --threshold."""
    root = tmp_path / "my_people"
    names = _folder(root, 12)
    out = tmp_path / "run"
    args = f"--data {root} --epochs 1 --batch-size 8 --loss kd --seed 3 --quiet --out {out}"
    rc = main(["distill", *args.split(), "--val-sizes", "", *TINY.split()])
    assert rc == 0
    card = json.loads((out / "lrface-tiny-16.json").read_text())
    held = card["calibration_holdout"]
    assert len(held["identities"]) == 2 and set(held["identities"]) <= set(names)
    assert held["identities"] == holdout.choose(names, [3] * 12, None, 3)  # seeded
    assert held["seed"] == 3 and held["faces"] == 6 and held["same_pairs"] == 6
    assert held["different_pairs"] == 9
    assert card["data"]["sources"][0]["identities"] == 10  # the held-out ones never trained
    assert card["data"]["images"] == 30
    for key in ("threshold", "threshold_vs_teacher"):
        assert isinstance(card[key], float) and -1.0 < card[key] < 1.0
    assert "held out of training" in card["threshold_note"]
    assert "held out of training" in card["threshold_vs_teacher_note"]

    capsys.readouterr()
    a, b = PHOTOS / "George_W_Bush_0001.jpg", PHOTOS / "George_W_Bush_0002.jpg"
    rc = main(["verify", str(a), str(b), "--model", str(out / "lrface-tiny-16.pt"), "--json"])
    res = json.loads(capsys.readouterr().out)
    assert rc in (0, 1) and res["threshold"] == pytest.approx(card["threshold"], abs=1e-4)
    assert "card" in res["threshold_from"]


def test_too_few_identities_to_hold_out_leave_the_threshold_uncalibrated(tmp_path):
    """3 identities: holding 2 out would leave 1 to train on, so none is held out and the
    card says why the threshold is missing (verify then asks for --threshold)."""
    assert holdout.held_count(3, None) == 0 and holdout.held_count(4, None) == 2
    assert holdout.held_count(100, None) == 20 and holdout.held_count(1000, None) == 100
    assert holdout.held_count(10, 0) == 0 and holdout.held_count(10, 5) == 5
    root = tmp_path / "few"
    _folder(root, 3, per_id=4, skip=20)
    out = tmp_path / "run"
    rc = main(["distill", "--data", str(root), "--epochs", "1", "--batch-size", "4", "--loss",
               "kd", "--val-sizes", "", "--max-steps", "1", "--quiet", "--out", str(out),
               *TINY.split()])  # fmt: skip
    assert rc == 0
    card = json.loads((out / "lrface-tiny-16.json").read_text())
    assert card["threshold"] is None and "calibration_holdout" not in card
    assert "no held-out identities" in card["threshold_note"]


def test_held_out_calibration_embeds_each_face_once_with_the_same_thresholds():
    """Held-out pairs reuse a few faces many times (same pairs repeated to balance them):
    the calibration embeds each face once and gives exactly the thresholds of embedding
    every pair's two crops (real LFW train faces, the shipped tiny student)."""
    import numpy as np

    from lrface.distill.card import calibrate_threshold
    from lrface.distill.faces import lfw_crops
    from lrface.distill.validate import Validator
    from lrface.faces.degrade import Degradation, degrade
    from lrface.models.preprocess import InputFormat
    from lrface.models.registry import get_spec, torch_weights
    from lrface.models.torch_embedder import load_student_module
    from lrface.scores import best_threshold

    lfw = LFW(LFW_ROOT)
    counts = Counter(r.split("/")[0] for r in lfw.train_images())
    names = [k for k in sorted(counts) if counts[k] >= 3][:5]
    rels = [r for r in lfw.train_images() if r.split("/")[0] in names]
    rels = [r for n in names for r in [x for x in rels if x.startswith(n + "/")][:3]]
    crops = lfw_crops(lfw, rels)
    who = np.array([r.split("/")[0] for r in rels])
    fused = np.random.default_rng(0).normal(size=(len(rels), 128)).astype(np.float32)
    held = holdout.HeldOut(who, crops, fused, names, len(names), seed=0)
    pairs = held.pairs()
    assert len(pairs.labels) > 2 * len(rels)  # faces reused: the case this is for
    spec = get_spec("lrface-tiny-16")
    net = load_student_module(spec, torch_weights(spec)).eval()
    fmt = InputFormat.of(spec)
    sizes = (12, 16)
    got = calibrate_threshold(pairs, net, fmt, sizes)

    embed = Validator.student_embed  # the reference: every pair's crops embedded
    ea = embed(net, pairs.crops_a, fmt)
    ss = [(ea * embed(net, pairs.crops_b, fmt)).sum(1)]
    ts = []
    for s in sizes:
        lr = embed(net, np.stack([degrade(c, Degradation(size=s)) for c in pairs.crops_b]), fmt)
        ss.append((ea * lr).sum(1))
        ts.append((pairs.hr * lr).sum(1))
    thr, acc = best_threshold(np.concatenate(ss), np.tile(pairs.labels, len(ss)))
    thr_t, _ = best_threshold(np.concatenate(ts), np.tile(pairs.labels, len(ts)))
    assert got["threshold"] == pytest.approx(float(np.clip(thr, -1, 1)), abs=2e-4)
    assert got["calibration_accuracy"] == pytest.approx(100 * acc, abs=0.01)
    assert got["threshold_vs_teacher"] == pytest.approx(float(np.clip(thr_t, -1, 1)), abs=2e-4)
