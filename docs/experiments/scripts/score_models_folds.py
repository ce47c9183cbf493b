#!/usr/bin/env python
"""Score probe models on the pairs of chosen LFW folds (never folds 6-10, the test split),
hr-lr with the teacher on the HR side, in chosen probe conditions and sizes -- the scoring of
``heldout_conditions.py`` for registered models, cards and runs alike
(docs/experiments/realistic-aligned-views.md: the size-rule crossover and rule 2b).

Each MODEL is a registered name (``mobilefacenet-arcface``: the teacher itself as the probe
model), a card path (``.json``), or a ``lrface distill`` run directory (exported to ONNX
once, as ``heldout_conditions.py`` does).  Accuracy: mean over the folds of the
cross-validated threshold (at least two folds).

    python docs/experiments/scripts/score_models_folds.py mobilefacenet-arcface lrface-mbf \
        --folds 1,2,3,4,5 --sizes 24,32,40,48,56,64,80,96 \
        --conditions clean/aligned,realistic/aligned --out runs/real/crossover.json
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from lrface.datasets.lfw import LFW
from lrface.io.fileio import write_json_atomic
from lrface.models.loader import load_embedder

TEST_FOLDS = {6, 7, 8, 9, 10}


def _sibling():
    """``heldout_conditions.py`` beside this script (its ``exported`` and ``score_conditions``)."""
    spec = importlib.util.spec_from_file_location(
        "heldout_conditions", Path(__file__).with_name("heldout_conditions.py")
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SIBLING = _sibling()


def _model(arg: str) -> str | Path:
    """A registered name or card as given; a run directory exported to its ONNX card."""
    path = Path(arg)
    if not path.is_dir():
        return path if arg.endswith(".json") else arg
    return SIBLING.exported(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data", default="../shared/data/lfw")
    ap.add_argument("--folds", default="1,2,3,4,5")
    ap.add_argument("--sizes", default="8,12,16,24")
    ap.add_argument("--conditions", default="clean/aligned,realistic/aligned")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    folds = {int(f) for f in a.folds.split(",")}
    if folds & TEST_FOLDS or len(folds) < 2:
        raise SystemExit(f"--folds {a.folds}: at least two of folds 1-5 (6-10 are the test split)")
    sizes = [int(s) for s in a.sizes.split(",")]
    lfw = LFW(a.data)
    idx = [i for i, p in enumerate(lfw.pairs) if p.fold in folds]
    teacher = load_embedder("mobilefacenet-arcface")
    table = {
        arg: SIBLING.score_conditions(arg, load_embedder(_model(arg)), a.data, idx, sizes,
                                      a.conditions.split(","), teacher)
        for arg in a.models
    }  # fmt: skip
    write_json_atomic(Path(a.out), {"folds": sorted(folds), "pairs": len(idx), "table": table})


if __name__ == "__main__":
    main()
