"""Probe conditions shared by the protocols: ``--degrade clean|realistic`` and
``--probe-crop aligned|box|given``, their checks, recipes and descriptions, and the crops
they start from (:func:`box_crops`: the detector's box instead of the aligned face;
:func:`given_landmarks` / :func:`given_crop`: that box, reduced, read as a pre-cut crop by
the default crop mode).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from lrface.errors import LrfaceError
from lrface.faces.degrade import (
    BOX_HR_SIDE,
    BOX_MARGIN,
    DEGRADE_CHOICES,
    PROBE_CROPS,
    REALISTIC,
    Degradation,
    degrade_realistic,
    realistic_rng,
)
from lrface.faces.degrade import degrade as _degrade
from lrface.faces.given_crop import ENLARGE_SIDE, MIN_FACE_FRACTION
from lrface.io.cache import CROP_PART_ROWS, NpzCache, digest
from lrface.io.workers import map_items

#: Version of the ``given`` probe recipe (part of its cache keys).
GIVEN_VERSION = 1


def degradation_for(size: int, recipe: Degradation | None) -> Degradation:
    """``recipe`` (default: area reduction only) at ``size``."""
    return dataclasses.replace(recipe, size=size) if recipe else Degradation(size=size)


def stable_seed(name: str) -> int:
    """Per-file noise seed that does not depend on list order."""
    return int(digest(name, n=8), 16)


def check_condition(kind: str, probe_crop: str) -> None:
    """Raise a one-line :class:`LrfaceError` for an unknown ``--degrade`` / ``--probe-crop``."""
    if kind not in DEGRADE_CHOICES:
        raise LrfaceError(f"--degrade {kind!r} is not known; choose {' or '.join(DEGRADE_CHOICES)}")
    if probe_crop not in PROBE_CROPS:
        raise LrfaceError(
            f"--probe-crop {probe_crop!r} is not known; choose {' or '.join(PROBE_CROPS)}"
        )


def check_box_needs_detection(probe_crop: str, detect: bool) -> None:
    """Raise a one-line :class:`LrfaceError` for ``--probe-crop box`` with ``--no-detect``
    (the box is the detector's)."""
    if probe_crop in ("box", "given") and not detect:
        raise LrfaceError(
            f"--probe-crop {probe_crop} cuts the detector's box; it cannot be combined with "
            "--no-detect"
        )


def condition_recipe(deg: Degradation, kind: str, probe_crop: str) -> str:
    """The probe recipe of one size under a condition (the plain ``deg.describe()`` for
    clean aligned probes)."""
    text = deg.describe()
    if probe_crop in ("box", "given"):
        text = f"box crop ({BOX_MARGIN:g}x detector box, square, {BOX_HR_SIDE}px), " + text
    if kind == "realistic":
        text += "; then " + REALISTIC.describe()
    if probe_crop == "given":
        text += "; then read as a pre-cut crop (--crop-mode auto)"
    return text


def condition_info(kind: str, probe_crop: str, detector: str) -> dict[str, Any]:
    """JSON description of the probe condition for results files."""
    return {
        "degrade": kind,
        "degrade_recipe": REALISTIC.describe()
        if kind == "realistic"
        else "none: area reduction only",
        "probe_crop": probe_crop,
        "probe_crop_recipe": _crop_recipe(probe_crop, detector),
    }


def _crop_recipe(probe_crop: str, detector: str) -> str:
    if probe_crop == "aligned":
        return "5-point ArcFace template alignment at 112x112, then reduced"
    box = (
        f"{detector} box of the face (no landmarks), made square around its centre with "
        f"side {BOX_MARGIN:g} x max(w, h), cut from the HR photo (edge replicated "
        f"outside), area-resized to {BOX_HR_SIDE}x{BOX_HR_SIDE}, then reduced"
    )
    if probe_crop == "box":
        return box
    return (
        box + " (and degraded); then handed to the default crop mode of pre-cut crops "
        f"(--crop-mode auto, lrface.faces.given_crop: enlarged to >= {ENLARGE_SIDE}px, searched "
        f"by {detector} on a grey-padded copy then the crop, then the other detector; a face "
        f">= {MIN_FACE_FRACTION:g} of the crop centred inside it is aligned by its 5 "
        "landmarks at its native size and enlarged bicubically to the model's input; "
        "otherwise the crop is resized (box path))"
    )


def condition_caption(kind: str, probe_crop: str) -> str:
    """``"probes: aligned crops, clean"``-style caption suffix."""
    what = "realistic blur/noise/JPEG" if kind == "realistic" else "clean area reduction"
    crop = {
        "aligned": "aligned crops",
        "box": "detector-box crops",
        "given": "detector-box crops read as pre-cut crops (--crop-mode auto)",
    }[probe_crop]
    return f"probes: {crop}, {what}"


def degrade_probe(
    crop: np.ndarray, deg: Degradation, kind: str, index: int, side: int = 0
) -> np.ndarray:
    """One probe under the condition ``kind``: ``degrade(crop, deg)`` (clean; noise seeded by
    ``index`` if ``deg`` adds any) or :func:`degrade_realistic` with the draw of
    :func:`realistic_rng` ``(index, deg.size, side)``.  uint8 BGR in and out."""
    if kind == "realistic":
        return degrade_realistic(crop, deg, realistic_rng(index, deg.size, side))
    return _degrade(crop, deg, index)


def _landmarks_of(probe: np.ndarray, detector: str) -> tuple[np.ndarray, bool]:
    """``(float32 (5, 2) landmarks in the probe's pixels, found)`` of one given probe."""
    from lrface.faces.given_crop import landmarks_in_crop

    inside = landmarks_in_crop(probe, detector)
    if inside is None:
        return np.zeros((5, 2), np.float32), False
    return inside.landmarks.astype(np.float32), True


def given_landmarks(
    probes: Sequence[np.ndarray],
    detector: str,
    key_parts: Sequence[object],
    progress: bool = True,
    use_cache: bool = True,
    workers: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """The landmarks the default crop mode finds inside each ``--probe-crop given`` probe
    (:func:`lrface.faces.given_crop.landmarks_in_crop`; uint8 BGR probes of any size).

    ``key_parts`` must identify the probes exactly (their source and recipe); cached under
    :func:`lrface.io.cache.cache_dir`.  Returns float32 (N, 5, 2) landmarks in each probe's
    pixels and bool (N,) found (False: the probe takes the box path).
    """
    from lrface.faces.detect import resolve_detector

    used = resolve_detector(detector)
    entry = NpzCache.entry(
        "given", "given-landmarks", GIVEN_VERSION, used, ENLARGE_SIDE, MIN_FACE_FRACTION,
        *key_parts, enabled=use_cache,
    )  # fmt: skip
    cached = entry.load()
    if cached is not None and len(cached["found"]) == len(probes):
        return cached["landmarks"], cached["found"]

    def compute(rows: list[int]) -> Iterator[tuple[np.ndarray, bool]]:
        return map_items(
            functools.partial(_landmarks_of, detector=used),
            [probes[i] for i in rows],
            workers,
            progress=progress,
            desc=f"landmarks in given crops ({used})",
        )

    got = entry.build(len(probes), CROP_PART_ROWS, ("landmarks", "found"), compute, "probes")
    lms = got.get("landmarks", np.zeros((0, 5, 2), np.float32)).astype(np.float32)
    found = got.get("found", np.zeros(0, bool)).astype(bool)
    entry.save(landmarks=lms, found=found)
    return lms, found


def given_crop(probe: np.ndarray, landmarks: np.ndarray | None, size: int) -> np.ndarray:
    """The crop a model of input side ``size`` gets for a given ``probe`` (uint8 BGR) under
    the default crop mode: aligned by ``landmarks`` (float32 (5, 2), native size then
    bicubic) or, with None, the box path (resized).  uint8 BGR (size, size, 3)."""
    from lrface.faces.pipeline import CropOptions, align_to
    from lrface.models.preprocess import resize_crop

    if landmarks is None:
        return resize_crop(probe, size)
    return align_to(probe, landmarks, CropOptions(size=size))[0]
