"""Peak memory and wall time of whole ``lrface`` processes, old code vs this checkout, one run.

    python benchmarks/memory.py [--old-ref REF] [--new-ref HEAD] [--crops 2000] [--repeats 1]
                                [--json OUT]

Inputs: ``--crops`` 112x112 face crops cut from LFW photos (``../shared/data/lfw``,
seeded choice; the centre 150x150 of each 250x250 deep-funneled photo resized to 112,
i.e. roughly the face) written as PNGs to a temp tree ``ROOT/<identity>/<photo>.png``.
Commands, each run as its own process (``python -m lrface ...``):

- ``embed ROOT --no-detect --out X.npz`` at the default ``--batch-size`` and at
  ``--batch-size`` 32, 1024 and 100000;
- ``gallery build ROOT --no-detect`` with the teacher (its default);
- ``benchmark --protocol folder --data ROOT --no-detect --no-cache``.

Each command runs with the code of ``--old-ref`` (default ``main``: name the commit before
the change) and of ``--new-ref`` (default ``HEAD``; commit what you measure): their
``lrface/`` and ``weights/`` are extracted with ``git archive`` into a temp dir and run
with ``PYTHONPATH`` there.  The two large ``--batch-size`` runs are new code only: the old
code is known to peak at ~8 GB there (issue 33), which would starve a shared machine.  Reported
per run: ``peak_main_mb`` (the lrface process's own peak RSS, from ``wait4``'s
``ru_maxrss``: exact), ``peak_tree_mb`` (the largest sum of RSS over the process and its
descendants -- decode/align workers -- sampled every 20 ms from ``/proc``), and the wall
seconds.  Figures depend on the machine and its load: compare old and new of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_crop_tree(lfw_dir: Path, root: Path, n: int, seed: int = 0) -> int:
    """Write ``n`` 112x112 BGR PNG crops (centre of seeded LFW photos) under
    ``root/<identity>/``; return the number of identities."""
    people = sorted(p for p in (lfw_dir / "lfw-deepfunneled").iterdir() if p.is_dir())
    photos = [f for p in people for f in sorted(p.glob("*.jpg"))]
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(photos), size=n, replace=False))
    ids = set()
    for i in chosen:
        f = photos[int(i)]
        im = cv2.imread(str(f))
        h, w = im.shape[:2]
        c = im[h // 2 - 75 : h // 2 + 75, w // 2 - 75 : w // 2 + 75]
        d = root / f.parent.name
        d.mkdir(parents=True, exist_ok=True)
        crop = cv2.resize(c, (112, 112), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(d / (f.stem + ".png")), crop)
        ids.add(f.parent.name)
    return len(ids)


def extract_ref(ref: str, dest: Path) -> Path:
    """``lrface/`` and ``weights/`` of git ``ref`` extracted into ``dest``; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    tar = dest / "src.tar"
    subprocess.run(
        ["git", "-C", str(REPO), "archive", "-o", str(tar), ref, "lrface", "weights"], check=True
    )
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    tar.unlink()
    return dest


def _commit(ref: str) -> str:
    """The full commit id of git ``ref``."""
    out = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", ref], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def _tree_rss_kb(pid: int) -> int:
    """Sum of VmRSS (kB) of ``pid`` and its descendants, from /proc (0 if gone)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        rss[int(d)] = int(line.split()[1])
                        break
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def run_measured(cmd: list[str], env: dict[str, str], log: Path, cwd: Path) -> dict:
    """Run ``cmd`` in ``cwd`` (``python -m`` imports from there first: the code's own
    directory); return exit status, wall seconds, peak_main_mb and peak_tree_mb."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss_kb(proc.pid))
            done.wait(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    th.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "rc": proc.returncode,
        "seconds": round(time.perf_counter() - t0, 2),
        "peak_main_mb": round(usage.ru_maxrss / 1024),
        "peak_tree_mb": round(max(peak[0], usage.ru_maxrss) / 1024),
    }


#: commands run with the new code only (the old one peaks at ~8 GB there)
NEW_ONLY = ("embed --batch-size 1024", "embed --batch-size 100000")


def commands(root: Path, out: Path) -> list[tuple[str, list[str]]]:
    """(label, lrface arguments) of every measured command."""
    embed = ["embed", str(root), "--no-detect", "--quiet", "--out"]
    return [
        ("embed (default batch)", [*embed, str(out / "e.npz")]),
        ("embed --batch-size 32", [*embed, str(out / "e32.npz"), "--batch-size", "32"]),
        ("embed --batch-size 1024", [*embed, str(out / "e1k.npz"), "--batch-size", "1024"]),
        ("embed --batch-size 100000", [*embed, str(out / "e100k.npz"), "--batch-size", "100000"]),
        (
            "gallery build (teacher)",
            ["gallery", "build", str(root), "--no-detect", "--quiet", "--out", str(out / "g.npz")],
        ),
        (
            "benchmark --protocol folder",
            [
                *("benchmark", "--protocol", "folder", "--data", str(root), "--no-detect"),
                *("--no-cache", "--no-progress", "--out", str(out / "bench")),
            ],
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--old-ref", default="main", help="git ref of the old code (default main)")
    ap.add_argument("--new-ref", default="HEAD", help="git ref of the new code (default HEAD)")
    ap.add_argument("--crops", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=1, help="runs per (command, code); medians")
    ap.add_argument("--lfw", default=str(REPO.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--json", default=None, help="write the rows here")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="lrface-mem-"))
    try:
        root = tmp / "crops"
        n_ids = make_crop_tree(Path(args.lfw), root, args.crops)
        codes = {
            "old": extract_ref(args.old_ref, tmp / "old"),
            "new": extract_ref(args.new_ref, tmp / "new"),
        }
        rows = []
        for label, argv in commands(root, tmp):
            for code, src in codes.items():
                if code == "old" and label in NEW_ONLY:
                    continue
                env = dict(os.environ, PYTHONPATH=str(src))
                runs = []
                for r in range(args.repeats):
                    for f in tmp.glob("e*.npz*"):
                        shutil.rmtree(f, ignore_errors=True) if f.is_dir() else f.unlink()
                    shutil.rmtree(tmp / "bench", ignore_errors=True)
                    runs.append(
                        run_measured(
                            [sys.executable, "-m", "lrface", *argv],
                            env,
                            tmp / f"{code}-{r}.log",
                            cwd=src,
                        )
                    )
                    if runs[-1]["rc"] not in (0, 1):
                        print((tmp / f"{code}-{r}.log").read_text()[-2000:], file=sys.stderr)
                row = {
                    "command": label,
                    "code": code,
                    "rc": runs[-1]["rc"],
                    **{
                        k: float(np.median([x[k] for x in runs]))
                        for k in ("seconds", "peak_main_mb", "peak_tree_mb")
                    },
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
        info = {
            "crops": args.crops,
            "identities": n_ids,
            "old_ref": args.old_ref,
            "old_commit": _commit(args.old_ref),
            "new_ref": args.new_ref,
            "new_commit": _commit(args.new_ref),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "rows": rows,
        }
        if args.json:
            Path(args.json).write_text(json.dumps(info, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
