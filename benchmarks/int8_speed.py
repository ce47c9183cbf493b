"""Crops per second, fp32 vs int8, of the model alone and of the whole ``embed`` command, one run.

    python benchmarks/int8_speed.py [--models lrface-mbf,lrface-tiny-16,...]
                                    [--crops 512] [--rounds 3] [--json OUT]

Inputs: ``--crops`` 112x112 crops cut from seeded LFW photos (as ``benchmarks/memory.py``).

- model alone: ``load_embedder(name, precision=p).embed_crops(crops)`` (flip fusion on, as
  deployed), every (model, precision) once per round, the rounds interleaved so that a
  shared machine's load falls on each alike; the best round is reported;
- whole command: ``python -m lrface embed CROPS --no-detect --model NAME --precision P``
  (process start, model load, decode, embed, write), once per round, best round.

Every model of ``--models`` runs at fp32 and int8; the fp32 teacher
(``mobilefacenet-arcface``) always runs, and ratios are to it, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from memory import make_crop_tree  # noqa: E402

TEACHER = "mobilefacenet-arcface"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default="lrface-mbf,lrface-tiny-16")
    ap.add_argument("--crops", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lfw", default=str(REPO.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from lrface.io.images import list_images
    from lrface.models.loader import load_embedder

    tmp = Path(tempfile.mkdtemp(prefix="lrface-int8-"))
    try:
        root = tmp / "crops"
        make_crop_tree(Path(args.lfw), root, args.crops)
        crops = [cv2.imread(str(p)) for p in list_images(root)]
        variants = [(m, p) for m in args.models.split(",") for p in ("fp32", "int8")]
        variants = [(TEACHER, "fp32"), *[v for v in variants if v != (TEACHER, "fp32")]]
        embs = {v: load_embedder(v[0], precision=v[1]) for v in variants}
        for e in embs.values():
            e.embed_crops(crops[:8])  # warm-up
        alone = {v: 0.0 for v in variants}
        whole = {v: 0.0 for v in variants}
        for _ in range(args.rounds):
            for v in variants:
                t0 = time.perf_counter()
                embs[v].embed_crops(crops)
                alone[v] = max(alone[v], len(crops) / (time.perf_counter() - t0))
            for v in variants:
                out = tmp / "e.npz"
                cmd = [sys.executable, "-m", "lrface", "embed", str(root), "--no-detect"]
                cmd += ["--quiet", "--model", v[0], "--precision", v[1], "--out", str(out)]
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
                whole[v] = max(whole[v], len(crops) / (time.perf_counter() - t0))
                out.unlink()
        base_a, base_w = alone[(TEACHER, "fp32")], whole[(TEACHER, "fp32")]
        rows = []
        for v in variants:
            row = {
                "model": embs[v].name,
                "precision": v[1],
                "alone_crops_per_s": round(alone[v], 1),
                "alone_vs_fp32_teacher": round(alone[v] / base_a, 2),
                "embed_crops_per_s": round(whole[v], 1),
                "embed_vs_fp32_teacher": round(whole[v] / base_w, 2),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        info = {
            "crops": len(crops),
            "rounds": args.rounds,
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "load_average": os.getloadavg(),
            "rows": rows,
        }
        if args.json:
            Path(args.json).write_text(json.dumps(info, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
