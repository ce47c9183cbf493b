"""`lrface embed` at scale: 5,000 real LFW face crops, teacher vs students, kill + resume.

    python benchmarks/embed_resume.py --data ../shared/data/lfw --out runs/embed5k \
        --size 16 --n 5000 --models mobilefacenet-arcface,lrface-tiny-16,lrface-mbf

1. Writes the first ``--n`` LFW images (sorted paths) as surveillance-style crops: the
   SCRFD-2.5g aligned 112x112 face reduced to ``--size`` px (area), one PNG each, under
   ``OUT/crops<size>/<identity>/``.
2. Embeds the folder with each model through the CLI (``lrface embed DIR --no-detect``,
   batch 256, flip fusion as shipped) and reads the run's ``crops_per_second`` (decode +
   resize + embed + write; model loading excluded); prints the ratio to the first model
   (the teacher), all in this one run on this machine.
3. Kill and resume with ``--kill-model`` (default ``lrface-tiny-16``): an uninterrupted
   run into ``OUT/full``, then the same command into ``OUT/resumed`` killed with SIGKILL
   once half of its shards are on disk, then re-run unchanged.  Every output file of the
   two directories (``paths.txt``, ``emb-*.npy``, ``idx-*.npy``, ``fail-*.tsv``,
   ``failures.tsv``) must be byte-identical, and the merged embeddings
   (:func:`lrface.batch.embed.load_embeddings`) equal, ordering included.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from lrface.batch.embed import load_embeddings
from lrface.datasets.facecache import aligned_crops
from lrface.datasets.lfw import LFW


def write_crops(lfw: LFW, out: Path, n: int, size: int) -> Path:
    root = out / f"crops{size}"
    faces = aligned_crops(lfw.image_dir, lfw.all_images)
    for rel, crop in list(zip(faces["paths"].tolist(), faces["crops"]))[:n]:
        dst = root / Path(rel).with_suffix(".png")
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(dst), cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
    return root


def embed_cmd(lrface: str, root: Path, model: str, out: Path, args) -> list[str]:
    return [
        lrface, "embed", str(root), "--no-detect", "--quiet", "--model", model,
        "--out", str(out), "--batch-size", "256", "--workers", str(args.workers),
        "--shard-size", str(args.shard_size),
    ]  # fmt: skip


def run_json(cmd: list[str]) -> dict:
    print("$", " ".join(cmd), flush=True)
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="../shared/data/lfw")
    ap.add_argument("--out", default="runs/embed5k")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--models", default="mobilefacenet-arcface,lrface-tiny-16,lrface-mbf")
    ap.add_argument("--kill-model", default="lrface-tiny-16")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--shard-size", type=int, default=500)
    ap.add_argument("--lrface", default=str(Path(sys.executable).with_name("lrface")))
    args = ap.parse_args()
    out = Path(args.out)
    root = write_crops(LFW(args.data), out, args.n, args.size)
    print(f"{args.n} crops of {args.size}x{args.size} px under {root}")

    speeds = {}
    for model in args.models.split(","):
        dst = out / f"speed-{model}"
        shutil.rmtree(dst, ignore_errors=True)
        summary = run_json(embed_cmd(args.lrface, root, model, dst, args))
        speeds[model] = summary["crops_per_second"]
        print(f"  {model}: {summary['n_embedded']} embedded, {speeds[model]} crops/s")
    base = next(iter(speeds.values()))
    for model, v in speeds.items():
        print(f"{model:24s} {v:9.1f} crops/s  {v / base:6.2f}x the first model")

    full, resumed = out / "full", out / "resumed"
    for d in (full, resumed):
        shutil.rmtree(d, ignore_errors=True)
    run_json(embed_cmd(args.lrface, root, args.kill_model, full, args))
    cmd = embed_cmd(args.lrface, root, args.kill_model, resumed, args)
    print("$", " ".join(cmd), "(killed half-way)", flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    man = resumed / "manifest.json"
    n_shards, done = -(-args.n // args.shard_size), 0
    while proc.poll() is None:
        try:
            done = len(json.loads(man.read_text())["completed_shards"])
        except (OSError, ValueError, KeyError):
            done = 0
        if done >= n_shards // 2:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    print(f"killed (exit {proc.returncode}) with {done} of {n_shards} shards on disk")
    summary = run_json(cmd)
    print(f"resumed: skipped {summary['shards_skipped']} shards, wrote {summary['shards_written']}")
    names = sorted(p.name for p in full.iterdir() if p.name != "manifest.json")
    same = [n for n in names if filecmp.cmp(full / n, resumed / n, shallow=False)]
    extra = sorted({p.name for p in resumed.iterdir()} - set(names) - {"manifest.json"})
    a, b = load_embeddings(full), load_embeddings(resumed)
    merged_equal = a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2] == b[2]
    print(
        f"byte-identical files: {len(same)}/{len(names)}; extra files: {extra}; "
        f"merged embeddings equal (order included): {merged_equal}; rows: {len(a[0])}"
    )
    ok = len(same) == len(names) and not extra and merged_equal and summary["shards_skipped"] > 0
    print("RESUME CHECK:", "PASS" if ok else "FAIL")
    (out / "summary.json").write_text(
        json.dumps(
            {"crops_per_second": speeds, "resume_identical": ok, "killed_at_shards": done},
            indent=2,
        )
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
