"""Recall of ``canvas="image"`` for several smallest canvas sides, against the 640 px canvas.

    python benchmarks/canvas_recall.py [--n 300] [--sides 320,384,448,480,512,576]
                                       [--detectors scrfd-2.5g,yunet] [--det-threshs 0.5,0.4]

The image sets of ``benchmarks/detect_speed.py`` (seeded: ``--n`` LFW photos, seed 0, and
``--n`` 352x288 frames with 1-3 LFW faces pasted at 24-72 px, seed 1).  For each detector
the old path (``canvas="fixed"``: every image fitted to 640 px) runs once, then the new
one (``canvas="image"``) with :data:`lrface.faces.detect.MIN_CANVAS_SIDE` set to each of
``--sides``.  Recall, face by face: a pasted face is found when a detection's box centre
lies in its square; ``lost`` = pasted faces the old path found and the new one did not
(with their sides in px), ``gained`` the reverse, ``frames_false`` detections on a frame
whose centre lies in no pasted face; on LFW photos, images with at least one face
lost/gained and the faces found.  ``--det-threshs``: score thresholds of the new path (none:
each detector's default), each side run at each threshold; the old path keeps the default.
Recall only: the paths are not interleaved, so no
speed is reported here (``detect_speed.py`` times them).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from detect_speed import lfw_photos, make_frames  # noqa: E402


def pasted_found(faces: list[list], truth: list[list[tuple[int, int, int]]]) -> set:
    """``(frame, pasted face)`` indices of the pasted faces some detection's centre hits."""
    found = set()
    for k, (fs, boxes) in enumerate(zip(faces, truth)):
        for f in fs:
            cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
            for i, (x, y, s) in enumerate(boxes):
                if x <= cx <= x + s and y <= cy <= y + s:
                    found.add((k, i))
    return found


def false_detections(faces: list[list], truth: list[list[tuple[int, int, int]]]) -> int:
    """Detections whose box centre lies in none of their frame's pasted faces."""
    return sum(
        not any(x <= (f.box[0] + f.box[2]) / 2 <= x + s and y <= (f.box[1] + f.box[3]) / 2 <= y + s
                for x, y, s in boxes)
        for fs, boxes in zip(faces, truth)
        for f in fs
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--sides", default="320,384,448,480,512,576")
    ap.add_argument("--detectors", default="scrfd-2.5g,yunet")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--det-threshs", default="", help="comma list; empty: the default")
    ap.add_argument("--lfw", default=str(REPO.parent / "shared" / "data" / "lfw"))
    args = ap.parse_args()

    detect = importlib.import_module("lrface.faces.detect")  # the module, not the function
    photos = lfw_photos(Path(args.lfw))
    pick = np.random.default_rng(args.seed).choice(len(photos), args.n, replace=False)
    lfw = [cv2.imread(str(photos[int(i)])) for i in sorted(pick)]
    frames, truth = make_frames(photos, args.n, args.seed + 1)
    for name in args.detectors.split(","):
        det = detect.load_detector(name)
        old_frames = [det.detect(f, canvas="fixed") for f in frames]
        old = pasted_found(old_frames, truth)
        old_lfw = [det.detect(im, canvas="fixed") for im in lfw]
        with_face = {k for k, f in enumerate(old_lfw) if f}
        print(json.dumps({
            "detector": name, "canvas": "fixed", "pasted": sum(map(len, truth)),
            "frames_found": len(old), "frames_false": false_detections(old_frames, truth),
            "det_thresh": det.det_thresh, "lfw_with_face": len(with_face),
            "lfw_faces": sum(map(len, old_lfw)),
        }), flush=True)  # fmt: skip
        threshs = [float(t) for t in args.det_threshs.split(",") if t] or [None]
        for side, th in ((int(s), t) for s in args.sides.split(",") for t in threshs):
            detect.MIN_CANVAS_SIDE = side
            new_frames = [det.detect(f, canvas="image", det_thresh=th) for f in frames]
            new = pasted_found(new_frames, truth)
            new_lfw = [det.detect(im, canvas="image", det_thresh=th) for im in lfw]
            new_with = {k for k, f in enumerate(new_lfw) if f}
            print(json.dumps({
                "detector": name, "canvas": "image", "min_canvas_side": side,
                "det_thresh": th if th is not None else det.det_thresh,
                "frames_found": len(new), "frames_lost": len(old - new),
                "frames_false": false_detections(new_frames, truth),
                "frames_gained": len(new - old),
                "lost_sides_px": sorted(truth[k][i][2] for k, i in old - new),
                "lfw_with_face": len(new_with), "lfw_images_lost": len(with_face - new_with),
                "lfw_images_gained": len(new_with - with_face),
                "lfw_faces": sum(map(len, new_lfw)),
            }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
