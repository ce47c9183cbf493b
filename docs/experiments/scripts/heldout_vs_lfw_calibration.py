"""Held-out-identity calibration against LFW calibration, on one small distilled model.

    LRFACE_HOME=../shared python docs/experiments/scripts/heldout_vs_lfw_calibration.py \
        --ids 300 --per-id 4 --work runs/calib-study

1. A labelled folder (symlinks) of ``--ids`` LFW **train**-split identities with >= 2
   photos, none of them an identity of LFW pairs fold 1 (first ``--per-id`` photos each,
   identities in name order).
2. ``lrface distill --data FOLDER --student lrface-tiny-16 --init lrface-tiny-16 --width 32
   --head-channels 256 --epochs 1 --seed 0`` (from the shipped student, which was trained
   on the whole train split, fold-1 identities included: the model has seen them, the
   calibration has not) holds out
   its default share of those identities and calibrates ``threshold`` and
   ``threshold_vs_teacher`` on their pairs (the card).
3. The same model is calibrated on the 600 pairs of LFW fold 1 (identities never in the
   folder) by the same function (:func:`lrface.distill.card.calibrate_threshold`),
   and the accuracy on those pairs at each threshold is printed: what a user loses by
   taking the threshold from their own held-out identities instead of from LFW.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
SIZES = (12, 16, 20, 24, 32)


def _accuracy_at(pairs, model, fmt, thr: float, thr_t: float) -> dict[str, float]:
    """Pooled accuracy on ``pairs`` at the given thresholds (student-student: HR-HR plus
    HR-LR at SIZES; teacher-student: HR teacher vs LR student at SIZES)."""
    from lrface.distill.validate import Validator
    from lrface.faces.degrade import Degradation, degrade

    embed = Validator.student_embed
    ea = embed(model, pairs.crops_a, fmt)
    ss = [(ea * embed(model, pairs.crops_b, fmt)).sum(1)]
    ts = []
    for s in SIZES:
        lr = embed(model, np.stack([degrade(c, Degradation(size=s)) for c in pairs.crops_b]), fmt)
        ss.append((ea * lr).sum(1))
        ts.append((pairs.hr * lr).sum(1))
    y_ss = np.tile(pairs.labels, len(ss)).astype(bool)
    y_ts = np.tile(pairs.labels, len(ts)).astype(bool)
    return {
        "student_vs_student": round(100 * float(((np.concatenate(ss) >= thr) == y_ss).mean()), 2),
        "teacher_vs_student": round(100 * float(((np.concatenate(ts) >= thr_t) == y_ts).mean()), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ids", type=int, default=300)
    ap.add_argument("--per-id", type=int, default=4)
    ap.add_argument("--work", default="runs/calib-study")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    import torch

    from lrface.datasets.lfw import LFW
    from lrface.distill.card import calibrate_threshold
    from lrface.distill.faces import holdout_identities
    from lrface.distill.validate import Validator
    from lrface.models.loader import load_embedder
    from lrface.models.preprocess import InputFormat

    shared = Path(os.environ.get("LRFACE_HOME", REPO.parent / "shared"))
    lfw = LFW(shared / "data" / "lfw")
    fold1 = holdout_identities(lfw, (1,))
    counts = Counter(r.split("/")[0] for r in lfw.train_images())
    names = [k for k in sorted(counts) if counts[k] >= 2 and k not in fold1][: a.ids]
    work = Path(a.work)
    folder = work / "people"
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for f in sorted((lfw.image_dir / name).iterdir())[: a.per_id]:
            link = folder / name / f.name
            if not link.exists():
                link.symlink_to(f.resolve())
    out = work / "run"
    if not (out / "lrface-tiny-16.json").is_file():
        cmd = [
            sys.executable,
            "-m",
            "lrface",
            "distill",
            "--data",
            f"labelled:{folder}",
            "--student",
            "lrface-tiny-16",
            "--init",
            "lrface-tiny-16",
            "--width",
            "32",
            "--head-channels",
            "256",
            "--epochs",
            "1",
            "--seed",
            "0",
            "--val-sizes",
            "",
            "--quiet",
            "--out",
            str(out),
        ]
        subprocess.run(cmd, check=True)
    card = json.loads((out / "lrface-tiny-16.json").read_text())
    model = load_embedder(str(out / "lrface-tiny-16.pt"))
    net = getattr(model, "model", None)
    assert isinstance(net, torch.nn.Module), "a torch student"
    teacher = load_embedder("mobilefacenet-arcface", flip=False)
    fmt = InputFormat.of(teacher.spec, card["input_size"])
    val = Validator(str(shared / "data" / "lfw"), {}, (), teacher, holdout_folds=(1,))
    lfw_cal = calibrate_threshold(val, net, fmt, SIZES)
    res = {
        "folder": {
            "identities": len(names),
            "photos": sum(1 for _ in folder.rglob("*.jpg")),
        },
        "holdout": card["calibration_holdout"],
        "heldout_calibration": {
            k: card[k]
            for k in (
                "threshold",
                "calibration_accuracy",
                "threshold_vs_teacher",
                "threshold_vs_teacher_accuracy",
            )
        },
        "lfw_fold1_calibration": {
            k: lfw_cal[k]
            for k in (
                "threshold",
                "calibration_accuracy",
                "threshold_vs_teacher",
                "threshold_vs_teacher_accuracy",
            )
        },
        "fold1_accuracy_at_heldout_thresholds": _accuracy_at(
            val, net, fmt, card["threshold"], card["threshold_vs_teacher"]
        ),
        "fold1_accuracy_at_lfw_thresholds": _accuracy_at(
            val, net, fmt, lfw_cal["threshold"], lfw_cal["threshold_vs_teacher"]
        ),
    }
    res["holdout"].pop("identities")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
