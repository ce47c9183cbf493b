#!/usr/bin/env python
"""Validate ``lrface-mbf`` weights (``.pt``) with the validator of ``lrface distill``: the
``Validator`` a run on ``../shared/data/lfw`` builds (pairs of folds 1-5, teacher flip-fused
HR targets from the run's cache, clean area reduction of the second image, student flip
fusion, cross-validated thresholds), applied to each given ``.pt`` -- so shipped weights and a
run's final epoch are measured by one validator (docs/experiments/realistic-aligned-views.md,
rule 2a).  Prints one JSON object per weights file: ``{"weights", "sha256", "val_hr-lr_<s>"}``.

    python docs/experiments/scripts/validate_student.py weights/lrface-mbf.pt \
        runs/real/C/lrface-mbf.pt --sizes 8,12,16,24
"""

from __future__ import annotations

import argparse
import json

from lrface.distill.config import DistillConfig
from lrface.distill.data import training_data_for
from lrface.distill.students import build_student
from lrface.distill.validate import Validator
from lrface.models.loader import load_embedder
from lrface.models.preprocess import InputFormat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", nargs="+", help="lrface-mbf .pt files")
    ap.add_argument("--data", default="../shared/data/lfw")
    ap.add_argument("--sizes", default="8,12,16,24")
    a = ap.parse_args()
    sizes = tuple(int(s) for s in a.sizes.split(","))
    base = DistillConfig(
        data=a.data, out="unused", student="lrface-mbf", targets="fused", val_sizes=sizes
    )
    teacher = load_embedder(base.teacher, flip=False)
    td = training_data_for(base, teacher, progress=False)
    validator = Validator.for_run(base, td, teacher)
    if validator is None:
        raise SystemExit(f"{a.data}: no LFW source to validate on")
    fmt = InputFormat.of(teacher.spec, base.resolved_input_size())
    for pt in a.weights:
        cfg = DistillConfig(data=a.data, out="unused", student="lrface-mbf", init=pt)
        student = build_student(cfg, teacher, verbose=False)
        row = {"weights": pt, "sha256": student.init_sha256, **validator.run(student.net, fmt)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
