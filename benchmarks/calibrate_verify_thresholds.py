"""Calibrate the thresholds ``lrface verify`` uses when the two faces go to different models.

    python benchmarks/calibrate_verify_thresholds.py [--write] [--data ../shared/data/lfw]

``verify`` embeds a face of >= 80 px (aligned side) with the teacher and a smaller one
with a student (HR side by the teacher, LR side by the student, as every headline figure
is measured).  Such a mixed pair needs its own threshold.  For each shipped student this
script takes the LFW pairs of folds 1-5 (images of the *training* identities, never the
test split), embeds the first image at full resolution with the teacher (flip fusion)
and the second reduced to s x s (area; s in 12, 16, 20, 24, 32) with the student (flip
fusion; ``lrface-box``, the student for crops without landmarks: the detector's box crop
of the second image, reduced), and picks the threshold of maximum accuracy over all those
pairs pooled.
``--write`` stores it in the student's card (``weights/<name>.json``) as
``threshold_vs_teacher`` with a note; the weights and their sha256 are unchanged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lrface.datasets.boxes import load_box_crops
from lrface.datasets.lfw import LFW
from lrface.eval.protocols.lfw import load_crops
from lrface.faces.degrade import Degradation, degrade
from lrface.io.fileio import write_json_atomic
from lrface.models.loader import load_embedder
from lrface.models.registry import PACKAGE_WEIGHTS
from lrface.scores import best_threshold

SIZES = (12, 16, 20, 24, 32)
STUDENTS = ("lrface-mbf", "lrface-box", "lrface-tiny-16", "lrface-tiny-24", "lrface-tiny-32")
#: Students for crops without landmarks: their LR side is the detector's box crop
#: (``--probe-crop box``), as they are deployed.
BOX_STUDENTS = ("lrface-box",)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/lfw"))
    ap.add_argument("--write", action="store_true", help="store the thresholds in the cards")
    ap.add_argument("--models", default=",".join(STUDENTS), help="students to calibrate")
    args = ap.parse_args()
    lfw = LFW(args.data)
    pairs = lfw.split_pairs("val")
    rels = sorted({p.a for p in pairs} | {p.b for p in pairs})
    crops, rows, _ = load_crops(lfw, rels)
    index = dict(zip(rels, rows.tolist()))
    a = crops[[index[p.a] for p in pairs]]
    b = crops[[index[p.b] for p in pairs]]
    labels = np.array([p.same for p in pairs], dtype=np.int64)
    hr = load_embedder("mobilefacenet-arcface").embed_crops(list(a))
    lr = {s: [degrade(c, Degradation(size=s)) for c in b] for s in SIZES}
    names = args.models.split(",")
    if any(n in BOX_STUDENTS for n in names):
        box, _, _ = load_box_crops(lfw, [p.b for p in pairs])
        lr_box = {s: [degrade(c, Degradation(size=s)) for c in box] for s in SIZES}
    for name in names:
        student = load_embedder(name)
        probes = lr_box if name in BOX_STUDENTS else lr
        scores = np.concatenate([(hr * student.embed_crops(probes[s])).sum(1) for s in SIZES])
        thr, acc = best_threshold(scores, np.tile(labels, len(SIZES)))
        note = (
            f"max accuracy ({100 * acc:.2f} %) on {len(pairs)} LFW pairs of folds 1-5 (training "
            f"identities) x {len(SIZES)} sizes: first image HR by the teacher, second reduced "
            f"to {','.join(map(str, SIZES))} px (area) by {name}"
            + (" from the detector's box crop (no landmarks)" if name in BOX_STUDENTS else "")
            + "; "
            "benchmarks/calibrate_verify_thresholds.py"
        )
        print(
            json.dumps(
                {
                    "model": name,
                    "threshold_vs_teacher": round(float(thr), 4),
                    "accuracy": round(100 * acc, 2),
                    "pairs": len(pairs) * len(SIZES),
                }
            )
        )
        if args.write:
            path = PACKAGE_WEIGHTS / f"{name}.json"
            card = json.loads(path.read_text())
            card["threshold_vs_teacher"] = round(float(thr), 4)
            card["threshold_vs_teacher_note"] = note
            write_json_atomic(path, card)


if __name__ == "__main__":
    main()
