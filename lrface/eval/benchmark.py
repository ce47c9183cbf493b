"""``lrface benchmark``: run an evaluation protocol for one or more models.

The CLI registers the sub-command with :func:`add_benchmark_arguments` and calls
:func:`run_benchmark`, which prints a table (models x sizes/modes, or the protocol's
columns) or, with ``--json``, the results JSON; writes ``OUT/results.json`` atomically
with every figure and the full protocol description (recipe, folds, counts, models and
their sha256, lrface version, UTC time, command line, elapsed seconds); and with
``--plot`` writes ROC / CMC figures beside it.  In the JSON, NaN (an undefined metric,
explained in the entry's ``notes``) is written as ``null``.

Probe conditions (lfw and folder): ``--degrade clean|realistic`` and ``--probe-crop
aligned|box`` (see :mod:`lrface.degrade`); the condition is in the caption above the table,
in ``description.condition`` and in every result entry (``degrade``, ``probe_crop``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import DatasetError, LrfaceError
from ..fileio import write_json_atomic

PROTOCOLS = ("lfw", "tinyface", "scface", "folder")
DEFAULT_MODEL = "mobilefacenet-arcface"


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``lrface benchmark`` options to ``parser``."""
    parser.add_argument("--protocol", required=True, choices=PROTOCOLS, help="evaluation protocol")
    parser.add_argument(
        "--data",
        required=True,
        metavar="PATH",
        help="dataset root in the protocol's official layout",
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="NAME[,NAME...]",
        help=f"models to evaluate (registry names or card paths; default {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--hr-model",
        default="auto",
        metavar="NAME",
        help="model for the HR side (LFW first image, gallery): 'auto' (default) = each "
        "student's teacher, the model itself otherwise (hr-hr stays model vs model); "
        "'self' = the model itself; or a model name",
    )
    parser.add_argument(
        "--sizes",
        default=None,
        metavar="S[,S...]",
        help="LR sizes in pixels (lfw: 8,12,16,20,24,32; folder: 16,12)",
    )
    parser.add_argument(
        "--mode",
        default="hr-hr,hr-lr,lr-lr",
        metavar="MODE[,MODE...]",
        help="lfw modes: hr-hr, hr-lr, lr-lr (default all)",
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=("test", "all", "val"),
        help="lfw split: test = folds 6-10 (default), all = 10 folds, val = 1-5",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="output directory for results.json and plots (default ./benchmark-<protocol>)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the results JSON to stdout instead of the table"
    )
    parser.add_argument("--plot", action="store_true", help="write ROC / CMC PNGs to --out")
    parser.add_argument(
        "--no-detect",
        action="store_true",
        help="scface/folder: images are pre-cut faces, only resize them",
    )
    parser.add_argument(
        "--model-dir",
        default=None,
        metavar="DIR",
        help="extra directory searched first for model files",
    )
    parser.add_argument(
        "--no-flip", action="store_true", help="do not fuse the embedding of the mirrored crop"
    )
    parser.add_argument(
        "--detector",
        default="scrfd-2.5g",
        metavar="NAME",
        help="face detector for alignment (default scrfd-2.5g)",
    )
    parser.add_argument(
        "--max-pairs-per-fold",
        type=int,
        default=None,
        metavar="N",
        help="lfw: quick run on the first N/2 same and N/2 different pairs of each fold",
    )
    parser.add_argument(
        "--max-distractors",
        type=int,
        default=None,
        metavar="N",
        help="tinyface: use only the first N distractors",
    )
    parser.add_argument(
        "--exclude-subjects",
        default=None,
        metavar="IDS|@FILE",
        help="scface: subject ids to leave out (comma list or @file)",
    )
    parser.add_argument(
        "--distractors",
        default=None,
        metavar="DIR",
        help="folder: images added to the gallery as distractors",
    )
    parser.add_argument(
        "--nonmated-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="folder: fraction of identities left out of the gallery "
        "(their probes are non-mated, for DIR@FPIR)",
    )
    parser.add_argument(
        "--degrade",
        default="clean",
        metavar="KIND",
        help="lfw/folder: what follows the reduction of a probe: 'clean' (default, area "
        "reduction only) or 'realistic' (Gaussian + motion blur, sensor noise, JPEG q30-70; "
        "each probe's draw fixed by its index, see lrface.degrade)",
    )
    parser.add_argument(
        "--probe-crop",
        default="aligned",
        metavar="KIND",
        help="lfw/folder: how a probe is cut from its photo before the reduction: 'aligned' "
        "(default, 5-point template) or 'box' (the detector's box made square, 1.1x, no "
        "landmarks); the HR side stays aligned",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="neither read nor write cached embeddings"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def parse_list(text: str | None, what: str) -> list[str]:
    """``"a,b , c"`` -> ``["a", "b", "c"]``; empty -> :class:`LrfaceError`."""
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    if not items:
        raise LrfaceError(f"{what}: empty list")
    return items


def parse_sizes(text: str) -> list[int]:
    """``"8,12,16"`` -> ``[8, 12, 16]``; each size must be an integer in 4..1024."""
    out = []
    for t in parse_list(text, "--sizes"):
        try:
            s = int(t)
        except ValueError:
            raise LrfaceError(f"--sizes: {t!r} is not an integer") from None
        if not 4 <= s <= 1024:
            raise LrfaceError(f"--sizes: {s} is outside 4..1024 pixels")
        out.append(s)
    return out


def parse_ids(text: str) -> list[int]:
    """Subject ids from ``"1,2,3"`` or ``"@file"`` (ids separated by commas/whitespace)."""
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise LrfaceError(f"{path}: cannot read subject list ({exc.strerror})") from None
    out = []
    for t in text.replace(",", " ").split():
        try:
            out.append(int(t))
        except ValueError:
            raise LrfaceError(f"--exclude-subjects: {t!r} is not an integer id") from None
    return out


def jsonable(obj: Any) -> Any:
    """Strict-JSON version of ``obj``: NaN/inf -> None, float keys -> ``"%g"`` strings,
    numpy scalars/arrays -> python, tuples -> lists, paths -> strings."""
    if isinstance(obj, dict):
        return {_key(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _key(k: Any) -> str:
    if isinstance(k, float | np.floating):
        return f"{float(k):g}"
    return str(k.item() if isinstance(k, np.generic) else k)


def format_table(result: dict[str, Any]) -> str:
    """Markdown table of a protocol result: one row per ``row`` label, the columns in
    order of first appearance, cells as given by the entries."""
    rows: dict[str, dict[str, str]] = {}
    cols: dict[str, None] = {}
    for e in result["results"]:
        rows.setdefault(e["row"], {}).update(e["cells"])
        cols.update(dict.fromkeys(e["cells"]))
    header = ["model", *cols]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row, cells in rows.items():
        lines.append("| " + " | ".join([row, *(cells.get(c, "") for c in cols)]) + " |")
    return "\n".join([result.get("caption", ""), "", *lines])


def _check_layout(protocol: str, data: str) -> None:
    """Fail fast (before loading models) on a missing or wrong dataset."""
    if not Path(data).expanduser().exists():
        raise DatasetError(f"{data}: dataset path not found; pass --data with the {protocol} root")
    if protocol == "lfw":
        from ..datasets.lfw import LFW

        LFW(data)
    elif protocol == "tinyface":
        from .protocols.tinyface import find_layout

        find_layout(data)
    elif protocol == "scface":
        from .protocols.scface import scan_scface

        scan_scface(data)
    else:
        from .protocols.folder import scan_folder

        scan_folder(data)


def _ignored(args: argparse.Namespace, names: list[str]) -> None:
    defaults = {
        "sizes": None,
        "mode": "hr-hr,hr-lr,lr-lr",
        "split": "test",
        "no_detect": False,
        "max_pairs_per_fold": None,
        "max_distractors": None,
        "exclude_subjects": None,
        "distractors": None,
        "nonmated_fraction": 0.0,
        "hr_model": None,
        "degrade": "clean",
        "probe_crop": "aligned",
    }
    for n in names:
        if getattr(args, n, defaults[n]) != defaults[n]:
            print(
                f"note: --{n.replace('_', '-')} does not apply to the {args.protocol} protocol; "
                "ignored",
                file=sys.stderr,
            )


def _run_protocol(args: argparse.Namespace, embedders: list, hr: Any) -> dict[str, Any]:
    common = {"progress": not args.no_progress, "use_cache": not args.no_cache}
    if args.protocol == "lfw":
        from .protocols.lfw import DEFAULT_SIZES, evaluate_lfw

        _ignored(
            args,
            [
                "no_detect",
                "max_distractors",
                "exclude_subjects",
                "distractors",
                "nonmated_fraction",
            ],
        )
        sizes = parse_sizes(args.sizes) if args.sizes else list(DEFAULT_SIZES)
        cond = _condition(args)
        return evaluate_lfw(
            embedders,
            args.data,
            modes=parse_list(args.mode, "--mode"),
            sizes=sizes,
            split=args.split,
            hr_embedder=hr,
            max_pairs_per_fold=args.max_pairs_per_fold,
            detector=args.detector,
            **cond,
            **common,
        )
    if args.protocol == "tinyface":
        from .protocols.tinyface import evaluate_tinyface

        _ignored(
            args,
            [
                "sizes",
                "mode",
                "split",
                "no_detect",
                "max_pairs_per_fold",
                "exclude_subjects",
                "distractors",
                "nonmated_fraction",
                "degrade",
                "probe_crop",
            ],
        )
        return evaluate_tinyface(
            embedders, args.data, hr_embedder=hr, max_distractors=args.max_distractors, **common
        )
    if args.protocol == "scface":
        from .protocols.scface import evaluate_scface

        _ignored(
            args,
            [
                "sizes",
                "mode",
                "split",
                "max_pairs_per_fold",
                "max_distractors",
                "distractors",
                "nonmated_fraction",
                "degrade",
                "probe_crop",
            ],
        )
        excl = parse_ids(args.exclude_subjects) if args.exclude_subjects else []
        return evaluate_scface(
            embedders,
            args.data,
            hr_embedder=hr,
            no_detect=args.no_detect,
            exclude_subjects=excl,
            detector=args.detector,
            **common,
        )
    from .protocols.folder import FOLDER_SIZES, evaluate_folder

    _ignored(args, ["mode", "split", "max_pairs_per_fold", "max_distractors", "exclude_subjects"])
    sizes = parse_sizes(args.sizes) if args.sizes else list(FOLDER_SIZES)
    cond = _condition(args)
    return evaluate_folder(
        embedders,
        args.data,
        sizes=sizes,
        hr_embedder=hr,
        distractors=args.distractors,
        nonmated_fraction=args.nonmated_fraction,
        no_detect=args.no_detect,
        detector=args.detector,
        **cond,
        **common,
    )


def _condition(args: argparse.Namespace) -> dict[str, str]:
    """``--degrade`` / ``--probe-crop`` as keyword arguments of the lfw/folder evaluators."""
    return {
        "degrade": getattr(args, "degrade", "clean"),
        "probe_crop": getattr(args, "probe_crop", "aligned"),
    }


def check_options(args: argparse.Namespace) -> None:
    """Refuse bad option values with a one-line :class:`LrfaceError` before any model loads."""
    from .protocols.folder import check_condition

    cond = _condition(args)
    check_condition(cond["degrade"], cond["probe_crop"])
    if args.protocol == "folder" and args.no_detect and cond["probe_crop"] == "box":
        raise LrfaceError(
            "--probe-crop box cuts the detector's box; it cannot be combined with --no-detect"
        )


def _command_line(args: argparse.Namespace) -> str:
    given = getattr(args, "command_line", None)
    if given:
        return given
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


def resolve_hr_model(
    choice: str | None,
    embedders: list,
    protocol: str,
    flip: bool = True,
    model_dir: str | None = None,
) -> Any:
    """``--hr-model``: ``auto`` -> {student: its teacher}, ``self`` -> None, else one model."""
    from ..models.loader import load_embedder

    if choice in (None, "", "auto"):
        hr = {}
        for e in embedders:
            teacher = ((e.spec.card or {}).get("teacher") or {}).get("name")
            if teacher and protocol != "tinyface":
                hr[e.name] = load_embedder(teacher, flip=flip, model_dir=model_dir)
        return hr or None
    if choice == "self":
        return None
    return load_embedder(choice, flip=flip, model_dir=model_dir)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``args.protocol`` for every model of ``args.model``; print, write, return results.

    Returns the (strict-JSON) dict written to ``OUT/results.json``.  Raises
    :class:`LrfaceError` subclasses (one-line messages) for a wrong dataset, model or option.
    """
    from ..models.loader import load_embedder

    t0 = time.perf_counter()
    started = _dt.datetime.now(_dt.UTC)
    check_options(args)
    _check_layout(args.protocol, args.data)
    names = parse_list(args.model, "--model")
    flip = not args.no_flip
    embedders = [load_embedder(n, flip=flip, model_dir=args.model_dir) for n in names]
    # load_embedder is memoised: a model that is its own HR model is the same object.
    hr = resolve_hr_model(args.hr_model, embedders, args.protocol, flip, args.model_dir)
    result = _run_protocol(args, embedders, hr)
    out_dir = Path(args.out or f"benchmark-{args.protocol}").expanduser()
    plots: list[str] = []
    if args.plot:
        from .plots import plot_results

        plots = [p.name for p in plot_results(result, out_dir)]
    out = {
        "lrface_version": __version__,
        "command": _command_line(args),
        "utc_time": started.isoformat(timespec="seconds"),
        "elapsed_s": round(time.perf_counter() - t0, 2),
        **result,
        "plots": plots,
    }
    out = jsonable(out)
    write_json_atomic(out_dir / "results.json", out)
    if args.json:
        print(json.dumps(out, indent=2, allow_nan=False))
    else:
        print(format_table(out))
    print(
        f"wrote {out_dir / 'results.json'}" + (f" and {len(plots)} plot(s)" if plots else ""),
        file=sys.stderr,
    )
    return out
