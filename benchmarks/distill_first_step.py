"""How long a small `lrface distill` takes on a cold cache, up to and past its first step.

    LRFACE_HOME=../shared python benchmarks/distill_first_step.py [--ids 8] [--unlabelled 8]

Builds, in a temporary folder, a labelled folder of ``--ids`` LFW **train**-split
identities x 2 photos and an unlabelled folder of ``--unlabelled`` UTKFace photos (24
photos by default), points ``LRFACE_CACHE`` at an empty folder (cold: nothing aligned,
no teacher targets) and runs, with LFW present (the test-identity guard on)::

    lrface distill --data labelled:DIR --data unlabelled:DIR --student lrface-tiny-16
        --epochs 1 --batch-size 8 --max-steps 1 --loss kd --val-sizes '' --out RUN

Prints one JSON line: ``seconds_to_first_step`` (from the start of the command to the
line ``epoch 1: ...`` it prints once its one step and the checkpoint are done: an upper
bound of the time to the first step), ``seconds`` (the whole command, the card's
threshold calibration on the held-out identities after the step included), ``stages``
(seconds from the start at which each log line appeared: where the time goes) and what
the card recorded.  Target (issue 28): ``seconds_to_first_step`` <= 60 s; state the
machine load (``load_average_1min``, printed) beside it.
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
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _timed_run(cmd: list[str], env: dict[str, str], t0: float) -> tuple[list[str], float]:
    """Run ``cmd``; returns ``["12.3s message", ...]`` for each stdout/stderr line (progress
    bars left out) and the seconds at which the line ``epoch 1: ...`` appeared."""
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    stages, first_step = [], float("nan")
    for line in proc.stdout:
        now = round(time.perf_counter() - t0, 1)
        line = line.strip()
        if line and "%|" not in line:
            stages.append(f"{now}s {line[:100]}")
        if line.startswith("epoch 1:") and first_step != first_step:
            first_step = now
    if proc.wait() != 0:
        raise SystemExit(f"distill failed: {stages[-3:]}")
    return stages, first_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ids", type=int, default=8, help="labelled identities (2 photos each)")
    ap.add_argument("--unlabelled", type=int, default=8, help="UTKFace photos")
    a = ap.parse_args()
    shared = Path(os.environ.get("LRFACE_HOME", REPO.parent / "shared"))
    sys.path.insert(0, str(REPO))
    from lrface.datasets.lfw import LFW

    lfw = LFW(shared / "data" / "lfw")
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        counts = Counter(r.split("/")[0] for r in lfw.train_images())
        for name in [k for k in sorted(counts) if counts[k] >= 2][: a.ids]:
            (t / "people" / name).mkdir(parents=True)
            for f in sorted((lfw.image_dir / name).iterdir())[:2]:
                shutil.copy(f, t / "people" / name / f.name)
        (t / "photos").mkdir()
        utk = sorted((shared / "data" / "utkface" / "images").iterdir())
        for f in utk[:: len(utk) // a.unlabelled][: a.unlabelled]:
            shutil.copy(f, t / "photos" / f.name)
        env = {**os.environ, "LRFACE_CACHE": str(t / "cache"), "LRFACE_HOME": str(shared),
               "PYTHONPATH": str(REPO)}  # fmt: skip
        cmd = [sys.executable, "-m", "lrface", "distill", "--data", f"labelled:{t / 'people'}",
               "--data", f"unlabelled:{t / 'photos'}", "--student", "lrface-tiny-16",
               "--epochs", "1", "--batch-size", "8", "--max-steps", "1", "--loss", "kd",
               "--val-sizes", "", "--quiet", "--out", str(t / "run")]  # fmt: skip
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        stages, first_step = _timed_run(cmd, env, t0)
        seconds = time.perf_counter() - t0
        card = json.loads((t / "run" / "lrface-tiny-16.json").read_text())
    print(
        json.dumps(
            {
                "photos": 2 * a.ids + a.unlabelled,
                "seconds_to_first_step": first_step,
                "seconds": round(seconds, 1),
                "stages": stages,
                "steps": card["history"][-1]["step"],
                "guard": card["data"]["test_guard"].get("reference"),
                "guard_dropped": card["data"]["test_guard"].get("dropped"),
                "threshold": card["threshold"],
                "threshold_vs_teacher": card.get("threshold_vs_teacher"),
                "load_average_1min": [round(load, 1), round(os.getloadavg()[0], 1)],
            }
        )
    )


if __name__ == "__main__":
    main()
