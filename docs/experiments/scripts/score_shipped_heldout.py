#!/usr/bin/env python
"""Score a registered (shipped) model on the pairs of LFW folds 1-2 exactly as
``heldout_conditions.py`` scores a distilled run: hr-lr, the teacher on the HR side, clean/box,
realistic/box and clean/aligned probes at 8/12/16/24 px (docs/experiments/box-student.md).

    python docs/experiments/scripts/score_shipped_heldout.py lrface-mbf runs/box/control.json
"""

from __future__ import annotations

import json
import sys

from lrface.datasets.lfw import LFW
from lrface.eval.protocols.lfw import evaluate_lfw
from lrface.models.loader import load_embedder

DATA = "../shared/data/lfw"
CONDITIONS = (("clean", "box"), ("realistic", "box"), ("clean", "aligned"))


def main() -> None:
    model, out = sys.argv[1], sys.argv[2]
    lfw = LFW(DATA)
    idx = [i for i, p in enumerate(lfw.pairs) if p.fold in {1, 2}]
    teacher = load_embedder("mobilefacenet-arcface")
    emb = load_embedder(model)
    table = {}
    for deg, crop in CONDITIONS:
        res = evaluate_lfw([emb], DATA, modes=["hr-lr"], sizes=[8, 12, 16, 24],
                           pair_indices=idx, hr_embedder=teacher, degrade=deg,
                           probe_crop=crop, progress=False)  # fmt: skip
        cells = {r["size"]: round(100 * r["metrics"]["accuracy_mean"], 2) for r in res["results"]}
        table[f"{deg}/{crop}"] = cells
        print(model, f"{deg}/{crop}", cells, flush=True)
    with open(out, "w") as f:
        json.dump({"pairs": len(idx), "table": table}, f, indent=1)


if __name__ == "__main__":
    main()
