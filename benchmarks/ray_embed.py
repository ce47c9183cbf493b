"""`lrface embed --engine ray` vs the local engine on LFW face crops, on this machine.

    python benchmarks/ray_embed.py --data ../shared/data/lfw --out runs/ray-embed \
        --n 5000 --size 16 --model lrface-mbf --actors 2 --cpus-per-actor 0.5

1. Writes the first ``--n`` LFW images (sorted paths) as ``--size`` px crops: with
   ``--crop aligned`` the SCRFD-2.5g aligned 112x112 face (as ``benchmarks/embed_resume.py``;
   needs the face cache, hours of detection on a busy 2-core machine without it), with
   ``--crop centre`` (default) the fixed central 112x112 window of the deep-funneled photo
   (where LFW's funnelled face lies), both reduced with area interpolation.
2. Embeds them through the CLI with ``--engine local --workers 0`` (one process) and with
   ``--engine ray`` on a local cluster started by the command (``--actors`` actors of
   ``--cpus-per-actor`` CPUs), in this order, both from scratch.
3. Reports each run's wall time, ``crops_per_second`` (the shard loop: decode + resize +
   embed + write, model loading and Ray start-up excluded), the throughput ratio, Ray's
   fixed start-up cost (cluster + actors + model loading, ``ray_startup_seconds``), and
   whether every output file (manifest included) is byte-identical.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2

from lrface.datasets.lfw import LFW

#: The central window of a 250x250 deep-funneled LFW photo holding the face.
CENTRE = (slice(69, 181), slice(69, 181))


def centre_crops(lfw: LFW, out: Path, n: int, size: int) -> Path:
    """The first ``n`` LFW photos' central 112x112 window reduced to ``size`` px (PNG)."""
    root = out / f"centre{size}"
    for rel in lfw.all_images[:n]:
        dst = root / Path(rel).with_suffix(".png")
        if not dst.exists():
            img = cv2.imread(str(lfw.image_dir / rel))
            dst.parent.mkdir(parents=True, exist_ok=True)
            small = cv2.resize(img[CENTRE], (size, size), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(dst), small)
    return root


def run(cmd: list[str]) -> tuple[dict, float]:
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode not in (0, 3):
        sys.exit(f"failed ({res.returncode}): {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1]), wall


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="../shared/data/lfw")
    ap.add_argument("--out", default="runs/ray-embed")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--model", default="lrface-mbf")
    ap.add_argument("--shard-size", type=int, default=250)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--cpus-per-actor", type=float, default=0.5)
    ap.add_argument("--crop", default="centre", choices=["centre", "aligned"])
    ap.add_argument("--lrface", default=str(Path(sys.executable).with_name("lrface")))
    args = ap.parse_args()
    out = Path(args.out)
    if args.crop == "aligned":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from embed_resume import write_crops

        root = write_crops(LFW(args.data), out, args.n, args.size)
    else:
        root = centre_crops(LFW(args.data), out, args.n, args.size)
    base = [
        args.lrface, "embed", str(root), "--no-detect", "--quiet", "--model", args.model,
        "--batch-size", "256", "--shard-size", str(args.shard_size),
    ]  # fmt: skip
    local, ray = out / "local", out / "ray"
    for d in (local, ray):
        shutil.rmtree(d, ignore_errors=True)
    s_local, w_local = run([*base, "--out", str(local), "--engine", "local", "--workers", "0"])
    s_ray, w_ray = run(
        [*base, "--out", str(ray), "--engine", "ray", "--ray-actors", str(args.actors),
         "--ray-cpus-per-actor", str(args.cpus_per_actor)]
    )  # fmt: skip
    names = sorted(p.name for p in local.iterdir())
    same = [n for n in names if filecmp.cmp(local / n, ray / n, shallow=False)]
    row = {
        "crops": s_local["n_embedded"],
        "crop": f"{args.crop} {args.size}px",
        "cpus": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 1),
        "local_wall_s": round(w_local, 1),
        "local_crops_per_s": s_local["crops_per_second"],
        "ray_wall_s": round(w_ray, 1),
        "ray_crops_per_s": s_ray["crops_per_second"],
        "ray_startup_s": s_ray["ray_startup_seconds"],
        "throughput_ratio_ray_over_local": round(
            s_ray["crops_per_second"] / s_local["crops_per_second"], 2
        ),
        "wall_ratio_ray_over_local": round(w_ray / w_local, 2),
        "byte_identical_files": f"{len(same)}/{len(names)}",
    }
    print(json.dumps(row, indent=2))
    (out / "summary.json").write_text(json.dumps(row, indent=2))
    sys.exit(0 if len(same) == len(names) else 1)


if __name__ == "__main__":
    main()
