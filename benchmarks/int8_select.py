"""Choose lrface-mbf's int8 recipe on LFW train-split faces and the validation folds only.

    python benchmarks/int8_select.py [--model lrface-mbf] [--fidelity 300] [--finalists 2]
                                     [--recipes NAME,...] [--reference minmax-head]
                                     [--max-val-loss 0.10] [--keep DIR] [--json OUT]

Round 1 (issue 33, 2026-12-07 evening; rule written before its runs): stages 1-3 below
without the reference and validation-margin gates, recipes ``minmax``, ``minmax-head``,
``minmax-first-head`` (the histogram recipes were OOM-killed).  It chose ``minmax-head``
(validation -0.13), which lost 0.33 points at 16 px on the test split: nothing shipped.

Round 2 decision rule (written 2026-12-07 22:30 UTC, before any round-2 run, and
committed before it).  **The test split was looked at once before for lrface-mbf int8**
(round 1, ``minmax-head``, -0.33 at 16 px); this is a second, separately ruled attempt,
so the rule demands a clear validation margin before the test split is read again, and
reads it at most once more:

1. Stage 1 (LFW train-split faces only).  Every recipe of :data:`ROUND2` is quantized with
   ``benchmarks/quantize.py``'s code (QDQ, per-channel int8 weights, uint8 activations;
   calibration on train-split faces of no validation identity, from
   ``quantize.CALIB_SKIP`` on, collected ``quantize.CHUNK_FACES`` (16) faces at a time
   by ``benchmarks/chunked_calibration.py``; ``ROUND2`` below).  Fidelity = the mean
   cosine between the fp32 and the int8 embeddings (flip fusion on) of ``--fidelity``
   held-out train-split faces (``quantize.calibration_pool``'s first faces, never
   calibration faces) reduced to 16 px;
   8 px / HR cosines and the model-alone crops/s (the fp32 teacher timed right after, in
   the same loop) are reported.  A recipe is **eligible** only if (a) its crops/s is
   >= 2x the teacher's and (b) its 16 px fidelity is strictly above that of the round-1
   recipe ``--reference`` (``minmax-head``), re-made and measured in the same run.
2. Stage 2 (LFW **validation** split, folds 1-5, 3,000 pairs; hr-lr 16 px, HR side by the
   fp32 teacher, 5-fold thresholds; the fp32 model measured in the same run).  The
   ``--finalists`` (2) eligible recipes of highest 16 px fidelity are measured; the highest
   accuracy wins (a tie to two decimals goes to the higher fidelity).  The winner goes on
   only if its validation loss is <= ``--max-val-loss`` (0.10) points (round 1's winner
   lost 0.13 there).  No eligible recipe, or a larger loss: the test split is not read
   and nothing ships.
3. Stage 3 (outside this script, once): the winner on the test split,
   ``lrface benchmark --protocol lfw --split test --mode hr-hr,hr-lr --sizes 8,12,16,24``
   beside fp32 ``lrface-mbf`` in one command; it ships as ``weights/lrface-mbf-int8``
   only if its 16 px hr-lr accuracy is within 0.3 points of fp32's (fp32 97.40: >= 97.10)
   **and**, in one run of ``benchmarks/int8_speed.py``, its model-alone crops/s is >= 2x
   the fp32 teacher's.  Otherwise nothing ships and no further recipe is tried on the
   test split for this model.
4. Reports, not ship decisions: the tiny students (and the teacher if time) quantized with
   the stage-2 winner's recipe (stated as "report only" if the gate of step 2 failed),
   fp32 vs int8, LFW test split, hr-hr + hr-lr 8/12/16/24 px, with crops/s.

The test split is never read here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import quantize  # noqa: E402

TEACHER = "mobilefacenet-arcface"
#: name -> quantize.py options (``--images``, ``--method``, ``--percentile``,
#: ``--keep-float``, ``--format``)
RECIPES: dict[str, dict] = {
    "minmax": {"images": 256, "method": "minmax"},
    "minmax-head": {"images": 256, "method": "minmax", "keep_float": "head"},
    "minmax-first-head": {"images": 256, "method": "minmax", "keep_float": "first,head"},
    "minmax-1024-head": {"images": 1024, "method": "minmax", "keep_float": "head"},
    "pct99.999-head": {"images": 256, "method": "percentile", "keep_float": "head"},
    "entropy-head": {"images": 256, "method": "entropy", "keep_float": "head"},
    "minmax-head-qop": {
        "images": 256, "method": "minmax", "keep_float": "head", "format": "qoperator"
    },
    "pct99.99-1024-head": {
        "images": 1024, "method": "percentile", "percentile": 99.99, "keep_float": "head"
    },
    "pct99.999-1024-head": {
        "images": 1024, "method": "percentile", "percentile": 99.999, "keep_float": "head"
    },
    "entropy-1024-head": {"images": 1024, "method": "entropy", "keep_float": "head"},
    "minmax-1024-head-dw": {"images": 1024, "method": "minmax", "keep_float": "head,dw"},
}  # fmt: skip
#: Round 2's recipes (the rule above), the round-1 reference first.
ROUND2 = (
    "minmax-head",
    "minmax-1024-head",
    "pct99.99-1024-head",
    "pct99.999-1024-head",
    "entropy-1024-head",
    "minmax-1024-head-dw",
)


def recipe_args(recipe: dict, out_dir: Path, seed: int) -> argparse.Namespace:
    """quantize.py's arguments for ``recipe``."""
    base = {
        "method": "minmax", "percentile": 99.999, "keep_float": "", "format": "qdq",
        "chunk_faces": quantize.CHUNK_FACES,
    }  # fmt: skip
    return argparse.Namespace(**{**base, **recipe, "seed": seed, "out_dir": str(out_dir)})


def views(crops: list[np.ndarray], size: int) -> list[np.ndarray]:
    """The crops area-reduced to ``size`` px (0: unchanged), uint8 BGR."""
    from lrface.faces.degrade import Degradation, degrade

    return crops if size == 0 else [degrade(c, Degradation(size)) for c in crops]


def crops_per_s(emb, crops: list[np.ndarray], rounds: int = 2) -> float:
    """Best of ``rounds`` of ``emb.embed_crops(crops)``, crops/s."""
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        emb.embed_crops(crops)
        best = max(best, len(crops) / (time.perf_counter() - t0))
    return best


def val_accuracy(emb, teacher, lfw_root: str) -> float:
    """hr-lr 16 px accuracy (%) on the validation split (folds 1-5)."""
    from lrface.eval.protocols.lfw import evaluate_lfw

    res = evaluate_lfw(
        [emb], lfw_root, modes=["hr-lr"], sizes=[16], split="val", hr_embedder=teacher,
        progress=False,
    )  # fmt: skip
    return round(100 * res["results"][0]["metrics"]["accuracy_mean"], 2)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="lrface-mbf")
    ap.add_argument("--fidelity", type=int, default=300, help="held-out faces of stage 1")
    ap.add_argument("--finalists", type=int, default=2)
    ap.add_argument("--recipes", default=",".join(ROUND2))
    ap.add_argument("--reference", default="minmax-head", help="round 1's recipe (gate 1b)")
    ap.add_argument("--max-val-loss", type=float, default=0.10, help="gate of stage 2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lfw", default=str(REPO.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--keep", default=None, help="keep the int8 files in DIR/RECIPE/")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from lrface.models.loader import load_embedder

    names = args.recipes.split(",")
    unknown = [n for n in names if n not in RECIPES]
    if unknown or args.reference not in names:
        raise SystemExit(f"--recipes: unknown {unknown} or no --reference {args.reference}")
    assert args.fidelity <= quantize.CALIB_SKIP, "fidelity faces must not be calibration faces"
    held, _ = quantize.calibration_crops(args.lfw, args.fidelity, args.seed, 0)
    fp32 = load_embedder(args.model)
    teacher = load_embedder(TEACHER)
    ref = {s: fp32.embed_crops(views(held, s)) for s in (0, 8, 16)}
    speed_crops = held[:256]
    cache: dict[int, tuple[list[np.ndarray], list[str]]] = {}
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lrface-int8-select-"))
    rows: list[dict] = []
    try:
        for name in names:
            recipe = RECIPES[name]
            n = recipe["images"]
            if n not in cache:
                cache[n] = quantize.calibration_crops(args.lfw, n, args.seed, quantize.CALIB_SKIP)
            out = tmp / name
            out.mkdir(parents=True, exist_ok=True)
            card = quantize.quantize(args.model, *cache[n], recipe_args(recipe, out, args.seed))
            emb = load_embedder(out / f"{card['name']}.json")
            kept = card["quantization"]["float_nodes"]
            row: dict = {"recipe": name, **recipe, "float_nodes": len(kept)}
            row["sha256"] = card["sha256"]
            row["calib_seconds"] = card["quantization"]["seconds"]
            for s in (0, 8, 16):
                cos = (ref[s] * emb.embed_crops(views(held, s))).sum(1)
                row[f"cos_{s or 'hr'}_mean"] = round(float(cos.mean()), 5)
                row[f"cos_{s or 'hr'}_min"] = round(float(cos.min()), 4)
            t_int8 = crops_per_s(emb, speed_crops)
            t_teacher = crops_per_s(teacher, speed_crops)
            row["crops_per_s"] = round(t_int8, 1)
            row["x_teacher"] = round(t_int8 / t_teacher, 2)
            row["card"] = str(out / f"{card['name']}.json")
            rows.append(row)
            print(json.dumps(row), flush=True)
        ref_cos = next(r["cos_16_mean"] for r in rows if r["recipe"] == args.reference)
        eligible = [
            r for r in rows
            if r["recipe"] != args.reference and r["x_teacher"] >= 2.0
            and r["cos_16_mean"] > ref_cos
        ]  # fmt: skip
        eligible.sort(key=lambda r: -r["cos_16_mean"])
        finalists = eligible[: args.finalists]
        print(json.dumps({"eligible": [r["recipe"] for r in eligible]}), flush=True)
        base = val_accuracy(fp32, teacher, args.lfw) if finalists else None
        print(json.dumps({"stage2": args.model, "val_16px": base}), flush=True)
        for r in finalists:
            r["val_16px"] = val_accuracy(load_embedder(r["card"]), teacher, args.lfw)
            r["val_gap"] = round(r["val_16px"] - base, 2)
            print(json.dumps({"stage2": r["recipe"], "val_16px": r["val_16px"]}), flush=True)
        finalists.sort(key=lambda r: (-r["val_16px"], -r["cos_16_mean"]))
        winner = finalists[0] if finalists else None
        passed = winner is not None and -winner["val_gap"] <= args.max_val_loss + 1e-9
        result = {
            "model": args.model,
            "fp32_val_16px": base,
            "reference_cos_16_mean": ref_cos,
            "stage2_winner": winner["recipe"] if winner else None,
            "to_test_split": passed,
            "rows": rows,
            "fidelity_faces": len(held),
            "load_average": os.getloadavg(),
        }
        summary = {k: result[k] for k in ("stage2_winner", "to_test_split", "fp32_val_16px")}
        print(json.dumps(summary), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
