"""Whole-command ``lrface embed`` with detection: photos/s on LFW photos and 352x288 frames.

    python benchmarks/embed_detect_speed.py [--n 1000] [--detectors scrfd-2.5g,yunet]
                                            [--workdir runs/embed-detect] [--json OUT]

The image sets of ``benchmarks/detect_speed.py``: ``--n`` seeded LFW photos (250x250,
seed 0, linked into ``WORKDIR/photos``) and ``--n`` seeded 352x288 frames with 1-3 LFW
faces pasted at 24-72 px (seed 1, written as JPEG quality 95 into ``WORKDIR/frames``).
For each detector and set, ``python -m lrface embed DIR --out OUT.npz --detector D`` runs
as a new process (detection, alignment, the model chosen per face, writing; default
workers and batch size), once after a warm-up run on 20 images of the set.  Printed per
run: the wall time of the whole command, images/s, images with an embedded face, the
command's own ``seconds`` line, and the process's peak RSS (``wait4``; the main process,
not its worker processes).  One JSON line per run; ``--json`` writes them all atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from detect_speed import lfw_photos, make_frames  # noqa: E402


def build_sets(lfw: Path, n: int, workdir: Path) -> dict[str, Path]:
    """``{"lfw-photos": dir, "frames-352x288": dir}`` with ``n`` images each (kept if built)."""
    photos_dir, frames_dir = workdir / "photos", workdir / "frames"
    photos = lfw_photos(lfw)
    if not photos_dir.is_dir() or len(list(photos_dir.iterdir())) != n:
        shutil.rmtree(photos_dir, ignore_errors=True)
        photos_dir.mkdir(parents=True)
        pick = np.random.default_rng(0).choice(len(photos), n, replace=False)
        for k, i in enumerate(sorted(pick)):
            os.symlink(photos[int(i)].resolve(), photos_dir / f"{k:05d}.jpg")
    if not frames_dir.is_dir() or len(list(frames_dir.iterdir())) != n:
        shutil.rmtree(frames_dir, ignore_errors=True)
        frames_dir.mkdir(parents=True)
        frames, _ = make_frames(photos, n, 1)
        for k, frame in enumerate(frames):
            cv2.imwrite(str(frames_dir / f"{k:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return {"lfw-photos": photos_dir, "frames-352x288": frames_dir}


def run_embed(images: Path, out: Path, detector: str) -> dict:
    """One ``lrface embed`` process: wall seconds, peak RSS (MB), its summary line, faces."""
    cmd = [sys.executable, "-m", "lrface", "embed", str(images), "--out", str(out)]
    cmd += ["--detector", detector]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    rc = os.waitstatus_to_exitcode(status)
    if rc not in (0, 3):
        raise SystemExit(f"{' '.join(cmd)}: exit {rc}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    with np.load(out, allow_pickle=False) as data:
        embedded = int(len(data["paths"]))
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "embedded": embedded, "command_seconds": summary.get("seconds")}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--detectors", default="scrfd-2.5g,yunet")
    ap.add_argument("--lfw", default=str(REPO.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--workdir", default=str(REPO / "runs" / "embed-detect"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    workdir = Path(args.workdir)
    sets = build_sets(Path(args.lfw), args.n, workdir)
    rows = []
    for set_name, images in sets.items():
        warm = workdir / f"warm-{set_name}"
        shutil.rmtree(warm, ignore_errors=True)
        warm.mkdir()
        for p in sorted(images.iterdir())[:20]:
            os.symlink(p.resolve(), warm / p.name)
        for det in args.detectors.split(","):
            out = workdir / f"{set_name}-{det}.npz"
            run_embed(warm, workdir / "warm.npz", det)
            for stale in (out, workdir / "warm.npz"):
                stale.unlink(missing_ok=True)
            res = run_embed(images, out, det)
            row = {"set": set_name, "detector": det, "images": args.n, **res,
                   "images_per_s": round(args.n / res["wall_s"], 2),
                   "load_avg_1min": round(os.getloadavg()[0], 2)}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json:
        with tempfile.NamedTemporaryFile("w", dir=Path(args.json).parent or ".", delete=False) as f:
            json.dump(rows, f, indent=1)
        os.replace(f.name, args.json)


if __name__ == "__main__":
    main()
