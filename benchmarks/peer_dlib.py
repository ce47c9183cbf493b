#!/usr/bin/env python
"""Peer row: dlib's ResNet face recogniser on LFW under lrface's low-resolution protocol.

dlib is **optional** and not a dependency of lrface; install it only to run this script::

    pip install dlib-bin face-recognition-models

(``dlib-bin`` is a prebuilt ``dlib``; ``face-recognition-models`` ships
``dlib_face_recognition_resnet_model_v1.dat`` and ``shape_predictor_5_face_landmarks.dat``,
the models behind the ``face_recognition`` package.)

Recipe (the dlib figures of ``../shared/data/lfw/README.md``), per image:

1. lrface's SCRFD (``scrfd-2.5g``) detects faces; the most central sizeable face is kept
   (:func:`lrface.faces.face_choice.central_face`), retrying at
   ``det_thresh`` 0.1 when nothing is found (a centred box if still nothing, counted as a
   fallback);
2. its box becomes a ``dlib.rectangle``; dlib's 5-point shape predictor runs on the RGB
   image and ``dlib.get_face_chip(rgb, shape, size=150, padding=0.25)`` gives the aligned
   150x150 chip (what ``face_recognition.face_encodings`` feeds the network:
   ``compute_face_descriptor(image, shape)`` equals ``compute_face_descriptor(chip)``);
3. HR: the 128-D descriptor of the chip.  LR at ``s`` px (lrface's sizes are sides of
   the 112x112 crop): the chip reduced to ``round(s * 150 / 112)`` px with
   ``cv2.INTER_AREA`` and upsampled back to 150 with ``cv2.INTER_CUBIC``, then the
   descriptor (16 / 12 / 8 px -> 21 / 16 / 11 px chips).

Pairs are the official View-2 pairs of :meth:`lrface.datasets.lfw.LFW.split_pairs`
(``test`` = folds 6-10, ``all`` = folds 1-10); the score of a pair is the negative
Euclidean distance of the descriptors (dlib's own rule is "same if distance < 0.6"), and
accuracy is :func:`lrface.eval.metrics.kfold_accuracy` with the official folds (each
fold's threshold chosen on the others).  Modes: ``hr-hr``; ``hr-lr`` (second image of
each pair reduced); ``lr-lr`` (both reduced).

Example (full test split; the command line is printed above the markdown table)::

    python benchmarks/peer_dlib.py --data ../shared/data/lfw --split test --sizes 16,12,8

Detections / dlib landmarks and descriptors are cached per image (and per variant: HR or
size) in ``.npz`` files under :func:`lrface.io.cache.cache_dir`, so re-runs, subsets and
extra sizes only compute what is missing.  dlib runs on the CPU (~60 ms per descriptor).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from lrface.datasets.lfw import LFW, Pair
from lrface.errors import LrfaceError
from lrface.eval.benchmark import parse_list, parse_sizes
from lrface.eval.protocols.lfw import MODE_TITLES, MODES, select_pairs
from lrface.faces.detect import Detector, load_detector
from lrface.faces.face_choice import central_face
from lrface.io.cache import cache_dir, digest
from lrface.io.fileio import save_npz_atomic, write_json_atomic
from lrface.io.images import read_image
from lrface.scores import kfold_accuracy

CHIP = 150
PADDING = 0.25
#: lrface's LR sizes are sides of the 112x112 aligned crop; dlib's chip is 150 px.
LRFACE_CROP = 112
DESC_DIM = 128
#: Save the caches after this many newly processed images (resumable runs).
SAVE_EVERY = 250
INSTALL_HINT = "pip install dlib-bin face-recognition-models"
#: dlib figures of ../shared/data/lfw/README.md (test split), for the comparison line.
README_TEST = {
    ("hr-hr", None): 98.87,
    ("hr-lr", 16): 96.43,
    ("hr-lr", 12): 92.23,
    ("hr-lr", 8): 81.97,
    ("lr-lr", 16): 94.73,
    ("lr-lr", 12): 89.37,
    ("lr-lr", 8): 81.17,
}
README_ALL = {("hr-hr", None): 98.78}


def chip_side(size: int) -> int:
    """Side of the reduced dlib chip for lrface size ``size`` (of the 112 crop)."""
    return max(1, int(round(size * CHIP / LRFACE_CROP)))


def reduce_chip(chip: np.ndarray, size: int) -> np.ndarray:
    """The 150 px chip reduced to :func:`chip_side` px (area) and upsampled back (bicubic)."""
    r = chip_side(size)
    small = cv2.resize(chip, (r, r), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(cv2.resize(small, (CHIP, CHIP), interpolation=cv2.INTER_CUBIC))


# --------------------------------------------------------------------------- dlib


def model_files() -> tuple[Path, Path]:
    """``(recognition model, 5-point shape predictor)`` of ``face-recognition-models``.

    The package's own helpers need ``pkg_resources``, which recent setuptools no longer
    ships; the files are then found next to the package without importing it.
    """
    try:
        import face_recognition_models as frm

        return (
            Path(frm.face_recognition_model_location()),
            Path(frm.pose_predictor_five_point_model_location()),
        )
    except ImportError:
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise LrfaceError(
                f"face_recognition_models is not installed (optional; {INSTALL_HINT})"
            ) from None
        d = Path(next(iter(spec.submodule_search_locations))) / "models"
        return (
            d / "dlib_face_recognition_resnet_model_v1.dat",
            d / "shape_predictor_5_face_landmarks.dat",
        )


class DlibModels:
    """dlib's 5-point shape predictor and ResNet descriptor network."""

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError:
            raise LrfaceError(f"dlib is not installed (optional; {INSTALL_HINT})") from None
        self.dlib = dlib
        self.rec_file, self.sp_file = model_files()
        for f in (self.rec_file, self.sp_file):
            if not f.is_file():
                raise LrfaceError(f"{f}: dlib model file missing ({INSTALL_HINT})")
        self.sp = dlib.shape_predictor(str(self.sp_file))
        self.rec = dlib.face_recognition_model_v1(str(self.rec_file))

    def landmarks(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """dlib's 5 landmarks (5, 2) int32 inside integer ``box`` (x1, y1, x2, y2)."""
        shape = self.sp(rgb, self.dlib.rectangle(*(int(v) for v in box)))
        return np.array([[p.x, p.y] for p in shape.parts()], np.int32)

    def chip(self, rgb: np.ndarray, box: np.ndarray, parts: np.ndarray) -> np.ndarray:
        """The aligned 150x150 RGB chip of ``dlib.get_face_chip`` (padding 0.25)."""
        dl = self.dlib
        shape = dl.full_object_detection(
            dl.rectangle(*(int(v) for v in box)), [dl.point(int(x), int(y)) for x, y in parts]
        )
        return dl.get_face_chip(rgb, shape, size=CHIP, padding=PADDING)

    def descriptor(self, chip: np.ndarray) -> np.ndarray:
        """128-D descriptor (float32) of an aligned 150x150 RGB uint8 chip."""
        return np.asarray(self.rec.compute_face_descriptor(np.ascontiguousarray(chip)), np.float32)


# --------------------------------------------------------------------------- detection


def fallback_box(h: int, w: int) -> np.ndarray:
    """A centred box of LFW framing (0.4 w x 0.52 h) when nothing is detected."""
    bw, bh = 0.4 * w, 0.52 * h
    cx, cy = w / 2, h / 2
    return np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])


# --------------------------------------------------------------------------- caches


class NpzStore:
    """Rows keyed by relative image path, kept in one ``.npz`` (``paths`` + arrays)."""

    def __init__(self, path: Path, fields: dict[str, tuple[tuple[int, ...], type]]) -> None:
        self.path = path
        self.fields = fields
        self.rows: dict[str, dict[str, np.ndarray]] = {}
        self.dirty = False
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                cols = {k: z[k] for k in fields}
                for i, p in enumerate(z["paths"].tolist()):
                    self.rows[p] = {k: cols[k][i] for k in fields}

    def __contains__(self, rel: str) -> bool:
        return rel in self.rows

    def get(self, rel: str) -> dict[str, np.ndarray]:
        return self.rows[rel]

    def put(self, rel: str, **values: Any) -> None:
        self.rows[rel] = {k: np.asarray(values[k], dtype=t) for k, (_, t) in self.fields.items()}
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        paths = sorted(self.rows)
        arrays = {
            k: np.stack([self.rows[p][k] for p in paths]).astype(t).reshape(len(paths), *shape)
            for k, (shape, t) in self.fields.items()
        }
        save_npz_atomic(self.path, paths=np.array(paths), **arrays)
        self.dirty = False


def _variant(size: int | None) -> str:
    return "hr" if size is None else f"{size}px"


def _recipe(size: int | None) -> str:
    base = f"dlib-chip{CHIP}-pad{PADDING}"
    if size is None:
        return base
    return f"{base}-area{chip_side(size)}-cubic{CHIP}"


class DescriptorCache:
    """Shapes (box + dlib landmarks) and descriptors per image, computed on demand."""

    def __init__(self, lfw: LFW, detector_name: str, models: DlibModels) -> None:
        self.lfw = lfw
        self.detector_name = detector_name
        self.models = models
        self.root = str(Path(lfw.image_dir).resolve())
        key = digest(self.root, detector_name, models.sp_file.name)
        self.shapes = NpzStore(
            cache_dir() / f"peer-dlib-shapes-{detector_name}-{key}.npz",
            {"boxes": ((4,), np.int32), "parts": ((5, 2), np.int32), "fallback": ((), bool)},
        )
        self.desc: dict[str | None, NpzStore] = {}
        self._detector: Detector | None = None
        self.computed = 0

    def store(self, size: int | None) -> NpzStore:
        if size not in self.desc:
            key = digest(self.root, self.detector_name, self.models.rec_file.name, _recipe(size))
            self.desc[size] = NpzStore(
                cache_dir() / f"peer-dlib-desc-{_variant(size)}-{key}.npz",
                {"desc": ((DESC_DIM,), np.float32)},
            )
        return self.desc[size]

    def _shape(self, rel: str, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if rel in self.shapes:
            r = self.shapes.get(rel)
            return r["boxes"], r["parts"]
        if self._detector is None:
            self._detector = load_detector(self.detector_name)
        face = central_face(bgr, self._detector)
        h, w = bgr.shape[:2]
        box_f = fallback_box(h, w) if face is None else face.box
        box = np.round(box_f).astype(np.int32)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        parts = self.models.landmarks(rgb, box)
        self.shapes.put(rel, boxes=box, parts=parts, fallback=face is None)
        return box, parts

    def save(self) -> None:
        self.shapes.save()
        for s in self.desc.values():
            s.save()

    def descriptors(
        self, rels: Sequence[str], sizes: Sequence[int | None], progress: bool = True
    ) -> dict[int | None, np.ndarray]:
        """``{size: (len(rels), 128) float32}`` for HR (``None``) and each LR size."""
        stores = {s: self.store(s) for s in sizes}
        todo = [r for r in rels if any(r not in st for st in stores.values())]
        bar = tqdm(todo, desc="dlib descriptors", unit="img", disable=not progress)
        for n, rel in enumerate(bar, 1):
            bgr = read_image(self.lfw.path(rel))
            box, parts = self._shape(rel, bgr)
            chip = self.models.chip(np.ascontiguousarray(bgr[:, :, ::-1]), box, parts)
            for s, st in stores.items():
                if rel not in st:
                    img = chip if s is None else reduce_chip(chip, s)
                    st.put(rel, desc=self.models.descriptor(img))
                    self.computed += 1
            if n % SAVE_EVERY == 0:
                self.save()
        self.save()
        return {s: np.stack([st.get(r)["desc"] for r in rels]) for s, st in stores.items()}

    def n_fallback(self, rels: Sequence[str]) -> int:
        return int(sum(bool(self.shapes.get(r)["fallback"]) for r in rels))


# --------------------------------------------------------------------------- protocol


def evaluate(
    data: str | Path,
    split: str = "test",
    modes: Sequence[str] = MODES,
    sizes: Sequence[int] = (16, 12, 8),
    max_pairs_per_fold: int | None = None,
    detector: str = "scrfd-2.5g",
    progress: bool = True,
) -> dict[str, Any]:
    """Accuracy of dlib's ResNet for every mode and size; JSON-ready dict."""
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise LrfaceError(f"unknown mode {bad[0] if bad else ''!r}; choose {', '.join(MODES)}")
    models = DlibModels()
    lfw = LFW(data)
    pairs: list[Pair] = select_pairs(lfw, split, max_pairs_per_fold, None)
    rels = sorted({p.a for p in pairs} | {p.b for p in pairs})
    pos = {r: i for i, r in enumerate(rels)}
    ia = np.array([pos[p.a] for p in pairs], np.int64)
    ib = np.array([pos[p.b] for p in pairs], np.int64)
    labels = np.array([p.same for p in pairs], bool)
    folds = np.array([p.fold for p in pairs], np.int64)

    lr_modes = [m for m in modes if m != "hr-hr"]
    need: list[int | None] = []
    if "hr-hr" in modes or "hr-lr" in modes:
        need.append(None)
    need += list(sizes) if lr_modes else []
    cache = DescriptorCache(lfw, detector, models)
    t0 = time.perf_counter()
    desc = cache.descriptors(rels, need, progress)
    elapsed = time.perf_counter() - t0

    def score(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return -np.linalg.norm(a[ia].astype(np.float64) - b[ib], axis=1)

    results: list[dict[str, Any]] = []
    combos: list[tuple[str, int | None]] = [("hr-hr", None)] if "hr-hr" in modes else []
    combos += [(m, s) for s in sizes for m in lr_modes]
    for mode, s in combos:
        a = desc[None] if mode != "lr-lr" else desc[s]
        b = desc[None] if s is None else desc[s]
        acc = kfold_accuracy(score(a, b), labels, folds=folds)
        results.append(
            {
                "mode": mode,
                "size": s,
                "chip_px": CHIP if s is None else chip_side(s),
                "recipe": _recipe(s),
                **acc,
            }
        )
    official = sorted({int(f) + 1 for f in folds})
    subset = max_pairs_per_fold is not None
    caption = (
        f"dlib ResNet (dlib {models.dlib.__version__}), LFW "
        f"{'subset of pairs' if subset else split + ' split'}: folds {official[0]}-"
        f"{official[-1]}, {len(pairs)} pairs, {len(rels)} images; score = -L2 distance; "
        f"verification accuracy %, mean (std) over {len(official)} cross-validated folds"
    )
    return {
        "protocol": "lfw-peer-dlib",
        "caption": caption,
        "description": {
            "dataset": str(lfw.root),
            "split": split,
            "max_pairs_per_fold": max_pairs_per_fold,
            "official_folds": official,
            "n_pairs": len(pairs),
            "n_same": int(labels.sum()),
            "n_diff": int((~labels).sum()),
            "n_images": len(rels),
            "n_detection_fallback": cache.n_fallback(rels),
            "detector": f"{detector} (most central face; det_thresh 0.5 then 0.1)",
            "alignment": f"dlib 5-point shape predictor on the detector box, get_face_chip "
            f"size={CHIP} padding={PADDING}",
            "degradation": f"chip reduced to round(s*{CHIP}/{LRFACE_CROP}) px (INTER_AREA), "
            f"upsampled to {CHIP} (INTER_CUBIC)",
            "hr_lr_side": "first image of each pair HR, second reduced",
            "score": "negative Euclidean distance of the 128-D descriptors",
            "dlib_version": models.dlib.__version__,
            "model_files": [models.rec_file.name, models.sp_file.name],
        },
        "descriptors_computed": cache.computed,
        "descriptor_seconds": round(elapsed, 1),
        "results": results,
    }


def table(result: dict[str, Any]) -> str:
    """Markdown: one row for HR then one per size (descending), one column per mode."""
    cells = {
        (r["mode"], r["size"]): f"{100 * r['accuracy_mean']:.2f} ({100 * r['accuracy_std']:.2f})"
        for r in result["results"]
    }
    modes = [m for m in MODES if any(k[0] == m for k in cells)]
    sizes = sorted({s for _, s in cells if s is not None}, reverse=True)
    lines = [
        "| s (dlib chip px) | " + " | ".join(MODE_TITLES[m] for m in modes) + " |",
        "| --- |" + " --- |" * len(modes),
    ]
    rows: list[tuple[str, int | None]] = (
        [(f"HR ({CHIP})", None)] if ("hr-hr", None) in cells else []
    )
    rows += [(f"{s} ({chip_side(s)})", s) for s in sizes]
    for label, s in rows:
        lines.append(f"| {label} | " + " | ".join(cells.get((m, s), "") for m in modes) + " |")
    return "\n".join(lines)


def comparison(result: dict[str, Any]) -> str:
    """One line per cell: this run vs the dlib figure of the LFW README (when it has one)."""
    ref = README_ALL if result["description"]["split"] == "all" else README_TEST
    if result["description"]["max_pairs_per_fold"] is not None:
        return "(subset of pairs: no README reference)"
    out = []
    for r in result["results"]:
        key = (r["mode"], r["size"])
        if key in ref:
            got = 100 * r["accuracy_mean"]
            what = MODE_TITLES[r["mode"]] + ("" if r["size"] is None else f" {r['size']}px")
            out.append(f"- {what}: {got:.2f} (README {ref[key]:.2f}, {got - ref[key]:+.2f})")
    return "\n".join(out) if out else "(no README reference for these cells)"


def _default_data() -> str:
    home = Path(os.environ.get("LRFACE_HOME", "~/.lrface")).expanduser()
    return str(home / "data" / "lfw")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", default=_default_data(), help="LFW root (default $LRFACE_HOME/data/lfw)"
    )
    p.add_argument("--split", default="test", choices=("test", "val", "all"))
    p.add_argument("--modes", default="hr-hr,hr-lr,lr-lr")
    p.add_argument("--sizes", default="8,12,16", help="LR sides of the 112 crop (comma list)")
    p.add_argument("--detector", default="scrfd-2.5g")
    p.add_argument("--max-pairs-per-fold", type=int, default=None, help="quick run on a subset")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the full results")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        result = evaluate(
            args.data,
            split=args.split,
            modes=parse_list(args.modes, "--modes"),
            sizes=parse_sizes(args.sizes),
            max_pairs_per_fold=args.max_pairs_per_fold,
            detector=args.detector,
            progress=not args.no_progress,
        )
    except LrfaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = shlex.join(["python", "benchmarks/peer_dlib.py", *argv])
    result["command"] = command
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        write_json_atomic(args.json, result)
    print(f"`{command}`\n")
    print(result["caption"] + "\n")
    print(table(result) + "\n")
    print("Against the dlib figures of the LFW README:\n" + comparison(result))
    n_fb = result["description"]["n_detection_fallback"]
    print(
        f"\n{result['descriptors_computed']} descriptors computed (rest cached), "
        f"{n_fb} detection fallback(s), wall {result['wall_seconds']:.0f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
