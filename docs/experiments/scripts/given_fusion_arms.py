#!/usr/bin/env python
"""The two arms of docs/experiments/given-fusion.md on LFW pairs, hr-lr, ``--probe-crop given``.

For every size and condition: the teacher embeds the first image of each pair (aligned HR
crop), the second is the detector's box crop reduced (and degraded) and read as a given
crop (landmarks searched inside it: :func:`lrface.eval.protocols.conditions.given_landmarks`,
cached and shared with ``lrface benchmark --probe-crop given``).  Per probe:

* ``lrface-mbf`` on the crop aligned by the found landmarks (the protocol's given path);
* ``lrface-box`` on the whole crop resized (the box path);

arm **T** (today's ``auto``) = the aligned student where landmarks were found, else the box
student; arm **F** (fused) = normalize(aligned student + box student) where landmarks were
found, else the box student.  Both are scored by the protocol's own report (5-fold
cross-validated accuracy over the official folds of the split).  Flip fusion as in
``lrface benchmark`` (on).

    nice -n 5 python docs/experiments/scripts/given_fusion_arms.py --data ../shared/data/lfw \
        --split val --max-pairs-per-fold 300 \
        --conditions clean/8,clean/12,clean/16,clean/24,realistic/16 \
        --out runs/given-fusion/val.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lrface.datasets.lfw import LFW
from lrface.eval.protocols.common import embed_cached
from lrface.eval.protocols.conditions import degradation_for
from lrface.eval.protocols.lfw import _pairs_report, _PairSet, select_pairs
from lrface.io.fileio import write_json_atomic
from lrface.models.loader import load_embedder
from lrface.models.preprocess import resize_crop

DETECTOR = "scrfd-2.5g"  # the benchmark's detector (DEFAULTS.benchmark_detector)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--max-pairs-per-fold", type=int, default=None)
    ap.add_argument("--conditions", default="clean/8,clean/12,clean/16,clean/24,realistic/16")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    lfw = LFW(a.data)
    pairs = select_pairs(lfw, a.split, a.max_pairs_per_fold)
    ps = _PairSet(lfw, pairs, DETECTOR, False, "given")
    teacher = load_embedder("mobilefacenet-arcface")
    mbf, box = load_embedder("lrface-mbf"), load_embedder("lrface-box")
    hr = ps.embed(teacher, None, False, True)[ps.ia]
    rows = []
    for cond in a.conditions.split(","):
        kind, size = cond.split("/")
        deg = degradation_for(int(size), None)
        aligned = ps.embed_lr(mbf, deg, kind, [1], False, True)[1]
        probes, _, found, key = ps.given_inputs(deg, kind, 1, False, True)

        def load(lo: int, hi: int, probes: list[np.ndarray] = probes) -> list[np.ndarray]:
            return [resize_crop(probes[k], box.input_size) for k in range(lo, hi)]

        boxed = embed_cached(
            box, len(probes), load, (*key, "box-path", box.input_size), desc="", progress=False
        )
        f = found[:, None]
        arm_t = np.where(f, aligned, boxed)
        fused = aligned + boxed
        fused /= np.linalg.norm(fused, axis=1, keepdims=True)
        arm_f = np.where(f, fused, boxed)
        row = {"condition": kind, "size": int(size), "found": round(float(found.mean()), 4)}
        for name, probe in (("T", arm_t), ("F", arm_f)):
            scores = np.einsum("ij,ij->i", hr, probe, dtype=np.float64)
            rep = _pairs_report(scores, ps.labels, ps.folds, (1e-3,))
            row[name] = round(100 * rep["accuracy_mean"], 2)
            row[name + "_std"] = round(100 * rep["accuracy_std"], 2)
        row["F-T"] = round(row["F"] - row["T"], 2)
        rows.append(row)
        print(row, time.strftime("%H:%M:%S"), flush=True)
    out = {"split": a.split, "max_pairs_per_fold": a.max_pairs_per_fold, "n_pairs": len(pairs)}
    write_json_atomic(a.out, {**out, "rows": rows})


if __name__ == "__main__":
    main()
