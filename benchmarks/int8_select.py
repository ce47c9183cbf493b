"""Choose lrface-mbf's int8 recipe on LFW train-split faces and the validation folds only.

    python benchmarks/int8_select.py [--model lrface-mbf] [--fidelity 300] [--finalists 2]
                                     [--recipes NAME,...] [--json OUT]

Decision rule (written before the first run, issue 33):

1. Every recipe of :data:`RECIPES` is quantized with ``benchmarks/quantize.py``'s code
   (calibration: LFW train-split faces of no validation identity, from
   ``quantize.CALIB_SKIP`` on).  Stage 1 ranks them by the mean cosine between the fp32
   and the int8 embeddings (flip fusion on) of ``--fidelity`` held-out train-split faces
   (``quantize.calibration_pool``'s first faces, never used for calibration) reduced to
   16 px and brought back to 112 px as the model receives them; the 8 px and HR cosines
   and the model's crops/s (the fp32 teacher's measured in the same loop) are reported.
   A recipe below 2x the teacher's crops/s is out.
2. The ``--finalists`` best go to stage 2: LFW **validation** split (folds 1-5, 3,000
   pairs), hr-lr at 16 px, HR side by the fp32 teacher, 5-fold thresholds.  The highest
   accuracy wins; a tie (equal to two decimals) goes to the higher stage-1 cosine.
3. The winner is measured once on the test split (``lrface benchmark``, see RESULTS.md);
   it ships only if its 16 px accuracy is within 0.3 points of fp32 there and its
   crops/s is >= 2x the fp32 teacher's (``benchmarks/int8_speed.py``).

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
}  # fmt: skip


def recipe_args(recipe: dict, out_dir: Path, seed: int) -> argparse.Namespace:
    """quantize.py's arguments for ``recipe``."""
    base = {"method": "minmax", "percentile": 99.999, "keep_float": "", "format": "qdq"}
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
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lfw", default=str(REPO.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from lrface.models.loader import load_embedder

    assert args.fidelity <= quantize.CALIB_SKIP, "fidelity faces must not be calibration faces"
    held, _ = quantize.calibration_crops(args.lfw, args.fidelity, args.seed, 0)
    fp32 = load_embedder(args.model)
    teacher = load_embedder(TEACHER)
    ref = {s: fp32.embed_crops(views(held, s)) for s in (0, 8, 16)}
    speed_crops = held[:256]
    cache: dict[int, tuple[list[np.ndarray], list[str]]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="lrface-int8-select-"))
    rows: list[dict] = []
    try:
        for name in args.recipes.split(","):
            recipe = RECIPES[name]
            n = recipe["images"]
            if n not in cache:
                cache[n] = quantize.calibration_crops(args.lfw, n, args.seed, quantize.CALIB_SKIP)
            out = tmp / name
            out.mkdir()
            card = quantize.quantize(args.model, *cache[n], recipe_args(recipe, out, args.seed))
            emb = load_embedder(out / f"{card['name']}.json")
            kept = card["quantization"]["float_nodes"]
            row: dict = {"recipe": name, **recipe, "float_nodes": kept}
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
        fast = [r for r in rows if r["x_teacher"] >= 2.0]
        fast.sort(key=lambda r: -r["cos_16_mean"])
        finalists = fast[: args.finalists]
        base = val_accuracy(fp32, teacher, args.lfw)
        print(json.dumps({"stage2": args.model, "val_16px": base}), flush=True)
        for r in finalists:
            r["val_16px"] = val_accuracy(load_embedder(r["card"]), teacher, args.lfw)
            r["val_gap"] = round(r["val_16px"] - base, 2)
            print(json.dumps({"stage2": r["recipe"], "val_16px": r["val_16px"]}), flush=True)
        finalists.sort(key=lambda r: (-r["val_16px"], -r["cos_16_mean"]))
        chosen = finalists[0]["recipe"] if finalists else None
        result = {
            "model": args.model,
            "fp32_val_16px": base,
            "chosen": chosen,
            "rows": rows,
            "fidelity_faces": len(held),
            "load_average": os.getloadavg(),
        }
        print(json.dumps({"chosen": chosen, "fp32_val_16px": base}), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
