"""Detect and align every image of a dataset once; keep landmarks and 112x112 crops on disk.

Each photo goes through the crop pipeline with
:func:`lrface.faces.pipeline.dataset_photo_options`: the most central face
(:mod:`lrface.faces.face_choice`, retried at a lower threshold and on a grey-padded copy; for
user photos, ``tight_crops``, the padded copy comes first); if still nothing, the
template landmarks at the LFW framing are used and the image is flagged ``fallback``
(training skips such images; evaluation keeps them).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lrface.errors import ImageError
from lrface.faces.detect import DEFAULT_DETECTOR, load_detector
from lrface.faces.pipeline import CropOptions, dataset_photo_options, prepare_face
from lrface.io import cache
from lrface.io.cache import NpzCache, digest
from lrface.io.workers import map_items

log = logging.getLogger("lrface")

#: 2: images with no face found are retried on a grey-padded copy.  Cache files of an
#: older version have their ``fallback`` rows detected again on first use.
CACHE_VERSION = 2


def _align_photo(path: str, options: CropOptions) -> tuple[np.ndarray, bool, np.ndarray, bool]:
    """``(landmarks, fallback, crop, unreadable)`` of one image file: the 112x112 BGR crop
    of :func:`lrface.faces.pipeline.dataset_photo_options` and the (5, 2) float32 landmarks it
    was aligned to (the crops :func:`aligned_crops` caches).  An unreadable file gives
    zeros, flagged (reported and skipped by the callers that train on it)."""
    try:
        face = prepare_face(path, options)
    except ImageError as exc:
        log.debug("%s", exc)
        return np.zeros((5, 2), np.float32), True, np.zeros((112, 112, 3), np.uint8), True
    assert face.landmarks is not None  # on_no_face="template": always aligned
    return face.landmarks, face.fallback, face.crop, False


def cache_file(
    root: Path, rel_paths: list[str], detector_name: str, tight_crops: bool = False
) -> Path:
    """Where :func:`aligned_crops` keeps the result for this root, file list and detector.

    ``tight_crops`` (user photos) runs have their own files, whose key also covers every
    file's size and modification time (a photo replaced under the same name is aligned
    again); LFW's key is the path list alone, as the evaluators expect."""
    return _entry(root, rel_paths, detector_name, tight_crops).path


def _entry(root: Path, rel_paths: list[str], detector_name: str, tight_crops: bool) -> NpzCache:
    """The :class:`lrface.io.cache.NpzCache` entry of :func:`cache_file` (key version 1:
    the key these files always had; the content version is :data:`CACHE_VERSION`)."""
    mode = ("pad-early", _files_digest(root, rel_paths)) if tight_crops else ()  # key: old name
    return NpzCache.entry(
        "faces", Path(root).resolve(), detector_name, *mode, *rel_paths, label=detector_name
    )


def _files_digest(root: Path, rel_paths: list[str]) -> str:
    """Digest of each file's size and modification time (``-`` for a missing file)."""
    stats = []
    for r in rel_paths:
        try:
            st = (Path(root) / r).stat()
            stats.append(f"{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            stats.append("-")
    return digest(*stats)


def aligned_crops(
    root: Path,
    rel_paths: list[str],
    detector_name: str = DEFAULT_DETECTOR,
    workers: int = 2,
    progress: bool = True,
    tight_crops: bool = False,
) -> dict[str, np.ndarray]:
    """Landmarks and aligned 112x112 BGR crops for ``rel_paths`` under ``root`` (cached).

    Returns ``{"paths": (N,) str, "landmarks": (N,5,2) float32, "fallback": (N,) bool,
    "unreadable": (N,) bool, "crops": (N,112,112,3) uint8 BGR}`` in the order of
    ``rel_paths`` (row i is always ``rel_paths[i]``: nothing is dropped or shifted).
    ``fallback``: no face detected (the crop is the centred fallback); ``unreadable``: the
    file could not be read (all-zero crop, also flagged ``fallback``).  Cache files
    written before ``unreadable`` existed lack that key (they hold no unreadable image).
    ``tight_crops``: the detection order for arbitrary user photos
    (:func:`lrface.faces.face_choice.central_candidates`).
    ``workers``: detection processes (:func:`lrface.io.workers.map_items`: in this process
    for ``workers=0`` or fewer than :data:`lrface.io.workers.POOL_MIN_ITEMS` images).
    """
    from lrface.faces.detect import resolve_detector

    rel_paths = list(rel_paths)
    detector_name = resolve_detector(detector_name)
    entry = _entry(root, rel_paths, detector_name, tight_crops)
    options = dataset_photo_options(detector_name, tight_crops)
    paths = [str(Path(root) / r) for r in rel_paths]
    if entry.exists():
        return _load_cached(entry, paths, options, workers, progress)
    lms, fbs, crops, bad = _detect_align_in_parts(entry, paths, options, workers, progress)
    _warn_missing(fbs, bad)
    out = {
        "paths": np.array(rel_paths),
        "landmarks": lms,
        "fallback": fbs,
        "unreadable": bad,
        "crops": crops,
        "version": np.array(CACHE_VERSION),
    }
    entry.save(**out)
    return out


def _load_cached(
    entry: NpzCache, paths: list[str], options: CropOptions, workers: int, progress: bool
) -> dict[str, np.ndarray]:
    """The arrays of the cache ``entry`` (of absolute ``paths``, in order); a file older
    than :data:`CACHE_VERSION` has its ``fallback`` rows detected again and is rewritten."""
    out = entry.load()
    assert out is not None  # the caller saw it on disk
    old = _version(out) < CACHE_VERSION
    redo = np.flatnonzero(out["fallback"]) if old else np.zeros(0, np.int64)
    if len(redo):  # written before the padded retry: detect those images again
        got = _detect_align([paths[i] for i in redo], options, workers, progress)
        out.setdefault("unreadable", np.zeros(len(paths), bool))
        for key, col in zip(("landmarks", "fallback", "crops", "unreadable"), got):
            out[key][redo] = col
        out["version"] = np.array(CACHE_VERSION)
        entry.save(**out)
    return out


def _warn_missing(fallback: np.ndarray, unreadable: np.ndarray) -> None:
    """Log how many of the images (bool (N,) flags) were unreadable or had no face."""
    n = len(fallback)
    if unreadable.any():
        log.warning("%d of %d images could not be read", unreadable.sum(), n)
    if (fallback & ~unreadable).any():
        log.warning(
            "%d of %d images had no detectable face; used the centred fallback",
            (fallback & ~unreadable).sum(),
            n,
        )


def _version(cached: dict[str, np.ndarray]) -> int:
    return int(cached["version"]) if "version" in cached else 1


def _detect_align(
    paths: list[str], options: CropOptions, workers: int, progress: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(landmarks (N,5,2) float32, fallback (N,) bool, crops (N,112,112,3) uint8 BGR,
    unreadable (N,) bool)`` of absolute image ``paths``, in their order
    (:func:`_align_photo` of each, in ``workers`` processes:
    :func:`lrface.io.workers.map_items`)."""
    n = len(paths)
    lms = np.zeros((n, 5, 2), np.float32)
    fbs = np.zeros(n, bool)
    bad = np.zeros(n, bool)
    crops = np.zeros((n, 112, 112, 3), np.uint8)
    load_detector(options.detector)  # a missing detector is one error, up front
    work = functools.partial(_align_photo, options=options)
    results = map_items(
        work, paths, workers, progress=progress, desc=f"detect+align ({options.detector})"
    )
    for i, (lm, fb, crop, unreadable) in enumerate(results):
        lms[i], fbs[i], crops[i], bad[i] = lm, fb, crop, unreadable
    return lms, fbs, crops, bad


def _detect_align_in_parts(
    entry: NpzCache, paths: list[str], options: CropOptions, workers: int, progress: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_detect_align` of every path, built in parts of
    :data:`lrface.io.cache.CROP_PART_ROWS` images beside the cache ``entry``
    (:meth:`lrface.io.cache.NpzCache.build`): a build killed half-way resumes from its
    last finished part."""
    if not paths:
        return _detect_align(paths, options, workers, progress)
    load_detector(options.detector)  # a missing detector is one error, up front
    work = functools.partial(_align_photo, options=options)

    def compute(rows: list[int]) -> Iterator[tuple[np.ndarray, ...]]:
        return map_items(
            work,
            [paths[i] for i in rows],
            workers,
            progress=progress,
            desc=f"detect+align ({options.detector})",
        )

    keys = ("landmarks", "fallback", "crops", "unreadable")
    got = entry.build(len(paths), cache.CROP_PART_ROWS, keys, compute, "images")
    return (
        got["landmarks"].astype(np.float32),
        got["fallback"].astype(bool),
        got["crops"].astype(np.uint8),
        got["unreadable"].astype(bool),
    )
