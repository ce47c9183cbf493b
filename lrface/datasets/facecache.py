"""Detect and align every image of a dataset once; keep landmarks and 112x112 crops on disk.

For dataset photos (LFW-style: one subject, centred) the face used is the detected face
whose box centre is nearest the image centre, weighted by size.  Images where nothing is
found at ``det_thresh`` are retried at 0.1, then on a grey-padded copy (tightly cropped
faces; for user photos the padded copy comes first, see :func:`central_face`); if still
nothing, the landmarks of the average LFW face position are used and the
image is flagged ``fallback`` (training skips such images; evaluation keeps them).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import cv2
import numpy as np

from ..align import align_face, template
from ..cache import cache_dir, digest
from ..detect import DEFAULT_DETECTOR, Face, load_detector
from ..errors import ImageError
from ..fileio import save_npz_atomic
from ..images import read_image
from ..workers import map_items

log = logging.getLogger("lrface")

#: 2: images with no face found are retried on a grey-padded copy.  Cache files of an
#: older version have their ``fallback`` rows detected again on first use.
CACHE_VERSION = 2


def central_face(image: np.ndarray, detector, pad_early: bool = False) -> Face | None:
    """The detected face whose box centre is nearest the image centre, relative to its size
    (LFW-style photos: one centred subject); None if none.

    Attempts, first success wins: the image at ``det_thresh``, at 0.1, then a copy padded
    by 50 % grey on every side at ``det_thresh`` and 0.1 (box and landmarks returned in the
    original image's coordinates).  ``pad_early`` (user photos): the padded copy at
    ``det_thresh`` comes before the image at 0.1 -- a face cropped so tightly that the
    detector sees no context (UTKFace's 200x200 "aligned & cropped" photos) is missed at
    ``det_thresh``, and at 0.1 the plain image mostly yields false detections (skin and
    hair patches: 214 of a 500-image UTKFace sample), while the padded copy finds every
    face at ``det_thresh``.  The default order is the one LFW's crops were cached with.
    """
    h, w = image.shape[:2]
    c = np.array([w / 2, h / 2])

    def cost(f: Face) -> float:
        bc = np.array([(f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2])
        return float(np.linalg.norm(bc - c) / max(np.sqrt(f.area), 1.0))

    pad = int(round(0.5 * max(h, w)))
    padded: list[np.ndarray] = []

    def view(with_pad: bool) -> np.ndarray:
        if not with_pad:
            return image
        if not padded:
            padded.append(
                cv2.copyMakeBorder(
                    image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(127, 127, 127)
                )
            )
        return padded[0]

    t0 = detector.det_thresh
    order = ((False, t0), (False, 0.1), (True, t0), (True, 0.1))
    if pad_early:
        order = ((False, t0), (True, t0), (False, 0.1), (True, 0.1))
    for with_pad, thresh in order:
        faces = detector.detect(view(with_pad), det_thresh=thresh)
        if faces:
            if with_pad:
                faces = [
                    Face(
                        box=f.box - np.float32(pad),
                        landmarks=f.landmarks - np.float32(pad),
                        score=f.score,
                    )
                    for f in faces
                ]
            return min(faces, key=cost)
    return None


def central_face_landmarks(
    image: np.ndarray, detector, pad_early: bool = False
) -> tuple[np.ndarray, bool]:
    """Landmarks (5, 2) of :func:`central_face`; ``(template fallback, True)`` if none."""
    face = central_face(image, detector, pad_early)
    if face is not None:
        return face.landmarks, False
    x1, y1, side = fallback_square(*image.shape[:2])
    lm = template(112) / 112 * side + np.array([x1, y1])  # the template on that square
    return lm.astype(np.float32), True


def fallback_square(h: int, w: int) -> tuple[float, float, float]:
    """``(x1, y1, side)`` of where a dataset photo of ``h`` x ``w`` pixels is assumed to
    hold its face when none is detected: the centred square of 45 % of the shorter side,
    3 % of the height below the centre (LFW framing).  Used for the aligned crops'
    template landmarks and the box crops' box."""
    side = 0.45 * min(h, w)
    return w / 2 - side / 2, h / 2 - side / 2 + 0.03 * h, side


def _align_photo(
    path: str, detector_name: str = DEFAULT_DETECTOR, pad_early: bool = False
) -> tuple[np.ndarray, bool, np.ndarray, bool]:
    """``(landmarks, fallback, crop, unreadable)`` of one image file: the landmarks of
    :func:`central_face_landmarks` and the 112x112 BGR crop aligned to them (the crops
    :func:`aligned_crops` caches).  An unreadable file gives zeros, flagged (reported and
    skipped by the callers that train on it)."""
    try:
        img = read_image(path)
    except ImageError as exc:
        log.debug("%s", exc)
        return np.zeros((5, 2), np.float32), True, np.zeros((112, 112, 3), np.uint8), True
    lm, fb = central_face_landmarks(img, load_detector(detector_name), pad_early)
    return lm, fb, align_face(img, lm, 112), False


def cache_file(
    root: Path, rel_paths: list[str], detector_name: str, pad_early: bool = False
) -> Path:
    """Where :func:`aligned_crops` keeps the result for this root, file list and detector.

    ``pad_early`` (user photos) runs have their own files, whose key also covers every
    file's size and modification time (a photo replaced under the same name is aligned
    again); LFW's key is the path list alone, as the evaluators expect."""
    mode = ("pad-early", _files_digest(root, rel_paths)) if pad_early else ()
    key = digest(Path(root).resolve(), detector_name, *mode, *rel_paths)
    return cache_dir() / f"faces-{detector_name}-{key}.npz"


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
    pad_early: bool = False,
) -> dict[str, np.ndarray]:
    """Landmarks and aligned 112x112 BGR crops for ``rel_paths`` under ``root`` (cached).

    Returns ``{"paths": (N,) str, "landmarks": (N,5,2) float32, "fallback": (N,) bool,
    "unreadable": (N,) bool, "crops": (N,112,112,3) uint8 BGR}`` in the order of
    ``rel_paths`` (row i is always ``rel_paths[i]``: nothing is dropped or shifted).
    ``fallback``: no face detected (the crop is the centred fallback); ``unreadable``: the
    file could not be read (all-zero crop, also flagged ``fallback``).  Cache files
    written before ``unreadable`` existed lack that key (they hold no unreadable image).
    ``pad_early``: the detection order for arbitrary user photos (:func:`central_face`).
    ``workers``: detection processes (:func:`lrface.workers.map_items`: in this process
    for ``workers=0`` or fewer than :data:`lrface.workers.POOL_MIN_ITEMS` images).
    """
    from ..detect import resolve_detector

    rel_paths = list(rel_paths)
    detector_name = resolve_detector(detector_name)
    fn = cache_file(root, rel_paths, detector_name, pad_early)
    if fn.is_file():
        with np.load(fn, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
        old = _version(out) < CACHE_VERSION
        redo = np.flatnonzero(out["fallback"]) if old else np.zeros(0, np.int64)
        if len(redo):  # written before the padded retry: detect those images again
            got = _detect_align(
                [str(Path(root) / rel_paths[i]) for i in redo],
                detector_name,
                workers,
                progress,
                pad_early,
            )
            out.setdefault("unreadable", np.zeros(len(rel_paths), bool))
            for key, col in zip(("landmarks", "fallback", "crops", "unreadable"), got):
                out[key][redo] = col
            out["version"] = np.array(CACHE_VERSION)
            save_npz_atomic(fn, **out)
        return out
    paths = [str(Path(root) / r) for r in rel_paths]
    n = len(paths)
    lms, fbs, crops, bad = _detect_align(paths, detector_name, workers, progress, pad_early)
    if bad.any():
        log.warning("%d of %d images could not be read", bad.sum(), n)
    if (fbs & ~bad).any():
        log.warning(
            "%d of %d images had no detectable face; used the centred fallback",
            (fbs & ~bad).sum(),
            n,
        )
    out = {
        "paths": np.array(rel_paths),
        "landmarks": lms,
        "fallback": fbs,
        "unreadable": bad,
        "crops": crops,
        "version": np.array(CACHE_VERSION),
    }
    save_npz_atomic(fn, **out)
    return out


def _version(cached: dict[str, np.ndarray]) -> int:
    return int(cached["version"]) if "version" in cached else 1


def _detect_align(
    paths: list[str], detector_name: str, workers: int, progress: bool, pad_early: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(landmarks (N,5,2) float32, fallback (N,) bool, crops (N,112,112,3) uint8 BGR,
    unreadable (N,) bool)`` of absolute image ``paths``, in their order
    (:func:`_align_photo` of each, in ``workers`` processes: :func:`lrface.workers.map_items`)."""
    n = len(paths)
    lms = np.zeros((n, 5, 2), np.float32)
    fbs = np.zeros(n, bool)
    bad = np.zeros(n, bool)
    crops = np.zeros((n, 112, 112, 3), np.uint8)
    load_detector(detector_name)  # a missing detector is one error, up front
    work = functools.partial(_align_photo, detector_name=detector_name, pad_early=pad_early)
    results = map_items(
        work, paths, workers, progress=progress, desc=f"detect+align ({detector_name})"
    )
    for i, (lm, fb, crop, unreadable) in enumerate(results):
        lms[i], fbs[i], crops[i], bad[i] = lm, fb, crop, unreadable
    return lms, fbs, crops, bad
