#!/usr/bin/env python
"""Are tight face crops found?  LFW test-split faces cut as detectors cut them.

Each photo (an evenly spaced sample of the LFW test split's images) is searched once by the
detector (the most central face, :func:`lrface.faces.face_choice.central_face`); its box is made
square at ``--margins`` x its longer side (1.0 = the detector's own box; pixels outside the
photo replicate the edge) and resized to each of ``--sizes`` px (area down, cubic up):
the crop a CCTV system or another detector hands over.  ``--degrade realistic`` adds the
camera degradation of ``lrface.faces.degrade.REALISTIC`` to each crop (draw fixed per photo,
margin and size).  Every crop is then searched by the crop pipeline's face search
(:func:`lrface.faces.find_face.find_faces`: the detector, then a grey-padded copy, then the other
detector) and, for reference, by its first pass alone (what lrface did before, except that
the detector itself pads images under 160 px).

Prints per size: crops, found % (all passes), found % by the first pass alone, and the
pass/detector that found them; writes the table and the raw counts to ``--out`` (JSON).
Targets of issue 27 (clean): >= 99 % found at >= 32 px, >= 95 % at 16-24 px.

Example (the command of benchmarks/RESULTS.md)::

    nice -n 5 python benchmarks/tight_crops.py --data ../shared/data/lfw --n-images 40 \\
        --degrade clean --out runs/tight-crops-clean.json
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lrface.datasets.lfw import LFW
from lrface.faces.degrade import REALISTIC, apply_realistic, box_crop, realistic_rng
from lrface.faces.detect import load_detector, resolve_detector
from lrface.faces.face_choice import central_face
from lrface.faces.find_face import find_faces
from lrface.io.fileio import write_json_atomic
from lrface.io.images import read_image

DEFAULT_SIZES = "16,24,32,48,64,96,128,159,160,200,256,319,400"
DEFAULT_MARGINS = "1.0,1.2,1.4"


def parse_list(text: str, kind: type) -> list:
    return [kind(x) for x in text.split(",") if x.strip()]


def sample_images(lfw: LFW, n: int) -> list[str]:
    """``n`` evenly spaced images of the test split's pairs (sorted relative paths)."""
    rels = sorted({r for p in lfw.split_pairs("test") for r in (p.a, p.b)})
    idx = np.linspace(0, len(rels) - 1, num=min(n, len(rels))).round().astype(int)
    return [rels[i] for i in idx]


def run(args: argparse.Namespace) -> dict:
    lfw = LFW(args.data)
    detector = resolve_detector(args.detector)
    sizes, margins = parse_list(args.sizes, int), parse_list(args.margins, float)
    rels = sample_images(lfw, args.n_images)
    rows: dict[int, Counter] = defaultdict(Counter)
    n_no_box = 0
    t0 = time.perf_counter()
    for i, rel in enumerate(tqdm(rels, desc=f"tight crops ({args.degrade})", unit="photo")):
        photo = read_image(lfw.path(rel))
        face = central_face(photo, load_detector(detector))
        if face is None:  # no box to cut: not a crop a detector would hand over
            n_no_box += 1
            continue
        for mi, margin in enumerate(margins):
            for s in sizes:
                crop = box_crop(photo, face.box, margin=margin, size=s)
                if args.degrade == "realistic":
                    rng = realistic_rng(i, s, mi)
                    crop = apply_realistic(crop, REALISTIC.sample(rng), rng)
                c = rows[s]
                c["crops"] += 1
                first = find_faces(crop, detector, retry=False)
                c["first_pass"] += bool(first.faces)
                found = first if first.faces else find_faces(crop, detector)
                if found.faces:
                    c["found"] += 1
                    c[f"{found.found_by} ({found.detector})"] += 1
    table = {
        s: {
            "crops": c["crops"],
            "found_pct": round(100 * c["found"] / max(1, c["crops"]), 2),
            "first_pass_pct": round(100 * c["first_pass"] / max(1, c["crops"]), 2),
            "by_pass": {k: v for k, v in c.items() if "(" in k},
        }
        for s, c in sorted(rows.items())
    }
    return {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "degrade": args.degrade,
        "detector": detector,
        "images": len(rels),
        "images_without_box": n_no_box,
        "margins": margins,
        "seconds": round(time.perf_counter() - t0, 1),
        "sizes": table,
    }


def markdown(result: dict) -> str:
    lines = [
        f"{result['degrade']}, {result['images']} LFW test-split photos x margins "
        f"{', '.join(f'{m:g}' for m in result['margins'])} ({result['detector']} box):",
        "",
        "| size px | crops | found % | first pass alone % | found by (pass, detector) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s, r in result["sizes"].items():
        by = ", ".join(f"{k}: {v}" for k, v in sorted(r["by_pass"].items()))
        lines.append(
            f"| {s} | {r['crops']} | {r['found_pct']:.2f} | {r['first_pass_pct']:.2f} | {by} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="LFW root (pairs.txt, lfw-deepfunneled/)")
    p.add_argument("--n-images", type=int, default=40, help="test-split photos (default 40)")
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"crop sides (default {DEFAULT_SIZES})")
    p.add_argument("--margins", default=DEFAULT_MARGINS, help="box multiples (default 1.0,1.2,1.4)")
    p.add_argument("--degrade", default="clean", choices=("clean", "realistic"))
    p.add_argument("--detector", default="auto", help="first detector (default auto)")
    p.add_argument("--out", required=True, help="results JSON")
    args = p.parse_args()
    result = run(args)
    write_json_atomic(Path(args.out), result)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
