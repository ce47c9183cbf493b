"""Detector speed and recall, the old 640 px canvas vs the canvas sized to the image, one run.

    python benchmarks/detect_speed.py [--n 1000] [--detectors scrfd-2.5g,yunet] [--seed 0]
                                      [--chunk 50] [--json OUT]

Image sets (seeded; built in memory, nothing written):

- ``lfw``: ``--n`` LFW photos (250x250, ``../shared/data/lfw``; a seeded choice among all
  13,233 -- speed and agreement only, no identity is learnt or scored);
- ``frames``: ``--n`` CCTV-size 352x288 frames: a smooth seeded random background with 1-3
  faces pasted at random places, each the centre 150x150 of a seeded LFW photo (the face
  and a little context) resized to 24-72 px.  The pasted squares are the ground truth.

Paths, timed on the same images, interleaved in chunks of ``--chunk`` images so that a
shared machine's load falls on each alike:

- ``old``: ``detector.detect(image, canvas="fixed")`` per image (every image fitted into
  the 640 px canvas, as before);
- ``new``: ``detector.detect(image, canvas="image")`` per image (canvas sized to the
  image: longest side brought into [320, 640]);
- ``new-batched``: ``detector.detect_many(chunk)`` (SCRFD: one network call for the first
  pass of same-size images; YuNet runs per image).

Recall, reported per path: images with at least one face and faces found (``lfw``);
pasted faces found -- a detection whose box centre lies inside the pasted square -- and
detections matching no pasted face (``frames``).  Agreement of ``new`` with ``old`` on
``lfw``: the largest face's landmark shift in units of its inter-ocular distance, and the
cosine between the teacher's embeddings of the two aligned crops (first 300 photos).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
PATHS = ("old", "new", "new-batched")


def lfw_photos(lfw_dir: Path) -> list[Path]:
    """Every LFW photo, sorted."""
    return sorted((lfw_dir / "lfw-deepfunneled").glob("*/*.jpg"))


def make_frames(
    photos: list[Path], n: int, seed: int
) -> tuple[list[np.ndarray], list[list[tuple[int, int, int]]]]:
    """``n`` uint8 BGR 288x352 frames and, per frame, the pasted faces' (x, y, side)."""
    rng = np.random.default_rng(seed)
    frames, truth = [], []
    for _ in range(n):
        small = rng.integers(40, 200, (9, 11, 3)).astype(np.uint8)
        frame = cv2.resize(small, (352, 288), interpolation=cv2.INTER_CUBIC)
        frame = cv2.GaussianBlur(frame, (0, 0), 3)
        boxes: list[tuple[int, int, int]] = []
        for _ in range(int(rng.integers(1, 4))):
            side = int(rng.integers(24, 73))
            for _try in range(20):
                x, y = int(rng.integers(0, 352 - side)), int(rng.integers(0, 288 - side))
                if all(x + side <= bx or bx + bs <= x or y + side <= by or by + bs <= y
                       for bx, by, bs in boxes):  # fmt: skip
                    break
            else:
                continue
            im = cv2.imread(str(photos[int(rng.integers(len(photos)))]))
            c = im[50:200, 50:200]
            face = cv2.resize(c, (side, side), interpolation=cv2.INTER_AREA)
            frame[y : y + side, x : x + side] = face
            boxes.append((x, y, side))
        frames.append(frame)
        truth.append(boxes)
    return frames, truth


def run_path(det, images: list[np.ndarray], path: str) -> list:
    """Faces of every image by ``path`` (see the module docstring)."""
    if path == "old":
        return [det.detect(im, canvas="fixed") for im in images]
    if path == "new":
        return [det.detect(im, canvas="image") for im in images]
    return det.detect_many(images, canvas="image")


def timed(det, images: list[np.ndarray], chunk: int) -> tuple[dict[str, float], dict[str, list]]:
    """Seconds and faces per path, the paths interleaved chunk by chunk."""
    secs = dict.fromkeys(PATHS, 0.0)
    faces: dict[str, list] = {p: [] for p in PATHS}
    run_path(det, images[:2], "old")  # warm-up: sessions, anchor grids
    run_path(det, images[:4], "new-batched")
    for k in range(0, len(images), chunk):
        part = images[k : k + chunk]
        for p in PATHS:
            t0 = time.perf_counter()
            faces[p].extend(run_path(det, part, p))
            secs[p] += time.perf_counter() - t0
    return secs, faces


def frame_recall(faces: list[list], truth: list[list[tuple[int, int, int]]]) -> dict[str, int]:
    """Pasted faces found and detections matching none."""
    found = extra = 0
    for fs, boxes in zip(faces, truth):
        hit = [False] * len(boxes)
        for f in fs:
            cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
            m = [i for i, (x, y, s) in enumerate(boxes) if x <= cx <= x + s and y <= cy <= y + s]
            if m:
                hit[m[0]] = True
            else:
                extra += 1
        found += sum(hit)
    return {"pasted": sum(len(b) for b in truth), "found": found, "unmatched_detections": extra}


def lfw_agreement(images: list[np.ndarray], old: list, new: list, n: int) -> dict[str, float]:
    """Landmark shift (inter-ocular units) and teacher-embedding cosine, old vs new."""
    from lrface.faces.align import align_face
    from lrface.models.loader import load_embedder

    shifts, pairs = [], []
    for im, a, b in zip(images, old, new):
        if not a or not b:
            continue
        iod = float(np.linalg.norm(a[0].landmarks[0] - a[0].landmarks[1]))
        shifts.append(float(np.abs(a[0].landmarks - b[0].landmarks).max()) / max(iod, 1.0))
        if len(pairs) < n:
            pairs.append((align_face(im, a[0].landmarks, 112), align_face(im, b[0].landmarks, 112)))
    teacher = load_embedder("mobilefacenet-arcface")
    ea = teacher.embed_crops([p[0] for p in pairs])
    eb = teacher.embed_crops([p[1] for p in pairs])
    cos = (ea * eb).sum(1)
    return {
        "landmark_shift_iod_median": round(float(np.median(shifts)), 4),
        "landmark_shift_iod_p95": round(float(np.percentile(shifts, 95)), 4),
        "teacher_cosine_median": round(float(np.median(cos)), 4),
        "teacher_cosine_min": round(float(cos.min()), 4),
        "compared": len(pairs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--detectors", default="scrfd-2.5g,yunet")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=50)
    ap.add_argument("--lfw", default=str(REPO.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--min-canvas-side", type=int, default=None, help="try another MIN_CANVAS_SIDE (px)"
    )
    args = ap.parse_args()

    import importlib

    # the module itself: the package attribute ``lrface.faces.detect`` is the API function
    detect_module = importlib.import_module("lrface.faces.detect")
    if args.min_canvas_side:
        detect_module.MIN_CANVAS_SIDE = args.min_canvas_side
    MIN_CANVAS_SIDE = detect_module.MIN_CANVAS_SIDE
    load_detector = detect_module.load_detector

    photos = lfw_photos(Path(args.lfw))
    pick = np.random.default_rng(args.seed).choice(len(photos), args.n, replace=False)
    lfw = [cv2.imread(str(photos[int(i)])) for i in sorted(pick)]
    frames, truth = make_frames(photos, args.n, args.seed + 1)
    rows = []
    for name in args.detectors.split(","):
        det = load_detector(name)
        for set_name, images in (("lfw", lfw), ("frames", frames)):
            secs, faces = timed(det, images, args.chunk)
            row: dict = {"detector": name, "set": set_name, "images": len(images)}
            for p in PATHS:
                row[f"{p}_images_per_s"] = round(len(images) / secs[p], 2)
                if set_name == "lfw":
                    row[f"{p}_with_face"] = sum(bool(f) for f in faces[p])
                    row[f"{p}_faces"] = sum(len(f) for f in faces[p])
                else:
                    row[f"{p}_recall"] = frame_recall(faces[p], truth)
            row["speedup_new"] = round(secs["old"] / secs["new"], 2)
            row["speedup_new_batched"] = round(secs["old"] / secs["new-batched"], 2)
            if set_name == "lfw":
                row["agreement"] = lfw_agreement(images, faces["old"], faces["new"], 300)
            rows.append(row)
            print(json.dumps(row), flush=True)
    info = {
        "n": args.n,
        "seed": args.seed,
        "min_canvas_side": MIN_CANVAS_SIDE,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": os.getloadavg(),
        "rows": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
