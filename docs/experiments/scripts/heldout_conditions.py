#!/usr/bin/env python
"""Score distilled students on the pairs of held-out LFW folds in the four probe
conditions (clean/aligned, realistic/aligned, clean/box, realistic/box), hr-lr with the
teacher on the HR side -- the scoring of docs/experiments/box-and-realistic-views.md.

Each RUN directory holds a ``lrface distill`` card (``<name>.json``) and its ``.pt``; the
student is exported to ONNX (``lrface export``) beside it and evaluated through
onnxruntime with :func:`lrface.eval.protocols.lfw.evaluate_lfw` on the official pairs of
``--folds`` (default 1,2; at least two folds, whose thresholds are cross-validated).

    python docs/experiments/scripts/heldout_conditions.py runs/views/A runs/views/B \
        --data $LRFACE_HOME/data/lfw --folds 1,2 --sizes 8,12,16,24 --out runs/views/heldout.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lrface.cli.main import main as lrface_main
from lrface.datasets.lfw import LFW
from lrface.eval.protocols.lfw import evaluate_lfw
from lrface.io.fileio import write_json_atomic
from lrface.models.interface import Embedder
from lrface.models.loader import load_embedder

CONDITIONS = [
    ("clean", "aligned"),
    ("realistic", "aligned"),
    ("clean", "box"),
    ("realistic", "box"),
]


def exported(run: Path) -> Path:
    """The ONNX card of the run's student (exported once, then reused)."""
    card = run / "lrface-mbf.json"
    name = f"{card.stem}-{run.name}"
    onnx = run / f"{name}.onnx"
    if not (run / f"{name}.json").is_file():
        rc = lrface_main(["export", "--model", str(card), "--onnx", str(onnx), "--name", name])
        if rc:
            raise SystemExit(f"export of {card} failed ({rc})")
    return run / f"{name}.json"


def score_conditions(
    label: str,
    emb: Embedder,
    data: str,
    pair_indices: list[int],
    sizes: list[int],
    conditions: list[str],
    teacher: Embedder,
) -> dict[str, dict[int, float]]:
    """``{"deg/crop": {size: accuracy %}}`` of ``emb`` as the LR probe model (hr-lr, the
    ``teacher`` on the HR side) on the LFW pairs ``pair_indices``, one line printed per
    condition (``label``, condition, cells)."""
    out: dict[str, dict[int, float]] = {}
    for deg, crop in (c.split("/") for c in conditions):
        res = evaluate_lfw([emb], data, modes=["hr-lr"], sizes=sizes, pair_indices=pair_indices,
                           hr_embedder=teacher, degrade=deg, probe_crop=crop,
                           progress=False)  # fmt: skip
        cells = {r["size"]: round(100 * r["metrics"]["accuracy_mean"], 2) for r in res["results"]}
        out[f"{deg}/{crop}"] = cells
        print(label, f"{deg}/{crop}", cells, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--data", required=True)
    ap.add_argument("--folds", default="1,2")
    ap.add_argument("--sizes", default="8,12,16,24")
    ap.add_argument("--conditions", default=",".join(f"{d}/{c}" for d, c in CONDITIONS))
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    folds = {int(f) for f in a.folds.split(",")}
    sizes = [int(s) for s in a.sizes.split(",")]
    lfw = LFW(a.data)
    idx = [i for i, p in enumerate(lfw.pairs) if p.fold in folds]
    teacher = load_embedder("mobilefacenet-arcface")
    table = {
        run.name: score_conditions(run.name, load_embedder(exported(run)), a.data, idx, sizes,
                                   a.conditions.split(","), teacher)
        for run in a.runs
    }  # fmt: skip
    write_json_atomic(Path(a.out), {"folds": sorted(folds), "pairs": len(idx), "table": table})


if __name__ == "__main__":
    main()
