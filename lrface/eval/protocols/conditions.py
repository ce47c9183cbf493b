"""Probe conditions shared by the protocols: ``--degrade clean|realistic`` and
``--probe-crop aligned|box``, their checks, recipes and descriptions, and the crops they
start from (:func:`box_crops`: the detector's box instead of the aligned face).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ...cache import cache_dir, digest
from ...degrade import (
    BOX_HR_SIDE,
    BOX_MARGIN,
    DEGRADE_CHOICES,
    PROBE_CROPS,
    REALISTIC,
    Degradation,
    box_crop,
    degrade_realistic,
    realistic_rng,
)
from ...degrade import degrade as _degrade
from ...detect import DEFAULT_DETECTOR
from ...errors import LrfaceError
from ...fileio import save_npz_atomic
from .common import file_signature


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
    if probe_crop == "box" and not detect:
        raise LrfaceError(
            "--probe-crop box cuts the detector's box; it cannot be combined with --no-detect"
        )


def condition_recipe(deg: Degradation, kind: str, probe_crop: str) -> str:
    """The probe recipe of one size under a condition (the plain ``deg.describe()`` for
    clean aligned probes)."""
    text = deg.describe()
    if probe_crop == "box":
        text = f"box crop ({BOX_MARGIN:g}x detector box, square, {BOX_HR_SIDE}px), " + text
    if kind == "realistic":
        text += "; then " + REALISTIC.describe()
    return text


def condition_info(kind: str, probe_crop: str, detector: str) -> dict[str, Any]:
    """JSON description of the probe condition for results files."""
    return {
        "degrade": kind,
        "degrade_recipe": REALISTIC.describe()
        if kind == "realistic"
        else "none: area reduction only",
        "probe_crop": probe_crop,
        "probe_crop_recipe": (
            f"{detector} box of the face (no landmarks), made square around its centre with "
            f"side {BOX_MARGIN:g} x max(w, h), cut from the HR photo (edge replicated "
            f"outside), area-resized to {BOX_HR_SIDE}x{BOX_HR_SIDE}, then reduced"
        )
        if probe_crop == "box"
        else "5-point ArcFace template alignment at 112x112, then reduced",
    }


def condition_caption(kind: str, probe_crop: str) -> str:
    """``"probes: aligned crops, clean"``-style caption suffix."""
    what = "realistic blur/noise/JPEG" if kind == "realistic" else "clean area reduction"
    crop = "detector-box crops" if probe_crop == "box" else "aligned crops"
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


def _detect_box_one(path: Path, detector: str) -> tuple[np.ndarray, bool, np.ndarray]:
    """Box crop of the largest face of one file; the whole image when no face is found."""
    from ...align import resize_crop
    from ...detect import load_detector
    from ...images import read_image

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
    :data:`BOX_MARGIN` x, at :data:`BOX_HR_SIDE` (:func:`lrface.degrade.box_crop`); a resize
    of the whole image when no face is found.  Cached on disk like :func:`prepare_crops`.

    Returns ``(crops, fallback, boxes)``: uint8 BGR (N, 112, 112, 3), bool (N,) and float32
    (N, 4) detector boxes x1, y1, x2, y2 (the whole image for a fallback).
    """
    paths = [Path(p) for p in paths]
    sigs = [file_signature(p) for p in paths]
    key = digest("box_crops", detector, BOX_MARGIN, BOX_HR_SIDE, *sigs)
    fn = cache_dir() / f"boxcrops-{key}.npz"
    if use_cache and fn.is_file():
        with np.load(fn, allow_pickle=False) as z:
            return z["crops"], z["fallback"], z["boxes"]
    crops = np.zeros((len(paths), BOX_HR_SIDE, BOX_HR_SIDE, 3), np.uint8)
    fallback = np.zeros(len(paths), bool)
    boxes = np.zeros((len(paths), 4), np.float32)
    for i, p in enumerate(tqdm(paths, desc="detect boxes", disable=not progress, unit="img")):
        crops[i], fallback[i], boxes[i] = _detect_box_one(p, detector)
    if use_cache:
        save_npz_atomic(fn, crops=crops, fallback=fallback, boxes=boxes)
    return crops, fallback, boxes
