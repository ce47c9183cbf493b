"""`lrface watch` on synthetic surveillance clips: tracking, identities, frames/s.

    python benchmarks/watch_clips.py --data ../shared/data/lfw --workdir runs/watch-clips \
        --out runs/watch-clips.json --clips 12 --frames 100 --seed 0

Clips (generated here, seeded by ``(--seed, clip index)``; written as MJPG .avi and read
back through :func:`lrface.video.frames.open_video`, as ``lrface watch`` reads a file):

* 352x288 at 25 frames/s; a static background of smooth random texture;
* 1-3 **walkers** per clip, each an LFW *test-split* photo (the central 170x170 of the
  250x250 deep-funneled image, feathered into the background) scaled so the face is
  ``--face-px`` wide (uniform in the range; about 14-28 px), moving in a straight line at
  0.5-2 px/frame (bouncing off the borders), present for a random span of at least half
  the clip;
* each walker is **enrolled** (probability 0.7; its *first* photo is in the gallery, the
  clip shows its *second*) or a **distractor** (a test identity that is not in the
  gallery);
* every frame degraded as a whole with a fresh draw of :data:`lrface.faces.degrade.REALISTIC`
  (blur, motion blur, sensor noise, JPEG).

Gallery: the first photo of ``--gallery-ids`` test identities with >= 2 photos (every
enrolled walker among them), aligned 112x112 (whole-LFW SCRFD-2.5g crop cache) and
embedded by the teacher.

Scores (a reported track belongs to the walker whose ground-truth box holds the centre of
most of its boxes; a detection to the walker whose box holds its centre):

* **track recall**: walkers with at least one track / walkers;
* **identity switches**: over each walker's frames, how often the track id following it
  changes (MOT's IDSW);
* **track-level rank-1**: tracks of enrolled walkers whose top-1 is the walker; the open-set
  decision (identity at the threshold) of enrolled and distractor tracks;
* **single-frame rank-1**: the same detector and crops, every detection of an enrolled
  walker embedded on its own (same model) and searched -- deepface ``stream``-style
  frame-by-frame matching -- for comparison;
* **frames/s** of ``watch_frames`` (decode + detect + track + embed + search; models
  loaded before the clock starts) on the clips and on a clip of the same kind without
  faces, with ``--every 1``.  The machine's load average is recorded beside them.

Decision rule, written before the run (issue 32's floors): >= 25 frames/s at 352x288 with
``--every 1`` when faces are few (1-3 per frame); track-level rank-1 above single-frame
rank-1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from lrface.datasets.lfw import LFW, identity_of
from lrface.eval.protocols.lfw import load_crops
from lrface.faces.degrade import REALISTIC, apply_realistic
from lrface.faces.detect import load_detector
from lrface.faces.pipeline import CropOptions, align_crop
from lrface.io.fileio import write_json_atomic
from lrface.models.loader import load_embedder
from lrface.search.gallery import FlatGallery
from lrface.video.frames import open_video
from lrface.video.watch import WatchSettings, watch_frames

W, H, FPS = 352, 288, 25.0
#: Width of the face inside the central 170x170 of a deep-funneled LFW photo (px, approx.).
LFW_FACE_W = 100.0
PATCH = (40, 210)  # rows/cols of the 250x250 photo pasted


def background(rng: np.random.Generator) -> np.ndarray:
    """uint8 BGR (H, W, 3): smooth random texture (a 9x11 grid of colours, bicubic up)."""
    grid = rng.uniform(40, 200, (9, 11, 3)).astype(np.float32)
    return np.clip(cv2.resize(grid, (W, H), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def feathered(photo: np.ndarray, face_px: float) -> tuple[np.ndarray, np.ndarray]:
    """The photo's centre scaled so its face is ``face_px`` wide, and a float32 alpha mask
    (an ellipse, feathered)."""
    centre = photo[PATCH[0] : PATCH[1], PATCH[0] : PATCH[1]]
    side = max(8, int(round((PATCH[1] - PATCH[0]) * face_px / LFW_FACE_W)))
    patch = cv2.resize(centre, (side, side), interpolation=cv2.INTER_AREA)
    mask = np.zeros((side, side), np.float32)
    cv2.ellipse(mask, (side // 2, side // 2), (int(side * 0.4), int(side * 0.48)), 0, 0, 360, 1, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(side / 16, 0.8))
    return patch, mask


def make_clip(index: int, args, walkers_pool, photos) -> tuple[list[np.ndarray], list[dict]]:
    """Frames and ground truth (per walker: identity, enrolled, {frame: box}) of clip
    ``index``."""
    rng = np.random.default_rng([args.seed, index])
    bg = background(rng)
    n = int(rng.integers(1, 4))
    walkers = []
    for _ in range(n):
        enrolled = bool(rng.random() < 0.7)
        pool = walkers_pool["enrolled" if enrolled else "distractor"]
        ident, rel = pool[int(rng.integers(len(pool)))]
        face_px = float(rng.uniform(*args.face_px))
        patch, mask = feathered(photos[rel], face_px)
        s = patch.shape[0]
        start = int(rng.integers(0, args.frames // 3))
        length = int(rng.integers(args.frames // 2, args.frames + 1))
        speed, angle = rng.uniform(0.5, 2.0), rng.uniform(0, 2 * np.pi)
        walkers.append(
            {
                "identity": ident,
                "enrolled": enrolled,
                "face_px": face_px,
                "patch": patch,
                "mask": mask,
                "pos": np.array([rng.uniform(0, W - s), rng.uniform(0, H - s)]),
                "vel": speed * np.array([np.cos(angle), np.sin(angle)]),
                "frames": range(start, min(args.frames, start + length)),
                "boxes": {},
            }
        )
    frames = []
    for f in range(args.frames):
        img = bg.astype(np.float32)
        for w in walkers:
            if f not in w["frames"]:
                continue
            s = w["patch"].shape[0]
            x, y = int(round(w["pos"][0])), int(round(w["pos"][1]))
            a = w["mask"][..., None]
            img[y : y + s, x : x + s] = a * w["patch"] + (1 - a) * img[y : y + s, x : x + s]
            m = (1 - LFW_FACE_W / (PATCH[1] - PATCH[0])) / 2 * s  # face box inside the patch
            w["boxes"][f] = (x + m, y + m * 0.8, x + s - m, y + s - m * 0.6)
            w["pos"] += w["vel"]
            for k, lim in ((0, W - s), (1, H - s)):
                if not 0 <= w["pos"][k] <= lim:
                    w["vel"][k] *= -1
                    w["pos"][k] = min(max(w["pos"][k], 0), lim)
        frame = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        frames.append(apply_realistic(frame, REALISTIC.sample(rng), rng))
    truth = [{k: w[k] for k in ("identity", "enrolled", "face_px", "boxes")} for w in walkers]
    return frames, truth


def write_avi(path: Path, frames: list[np.ndarray]) -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (W, H))
    for f in frames:
        w.write(f)
    w.release()


def owner(truth: list[dict], frame: int, box) -> int | None:
    """Index of the walker whose ground-truth box at ``frame`` holds the centre of ``box``."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for i, w in enumerate(truth):
        b = w["boxes"].get(frame)
        if b and b[0] - 2 <= cx <= b[2] + 2 and b[1] - 2 <= cy <= b[3] + 2:
            return i
    return None


def score_tracks(report, truth: list[dict]) -> dict:
    """Track recall, identity switches and track-level answers of one clip."""
    assigned: dict[int, list] = {}
    follow: dict[int, dict[int, int]] = {i: {} for i in range(len(truth))}
    false_tracks = 0
    for t in report.tracks:
        votes = [owner(truth, f, b) for f, b in zip(t.frames, t.boxes)]
        for f, v in zip(t.frames, votes):
            if v is not None:
                follow[v].setdefault(f, t.track_id)
        best = max(set(votes), key=votes.count)
        if best is None or votes.count(best) < len(votes) / 2:
            false_tracks += 1
            continue
        assigned.setdefault(best, []).append(t)
    switches = 0
    for seq in follow.values():
        ids = [seq[f] for f in sorted(seq)]
        switches += sum(a != b for a, b in itertools.pairwise(ids))
    tracks = []
    for i, ts in assigned.items():
        for t in ts:
            tracks.append(
                {
                    "enrolled": truth[i]["enrolled"],
                    "rank1": t.candidates[0]["identity"] == truth[i]["identity"],
                    "decision_right": t.identity
                    == (truth[i]["identity"] if truth[i]["enrolled"] else "unknown"),
                }
            )
    return {
        "walkers": len(truth),
        "recalled": len(assigned),
        "switches": switches,
        "false_tracks": false_tracks,
        "tracks": tracks,
    }


def single_frame(frames, truth, gallery, settings: WatchSettings) -> list[bool]:
    """Per detection of an enrolled walker: is the gallery's top-1 right, embedding the one
    frame's face alone (same detector, crop and model as the tracks)?"""
    det = load_detector(settings.detector, settings.det_thresh)
    emb = load_embedder("lrface-mbf")
    opts = CropOptions(detector=settings.detector, size=112)
    crops, who = [], []
    for f, frame in enumerate(frames):
        for face in det.detect(frame):
            i = owner(truth, f, face.box)
            if i is not None and truth[i]["enrolled"]:
                crops.append(align_crop(frame, face.landmarks, opts)[0])
                who.append(truth[i]["identity"])
    if not crops:
        return []
    hits = gallery.search(emb.embed_crops(crops), top_k=1)
    return [bool(h) and h[0][0] == w for h, w in zip(hits, who)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/lfw")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--face-px", default="14,28", help="range of face widths (px)")
    ap.add_argument("--gallery-ids", type=int, default=200)
    ap.add_argument("--detector", default="yunet")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-single-frame", action="store_true", help="skip the single-frame baseline")
    args = ap.parse_args()
    args.face_px = tuple(float(v) for v in args.face_px.split(","))
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    lfw = LFW(args.data)
    by_id: dict[str, list[str]] = {}
    for rel in lfw.all_images:
        if identity_of(rel) in lfw.test_identities:
            by_id.setdefault(identity_of(rel), []).append(rel)
    rng = np.random.default_rng(args.seed)
    multi = sorted(n for n, r in by_id.items() if len(r) >= 2)
    singles = sorted(n for n, r in by_id.items() if len(r) == 1)
    enrolled = [multi[i] for i in rng.permutation(len(multi))[: args.gallery_ids]]
    distract = [singles[i] for i in rng.permutation(len(singles))[:100]]
    pool = {
        "enrolled": [(n, sorted(by_id[n])[1]) for n in sorted(enrolled)],
        "distractor": [(n, sorted(by_id[n])[0]) for n in distract],
    }
    photos = {rel: cv2.imread(str(lfw.path(rel))) for v in pool.values() for _, rel in v}
    gal_rels = [sorted(by_id[n])[0] for n in sorted(enrolled)]
    crops, row, _ = load_crops(lfw, gal_rels, progress=False)
    teacher = load_embedder("mobilefacenet-arcface")
    gallery = FlatGallery.for_embedder(teacher)
    emb = teacher.embed_crops([crops[i] for i in row])
    for rel, e in zip(gal_rels, emb):
        gallery.add(identity_of(rel), e[None], [rel])
    settings = WatchSettings(detector=args.detector)
    load_embedder("lrface-mbf")
    per_clip, sf_hits = [], []
    for c in range(args.clips):
        frames, truth = make_clip(c, args, pool, photos)
        path = work / f"clip{c:02d}.avi"
        write_avi(path, frames)
        video = open_video(str(path))
        report = watch_frames(video.frames(), gallery, settings, video.fps)
        s = score_tracks(report, truth)
        s.update(
            clip=path.name,
            fps=report.fps,
            frames=report.frames_read,
            cpu_s=report.cpu_seconds,
        )
        s["load_avg"] = os.getloadavg()[0]
        hits = [] if args.no_single_frame else single_frame(frames, truth, gallery, settings)
        s["single_frame"] = [int(np.sum(hits)), len(hits)]
        sf_hits += hits
        per_clip.append(s)
        print(json.dumps({k: v for k, v in s.items() if k != "tracks"}), flush=True)
    # a clip of the same kind with nobody in it
    rng_e = np.random.default_rng([args.seed, 10_000])
    bg = background(rng_e)
    empty = [apply_realistic(bg, REALISTIC.sample(rng_e), rng_e) for _ in range(200)]
    write_avi(work / "empty.avi", empty)
    video = open_video(str(work / "empty.avi"))
    rep_empty = watch_frames(video.frames(), gallery, settings, video.fps)
    tracks = [t for s in per_clip for t in s["tracks"]]
    enr = [t for t in tracks if t["enrolled"]]
    dis = [t for t in tracks if not t["enrolled"]]
    summary = {
        "walkers": sum(s["walkers"] for s in per_clip),
        "track_recall": sum(s["recalled"] for s in per_clip) / sum(s["walkers"] for s in per_clip),
        "identity_switches": sum(s["switches"] for s in per_clip),
        "false_tracks": sum(s["false_tracks"] for s in per_clip),
        "tracks_enrolled": len(enr),
        "track_rank1": float(np.mean([t["rank1"] for t in enr])) if enr else None,
        "track_decision_right_enrolled": float(np.mean([t["decision_right"] for t in enr]))
        if enr
        else None,
        "tracks_distractor": len(dis),
        "track_unknown_right_distractor": float(np.mean([t["decision_right"] for t in dis]))
        if dis
        else None,
        "single_frame_detections": len(sf_hits),
        "single_frame_rank1": float(np.mean(sf_hits)) if sf_hits else None,
        "fps_with_faces": sum(s["frames"] for s in per_clip)
        / sum(s["frames"] / s["fps"] for s in per_clip),
        "fps_without_faces": rep_empty.fps,
        "cpu_s_per_frame_with_faces": sum(s["cpu_s"] for s in per_clip)
        / sum(s["frames"] for s in per_clip),
        "cpu_s_per_frame_without_faces": rep_empty.cpu_seconds / rep_empty.frames_read,
        "empty_clip_tracks": len(rep_empty.tracks),
        "load_avg_end": os.getloadavg(),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(summary, indent=1))
    write_json_atomic(args.out, {"args": vars(args), "summary": summary, "clips": per_clip})
    return 0


if __name__ == "__main__":
    sys.exit(main())
