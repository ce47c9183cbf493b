"""End-to-end verification through detection with a ~16 px face (issue: shipped students).

For each of the 3,000 LFW test-split pairs (folds 6-10) the *second photo* is downscaled as
a whole (area interpolation) to ``--image-px`` (default 36: the 250x250 photo becomes
36x36 and its face ~14-16 px wide), or, with ``--face-px F``, so that its detected face
box is F px wide (16 px gives ~42x42 images).  Then ``lrface.verify`` runs exactly as
``lrface verify A B``
does: detection on both images (``--detector``, default ``auto`` = SCRFD-2.5g when
installed, else YuNet; multi-scale for the tiny one), alignment, the model chosen per
face by its size (teacher for the HR photo, ``lrface-mbf`` for the small one; ``--model
NAME`` embeds both with NAME, as verify did before per-face choice) and the calibrated
threshold for that pair of models from the cards.  Nothing is tuned on the test split.

    python benchmarks/e2e_verify_16px.py --data ../shared/data/lfw [--image-px 36 | --face-px 16]
                                         [--limit N] [--detector auto|scrfd-2.5g|yunet]
                                         [--model NAME]

A pair whose small image yields no face counts as a wrong answer (reported separately).
"""

from __future__ import annotations

import argparse
import collections
import json
import time

import cv2
import numpy as np
from tqdm import tqdm

from lrface.api import verify
from lrface.datasets.lfw import LFW
from lrface.errors import NoFaceError
from lrface.faces.detect import load_detector, resolve_detector
from lrface.faces.face_choice import central_face
from lrface.io.images import read_image


def shrink_to_face_width(img: np.ndarray, face_px: float) -> np.ndarray:
    """Downscale the whole photo so its central face box is ``face_px`` wide."""
    face = central_face(img, load_detector("scrfd-2.5g"))
    width = float(face.box[2] - face.box[0]) if face is not None else 0.4 * img.shape[1]
    s = face_px / width
    size = (max(4, round(img.shape[1] * s)), max(4, round(img.shape[0] * s)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="../shared/data/lfw")
    ap.add_argument("--image-px", type=int, default=36, help="resize the whole photo to this")
    ap.add_argument("--face-px", type=float, default=None, help="instead: face box width")
    ap.add_argument("--limit", type=int, default=None, help="first N pairs of each test fold")
    ap.add_argument("--model", default=None, help="force a model (default: lrface's choice)")
    ap.add_argument("--detector", default="auto", help="auto (default), scrfd-2.5g, yunet")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    lfw = LFW(args.data)
    pairs = lfw.split_pairs("test")
    if args.limit:
        pairs = [p for f in range(5, 10) for p in [q for q in pairs if q.fold == f][: args.limit]]
    t0 = time.time()
    correct, no_face, models, sizes = 0, 0, collections.Counter(), []
    for p in tqdm(pairs, desc="verify"):
        img = read_image(lfw.path(p.b))
        if args.face_px:
            small = shrink_to_face_width(img, args.face_px)
        else:
            small = cv2.resize(img, (args.image_px, args.image_px), interpolation=cv2.INTER_AREA)
        sizes.append(small.shape[1])
        try:
            res = verify(str(lfw.path(p.a)), small, model=args.model, detector=args.detector)
        except NoFaceError:
            no_face += 1
            continue
        models["+".join(res.models)] += 1
        correct += int(res.same == p.same)
    acc = 100.0 * correct / len(pairs)
    out = {
        "pairs": len(pairs),
        "accuracy": round(acc, 2),
        "no_face": no_face,
        "models_used": dict(models),
        "small_image_px_median": float(np.median(sizes)),
        "face_px": args.face_px,
        "detector": resolve_detector(args.detector),
        "model": args.model or "per face (default)",
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        from lrface.io.fileio import write_json_atomic

        write_json_atomic(args.json, out)


if __name__ == "__main__":
    main()
