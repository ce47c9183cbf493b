"""Carry the LFW *train-split* training inputs to a machine that has no LFW copy (a rented
GPU), and rebuild there the caches that ``lrface distill --data <LFW>`` reads.

``pack`` (here, with LFW): the aligned 112x112 crops of the 6,922 train-split images
(JPEG, quality ``--quality``: a 64 MiB transfer limit rules out lossless PNG/WebP, ~85-130
MB), the file listing, ``pairs.txt`` and the cached targets of ``--teacher`` for the train
split.  No test-split image leaves: their crops are not packed.

``unpack`` (there): recreates ``ROOT`` as an LFW tree of empty placeholder files (the
crop cache is keyed by the resolved root path and the file list, so ``ROOT`` must be the
same path as on the packing machine), writes the crop cache with the decoded train crops
(test-split slots stay black and are never read by training), and writes the teacher
targets (all train images, and the subsets left by ``--holdout-folds``) into
``$LRFACE_CACHE``.  Training there then runs the plain ``lrface distill``.

    python docs/experiments/scripts/lfw_crop_pack.py pack --data ../shared/data/lfw \
        --out .gpu/lfw-train.npz --teacher mobilefacenet-arcface
    python docs/experiments/scripts/lfw_crop_pack.py unpack .gpu/lfw-train.npz --holdout-folds 1

The JPEG round trip changes pixels by ~1.2 grey levels on average (quality 95); teacher
targets stay those of the original crops.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from lrface.datasets.facecache import aligned_crops, cache_file
from lrface.datasets.lfw import LFW
from lrface.distill.faces import targets_cache_file, training_images
from lrface.faces.detect import DEFAULT_DETECTOR
from lrface.io.fileio import save_npz_atomic
from lrface.models import registry


def pack(data: str, out: str, quality: int, teacher: str | None) -> None:
    lfw = LFW(data)
    train = lfw.train_images()
    allc = aligned_crops(lfw.image_dir, lfw.all_images, DEFAULT_DETECTOR)
    index = {p: i for i, p in enumerate(allc["paths"].tolist())}
    rows = [index[r] for r in train]
    blobs = []
    for crop in allc["crops"][rows]:
        ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        blobs.append(buf.ravel())
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    extra = {}
    if teacher:
        spec = registry.get_spec(teacher)
        src = targets_cache_file(spec.name, spec.sha256, lfw.image_dir, train)
        if not src.is_file():
            raise SystemExit(f"{src}: no cached teacher targets; run lrface distill once first")
        with np.load(src) as z:
            extra = {"teacher": spec.name, "plain": z["plain"], "mirror": z["mirror"]}
    save_npz_atomic(
        out,
        root=str(Path(data).resolve()),
        image_dir=str(lfw.image_dir.resolve()),
        all_images=np.array(lfw.all_images),
        train=np.array(train),
        jpeg=np.concatenate(blobs),
        offsets=offsets,
        landmarks=allc["landmarks"][rows],
        fallback=allc["fallback"][rows],
        pairs=np.frombuffer(lfw.pairs_file.read_bytes(), np.uint8),
        **extra,
    )
    print(f"{out}: {len(train)} train crops, {Path(out).stat().st_size / 2**20:.1f} MiB")


def unpack(pack_file: str, root: str | None, holdout: list[tuple[int, ...]]) -> None:
    z = np.load(pack_file)
    root_p = Path(root or str(z["root"]))
    image_dir = root_p / Path(str(z["image_dir"])).name
    all_images = z["all_images"].tolist()
    for rel in all_images:
        f = image_dir / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.touch()
    (root_p / "pairs.txt").write_bytes(z["pairs"].tobytes())
    lfw = LFW(root_p)
    if lfw.all_images != all_images:
        raise SystemExit(f"{root_p}: rebuilt listing differs from the packed one")
    n = len(all_images)
    train = z["train"].tolist()
    index = {p: i for i, p in enumerate(all_images)}
    rows = [index[r] for r in train]
    crops = np.zeros((n, 112, 112, 3), np.uint8)
    lms = np.zeros((n, 5, 2), np.float32)
    fbs = np.zeros(n, bool)
    jpeg, off = z["jpeg"], z["offsets"]  # each z[...] reads the archive again: read once
    for k, i in enumerate(rows):
        crops[i] = cv2.imdecode(jpeg[off[k] : off[k + 1]], cv2.IMREAD_COLOR)
    lms[rows], fbs[rows] = z["landmarks"], z["fallback"]
    fn = cache_file(lfw.image_dir, all_images, DEFAULT_DETECTOR)
    save_npz_atomic(fn, paths=np.array(all_images), landmarks=lms, fallback=fbs, crops=crops)
    print(f"{fn}: {len(train)} train crops of {n} slots")
    if "plain" not in z.files:
        return
    # teacher targets of the whole train split, and their subsets for held-out folds
    # (each target depends on its own crop only, so a subset is exact)
    spec = registry.get_spec(str(z["teacher"]))
    plain, mirror = z["plain"], z["mirror"]
    row = {p: i for i, p in enumerate(train)}
    for folds in [(), *holdout]:
        rels = training_images(lfw, folds)
        dest = targets_cache_file(spec.name, spec.sha256, lfw.image_dir, rels)
        take = [row[r] for r in rels]
        save_npz_atomic(dest, plain=plain[take], mirror=mirror[take])
        print(f"{dest}: teacher targets, {len(rels)} images (held-out folds {list(folds)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--quality", type=int, default=95)
    p.add_argument("--teacher", default="mobilefacenet-arcface", help="'' = no targets")
    u = sub.add_parser("unpack")
    u.add_argument("pack")
    u.add_argument("--root", default=None, help="LFW root to recreate (default: the packed one)")
    u.add_argument(
        "--holdout-folds", nargs="*", default=[], help="e.g. 1 or 1,2: also write these subsets"
    )
    a = ap.parse_args()
    if a.cmd == "pack":
        pack(a.data, a.out, a.quality, a.teacher or None)
    else:
        unpack(a.pack, a.root, [tuple(int(f) for f in h.split(",")) for h in a.holdout_folds])


if __name__ == "__main__":
    main()
