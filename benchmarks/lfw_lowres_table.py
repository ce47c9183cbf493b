#!/usr/bin/env python
"""Regenerate the LFW low-resolution table (markdown) for any list of models.

Example (the table of ``../shared/data/lfw/README.md``, test split)::

    python benchmarks/lfw_lowres_table.py --models mobilefacenet-arcface --split test \
        --modes hr-hr,hr-lr,lr-lr --sizes 32,24,20,16,12,8

The command line is printed above the table; progress bars go to stderr.  Rows are the
sizes (112 = HR first), columns the models x modes; cells are accuracy % (std over folds).
``--json PATH`` also keeps the full results (AUC, EER, TAR@FAR, ROC points).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from lrface.errors import LrfaceError
from lrface.eval.benchmark import parse_list, parse_sizes, resolve_hr_model
from lrface.eval.protocols.lfw import DEFAULT_SIZES, evaluate_lfw, readme_table
from lrface.io.fileio import write_json_atomic
from lrface.models.loader import load_embedder


def _default_data() -> str:
    home = Path(os.environ.get("LRFACE_HOME", "~/.lrface")).expanduser()
    return str(home / "data" / "lfw")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="mobilefacenet-arcface", help="comma-separated models")
    p.add_argument(
        "--hr-model",
        default="auto",
        help="HR side (hr-lr): auto = each student's teacher (hr-hr stays model vs model), "
        "self = the model itself, or a model name",
    )
    p.add_argument(
        "--data", default=_default_data(), help="LFW root (default $LRFACE_HOME/data/lfw)"
    )
    p.add_argument("--split", default="test", choices=("test", "all", "val"))
    p.add_argument("--modes", default="hr-hr,hr-lr,lr-lr")
    p.add_argument("--sizes", default=",".join(map(str, sorted(DEFAULT_SIZES, reverse=True))))
    p.add_argument("--model-dir", default=None, help="extra directory searched for model files")
    p.add_argument("--max-pairs-per-fold", type=int, default=None, help="quick run on a subset")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the full results")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        models = [
            load_embedder(n, model_dir=args.model_dir) for n in parse_list(args.models, "--models")
        ]
        hr = resolve_hr_model(args.hr_model, models, "lfw", model_dir=args.model_dir)
        result = evaluate_lfw(
            models,
            args.data,
            modes=parse_list(args.modes, "--modes"),
            sizes=parse_sizes(args.sizes),
            split=args.split,
            hr_embedder=hr,
            max_pairs_per_fold=args.max_pairs_per_fold,
            progress=not args.no_progress,
        )
    except LrfaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = shlex.join(["python", "benchmarks/lfw_lowres_table.py", *argv])
    result["command"] = command
    if args.json:
        write_json_atomic(args.json, result)
    print(f"`{command}`\n")
    print(result["caption"] + "\n")
    print(readme_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
