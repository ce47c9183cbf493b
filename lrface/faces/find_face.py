"""Every face an image holds: the detector's pass, then retries only when it finds nothing.

A face that fills its whole frame (a tight crop cut by another tool, at any size) is often
missed by a detector that needs some context around the face; a detector may also miss a
face the other finds.  :func:`find_faces` therefore runs, in order, until one finds a face:

1. ``"image"``: the chosen detector on the image (its own multi-scale pyramid);
2. ``"padded"``: the same detector on a copy padded by :data:`PAD_FRACTION` of the longer
   side with grey (127) on every side, at any image size;
3. ``"other-detector"``: the other detector family (SCRFD <-> YuNet, :func:`other_detector`)
   on the image, when its model file is installed;
4. ``"other-detector-padded"``: the other detector on the padded copy.

The retries run only when the previous pass found no face at the detector's threshold, so
an image where the first pass finds a face costs one pass.  Boxes and landmarks are always
in the input image's coordinates (a face found on the padded copy may reach outside it).
Dataset photos (``CropOptions(pick="central")``) keep their own retries
(:func:`lrface.faces.face_choice.central_candidates`), with which the cached crops were made.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import cv2
import numpy as np

from lrface.faces.detect import (
    DEFAULT_DETECTOR,
    FALLBACK_DETECTOR,
    PREFERRED_DETECTOR,
    Face,
    load_detector,
    resolve_detector,
)
from lrface.models import registry

__all__ = ["PAD_FRACTION", "PASSES", "Found", "find_faces", "other_detector", "pad_grey"]

#: The passes of :func:`find_faces`, in the order they run.
PASSES = ("image", "padded", "other-detector", "other-detector-padded")
#: Grey border of the padded passes, as a fraction of the longer image side (each side).
PAD_FRACTION = 0.5
#: Value of the grey border (BGR, each channel).
PAD_GREY = 127


@dataclasses.dataclass(frozen=True)
class Found:
    """What :func:`find_faces` found.

    ``faces``: largest first, in the input image's coordinates (empty: none found by any
    pass).  ``found_by``: the pass that found them (one of :data:`PASSES`; ``""`` when
    none did).  ``detector``: the registry detector of that pass (the chosen one when none
    found a face).  ``tried``: the passes run, in order.
    """

    faces: list[Face]
    found_by: str
    detector: str
    tried: tuple[str, ...]

    def to_dict(self) -> dict[str, str]:
        """``{"found_by", "found_with"}`` for ``--json`` outputs (empty when nothing found)."""
        return {"found_by": self.found_by, "found_with": self.detector} if self.faces else {}


def pad_grey(image: np.ndarray, fraction: float = PAD_FRACTION) -> tuple[np.ndarray, int]:
    """``(padded copy, pad)``: ``image`` (uint8 BGR (H, W, 3)) with a grey border of ``pad =
    round(fraction * max(H, W))`` pixels on every side."""
    h, w = image.shape[:2]
    pad = int(round(fraction * max(h, w)))
    grey = (PAD_GREY, PAD_GREY, PAD_GREY)
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=grey)
    return padded, pad


def other_detector(name: str = DEFAULT_DETECTOR) -> str | None:
    """The detector of the other family for the retries of :func:`find_faces`: YuNet for
    any SCRFD, SCRFD-2.5g for YuNet; None when its model file is not installed."""
    resolved = resolve_detector(name)
    other = FALLBACK_DETECTOR if resolved != FALLBACK_DETECTOR else PREFERRED_DETECTOR
    return other if _installed(other) else None


@lru_cache(maxsize=8)
def _installed(name: str) -> bool:
    try:
        return registry.find(registry.get_spec(name)) is not None
    except registry.ModelFileError:
        return False


def _shifted(face: Face, pad: int) -> Face:
    p = np.float32(pad)
    return Face(box=face.box - p, landmarks=face.landmarks - p, score=face.score)


def find_faces(
    image: np.ndarray,
    detector: str = DEFAULT_DETECTOR,
    det_thresh: float | None = None,
    retry: bool = True,
    tight: bool = False,
) -> Found:
    """Every face of ``image`` (uint8 BGR (H, W, 3)), largest first, with the pass that
    found them (see the module docstring).  ``retry=False``: the first pass only.
    ``det_thresh`` (None: each detector's default) applies to every pass.  ``tight`` (the
    image is a face crop: pre-cut crops, :mod:`lrface.faces.given_crop`): each detector tries
    the padded copy before the image itself."""
    first = resolve_detector(detector)
    other = other_detector(first) if retry else None
    plan: list[tuple[str, str, bool]] = [("image", first, False)]
    if retry:
        plan.append(("padded", first, True))
        if other is not None:
            plan += [("other-detector", other, False), ("other-detector-padded", other, True)]
    if tight and retry:
        plan = [plan[i] for i in (1, 0, 3, 2)[: len(plan)]] if len(plan) == 4 else plan[::-1]
    padded: tuple[np.ndarray, int] | None = None
    tried: list[str] = []
    for name, det_name, with_pad in plan:
        tried.append(name)
        det = load_detector(det_name, det_thresh)
        if with_pad:
            padded = padded or pad_grey(image)
            faces = [_shifted(f, padded[1]) for f in det.detect(padded[0])]
        else:
            faces = det.detect(image)
        if faces:
            return Found(faces, name, det_name, tuple(tried))
    return Found([], "", first, tuple(tried))
