"""CPU time per frame of each face detector on the frames of a clip (``watch``'s default).

    python benchmarks/watch_detector_cost.py runs/watch-clips/clip01.avi --frames 40 \
        --detectors yunet,scrfd-2.5g

Each detector runs once on the first frame (warm-up), then on the first ``--frames``
frames; prints per detector the CPU time (``time.process_time``: this process, all
threads -- robust to other jobs on the machine) and wall time per frame and the number of
faces found.
"""

from __future__ import annotations

import argparse
import sys
import time

from lrface.faces.detect import load_detector
from lrface.video.frames import open_video


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("video")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--detectors", default="yunet,scrfd-2.5g")
    args = ap.parse_args()
    frames = []
    for f in open_video(args.video).frames():
        frames.append(f)
        if len(frames) == args.frames:
            break
    for name in args.detectors.split(","):
        det = load_detector(name)
        det.detect(frames[0])
        cpu, wall = time.process_time(), time.perf_counter()
        n = sum(len(det.detect(f)) for f in frames)
        cpu_ms = (time.process_time() - cpu) / len(frames) * 1000
        wall_ms = (time.perf_counter() - wall) / len(frames) * 1000
        print(f"{name}: {cpu_ms:.1f} ms CPU/frame, {wall_ms:.1f} ms wall/frame, {n} faces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
