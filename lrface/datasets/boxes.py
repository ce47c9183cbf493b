"""Detector-box crops of photos (``--probe-crop box``, ``distill --p-box``): the square box of
one detected face, no landmarks, for evaluation and training alike.

Two entry points, one recipe (:func:`lrface.faces.degrade.box_crop`: square side
:data:`~lrface.faces.degrade.BOX_MARGIN` x max(w, h) around the box, at
:data:`~lrface.faces.degrade.BOX_HR_SIDE`): :func:`load_box_crops` for LFW photos (the most
central face, the face the aligned crop uses; cached per subset and served from a cached
superset) and :func:`box_crops` for image files of a folder (the largest face).  Crops are
uint8 BGR (N, 112, 112, 3), with bool (N,) ``fallback`` (no face found) and float32 (N, 4)
boxes x1, y1, x2, y2 in the photo.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lrface.datasets.lfw import LFW
from lrface.errors import LrfaceError
from lrface.faces.degrade import BOX_HR_SIDE, BOX_MARGIN, box_crop
from lrface.faces.detect import DEFAULT_DETECTOR, load_detector
from lrface.faces.face_choice import central_face, fallback_square
from lrface.io.cache import CROP_PART_ROWS, NpzCache, file_signature
from lrface.io.images import read_image
from lrface.io.workers import map_items
from lrface.models.preprocess import resize_crop

__all__ = ["box_crops", "load_box_crops"]


def _box_photo(path: str, detector: str) -> tuple[np.ndarray, bool, np.ndarray]:
    """Box crop of the most central face of one LFW photo (the face the aligned crop uses).

    Without a detection: the centred square of 45 % of the photo (the alignment fallback's
    framing), flagged.
    """
    image = read_image(path)
    face = central_face(image, load_detector(detector))
    if face is not None:
        box = face.box.astype(np.float32)
        return box_crop(image, box), False, box
    x1, y1, side = fallback_square(*image.shape[:2])
    box = np.array([x1, y1, x1 + side, y1 + side], np.float32)
    return box_crop(image, box, margin=1.0), True, box


def load_box_crops(
    lfw: LFW,
    rels: Sequence[str],
    detector: str = DEFAULT_DETECTOR,
    progress: bool = True,
    workers: int = 2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``--probe-crop box`` crops of ``rels`` (relative LFW paths), cached like the aligned crops.

    The detector's box of the most central face (:func:`central_face`, the face the aligned
    crop uses), square with side :data:`BOX_MARGIN` x max(w, h), at :data:`BOX_HR_SIDE`
    (:func:`lrface.faces.degrade.box_crop`).  Returns ``(crops, fallback, boxes)`` in the order of
    ``rels``: uint8 BGR (N, 112, 112, 3), bool (N,) (no face found) and float32 (N, 4)
    boxes x1, y1, x2, y2 in the photo.  Rows come from a cached superset (the train
    split's or the whole LFW's boxes, e.g. those of ``distill --p-box``) when one exists.
    ``workers``: detection processes (:func:`lrface.io.workers.map_items`).
    """
    rels = list(rels)
    cached = _cached_box_crops(lfw, rels, detector)
    if cached is not None:
        return cached
    entry = _box_entry(lfw, detector, rels)
    crops, fallback, boxes = _detect_box_crops(lfw, rels, detector, progress, workers, entry)
    entry.save(crops=crops, fallback=fallback, boxes=boxes)
    return crops, fallback, boxes


def _box_entry(lfw: LFW, detector: str, rels: Sequence[str]) -> NpzCache:
    """The cache entry of the box crops of ``rels`` (in this order)."""
    return NpzCache.entry(
        "boxcrops", Path(lfw.image_dir).resolve(), detector, BOX_MARGIN, BOX_HR_SIDE, *rels,
        label=detector,
    )  # fmt: skip


def _cached_box_crops(
    lfw: LFW, rels: list[str], detector: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The box crops of ``rels`` from the cache (their own file, else the rows of a cached
    superset: the train split's or the whole LFW's); ``None`` when not cached.  Arrays as
    :func:`load_box_crops` returns them."""
    own = _box_entry(lfw, detector, rels).load()
    if own is not None:
        return own["crops"], own["fallback"], own["boxes"]
    for every in (lfw.train_images(), lfw.all_images):
        sup = _box_entry(lfw, detector, every)
        at = {r: i for i, r in enumerate(every)}
        if sup.exists() and all(r in at for r in rels):
            take = np.array([at[r] for r in rels], np.int64)
            with np.load(sup.path, allow_pickle=False) as z:
                return z["crops"][take], z["fallback"][take], z["boxes"][take]
    return None


def _detect_box_crops(
    lfw: LFW, rels: list[str], detector: str, progress: bool, workers: int, entry: NpzCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detect the box crop of every photo of ``rels`` (``workers`` processes), built in
    parts of :data:`lrface.io.cache.CROP_PART_ROWS` photos beside the cache ``entry``
    (a build killed half-way resumes).

    Returns uint8 BGR (N, 112, 112, 3) crops, bool (N,) fallbacks and float32 (N, 4) boxes.
    """
    missing = [r for r in rels if not lfw.path(r).is_file()]
    if missing:
        raise LrfaceError(f"{lfw.image_dir}: image {missing[0]} of pairs.txt is missing")
    n = len(rels)
    if not n:
        empty = np.zeros((0, BOX_HR_SIDE, BOX_HR_SIDE, 3), np.uint8)
        return empty, np.zeros(0, bool), np.zeros((0, 4), np.float32)
    paths = [str(lfw.path(r)) for r in rels]
    load_detector(detector)  # a missing detector is one error, up front

    def compute(rows: list[int]) -> Iterator[tuple[np.ndarray, bool, np.ndarray]]:
        return map_items(
            functools.partial(_box_photo, detector=detector),
            [paths[i] for i in rows],
            workers,
            progress=progress,
            desc=f"detect boxes ({detector})",
        )

    got = entry.build(n, CROP_PART_ROWS, ("crops", "fallback", "boxes"), compute, "images")
    return (
        got["crops"].astype(np.uint8),
        got["fallback"].astype(bool),
        got["boxes"].astype(np.float32),
    )


def _detect_box_one(path: Path, detector: str) -> tuple[np.ndarray, bool, np.ndarray]:
    """Box crop of the largest face of one file; the whole image when no face is found."""
    image = read_image(path)
    faces = load_detector(detector).detect(image)
    if faces:
        box = faces[0].box.astype(np.float32)
        return box_crop(image, box), False, box
    h, w = image.shape[:2]
    return resize_crop(image, BOX_HR_SIDE), True, np.array([0, 0, w, h], np.float32)


def box_crops(
    paths: Sequence[Path],
    detector: str = DEFAULT_DETECTOR,
    progress: bool = True,
    use_cache: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``--probe-crop box`` crops of image files: the largest face's detector box, square,
    :data:`BOX_MARGIN` x, at :data:`BOX_HR_SIDE` (:func:`lrface.faces.degrade.box_crop`); a resize
    of the whole image when no face is found.  Cached on disk (written in parts, resumable).

    Returns ``(crops, fallback, boxes)``: uint8 BGR (N, 112, 112, 3), bool (N,) and float32
    (N, 4) detector boxes x1, y1, x2, y2 (the whole image for a fallback).
    """
    paths = [Path(p) for p in paths]
    sigs = [file_signature(p) for p in paths]
    entry = NpzCache.entry("boxcrops", "box_crops", detector, BOX_MARGIN, BOX_HR_SIDE, *sigs,
                           enabled=use_cache)  # fmt: skip
    cached = entry.load()
    if cached is not None:
        return cached["crops"], cached["fallback"], cached["boxes"]

    def compute(rows: list[int]) -> Iterator[tuple[np.ndarray, bool, np.ndarray]]:
        for i in tqdm(rows, desc="detect boxes", disable=not progress, unit="img"):
            yield _detect_box_one(paths[i], detector)

    keys = ("crops", "fallback", "boxes")
    got = entry.build(len(paths), CROP_PART_ROWS, keys, compute, "images")
    crops = got.get("crops", np.zeros((0, BOX_HR_SIDE, BOX_HR_SIDE, 3), np.uint8)).astype(np.uint8)
    fallback = got.get("fallback", np.zeros(0, bool)).astype(bool)
    boxes = got.get("boxes", np.zeros((0, 4), np.float32)).astype(np.float32)
    entry.save(crops=crops, fallback=fallback, boxes=boxes)
    return crops, fallback, boxes
