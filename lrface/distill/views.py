"""Training views cut the way deployment cuts small faces: the detector's box, jittered.

A surveillance pipeline hands the recogniser the detector's *box* around a 10-20 px face
(five landmarks on such a face are unreliable), not a crop aligned to the ArcFace
template.  ``lrface distill --p-box P`` replaces the aligned crop of a view by such a box
crop with probability P: the square of :data:`lrface.faces.degrade.BOX_MARGIN` x the longer
side of the detector's box on the original photo -- the crop ``--probe-crop box``
evaluates -- with its centre and side jittered as the detector's box moves when the
same face is small (:class:`BoxJitter`).  The teacher target stays the embedding of the
*aligned* high-resolution crop: the student learns to put a box-cut small face where the
teacher puts the aligned large one.

Per face a context crop (:data:`CONTEXT` x the box square, at :data:`CONTEXT_SIDE` px) is
cut once from the photo, so a jittered box never runs out of pixels; faces whose photo
has no detector box (RecordIO sources, faces the box detector missed) keep aligned views,
counted in the card.  ``--p-given P`` reads such a box, once reduced, as a pre-cut
crop is read (:func:`read_as_given`): the landmarks found inside the small crop align it,
with the errors they have on small faces.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lrface.datasets.boxes import box_crops, load_box_crops
from lrface.errors import ImageError
from lrface.faces.degrade import BOX_HR_SIDE, BOX_MARGIN, box_crop
from lrface.faces.detect import resolve_detector
from lrface.io.images import read_image

log = logging.getLogger("lrface")

#: Side of the context crop as a multiple of the box square (room for jitter).
CONTEXT = 1.5
#: Context crops are kept at this side (the box square is then :data:`BOX_HR_SIDE` px).
CONTEXT_SIDE = int(round(BOX_HR_SIDE * CONTEXT))


@dataclasses.dataclass(frozen=True)
class BoxJitter:
    """How a detector's box on a small face differs from its box on the large photo.

    Centre offset ~ N(0, ``center_sd``) of the box side in x and y (clipped at
    ``max_shift``), log side ratio ~ N(``log_scale_mean``, ``log_scale_sd``) (clipped at
    3 sd).  Defaults measured with SCRFD-2.5g on 40 LFW train photos shrunk so the face
    box is 10/14/18/24 px (the photo re-detected, box scaled back): centre sd 0.024 /
    0.019 / 0.017 / 0.011 of the side, log ratio -0.064 / -0.033 / -0.027 / -0.017 (sd
    0.070 / 0.055 / 0.036 / 0.025): the values of 10-14 px faces, slightly widened.
    """

    center_sd: float = 0.025
    max_shift: float = 0.1
    log_scale_mean: float = -0.04
    log_scale_sd: float = 0.06

    def sample(self, rng: np.random.Generator) -> tuple[float, float, float]:
        """``(dx, dy, scale)``: centre shift in box sides and the side's scale factor."""
        dx, dy = np.clip(rng.normal(0.0, self.center_sd, 2), -self.max_shift, self.max_shift)
        z = float(np.clip(rng.normal(0.0, 1.0), -3.0, 3.0))
        return float(dx), float(dy), float(np.exp(self.log_scale_mean + self.log_scale_sd * z))


def read_as_given(lr: np.ndarray, size: int) -> np.ndarray:
    """How ``--crop-mode auto`` reads the reduced box crop ``lr`` (uint8 BGR (S, S, 3)) for
    a model of input side ``size``: aligned by the landmarks found inside it
    (:func:`lrface.faces.given_crop.landmarks_in_crop`, default detector; native size,
    then bicubic), uint8 BGR (size, size, 3); ``lr`` itself when none are found (a crop
    that deployment sends down the box path)."""
    from lrface.faces.given_crop import landmarks_in_crop
    from lrface.faces.pipeline import CropOptions, align_to

    inside = landmarks_in_crop(lr)
    if inside is None:
        return lr
    return align_to(lr, inside.landmarks, CropOptions(size=size))[0]


def box_view(context: np.ndarray, jitter: BoxJitter, rng: np.random.Generator) -> np.ndarray:
    """A jittered box crop from a context crop.

    ``context``: uint8 BGR (C, C, 3), C = :data:`CONTEXT_SIDE`, the box square centred
    with side C / :data:`CONTEXT`.  Returns uint8 BGR (:data:`BOX_HR_SIDE`,
    :data:`BOX_HR_SIDE`, 3): the square shifted by ``(dx, dy)`` box sides and scaled by
    ``scale`` (:meth:`BoxJitter.sample`), bilinear.
    """
    c = context.shape[0]
    dx, dy, scale = jitter.sample(rng)
    side = c / CONTEXT * scale
    x0 = c / 2.0 + dx * side - side / 2.0
    y0 = c / 2.0 + dy * side - side / 2.0
    k = BOX_HR_SIDE / side
    m = np.array([[k, 0.0, -k * x0], [0.0, k, -k * y0]], np.float64)
    return cv2.warpAffine(
        context,
        m,
        (BOX_HR_SIDE, BOX_HR_SIDE),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


class BoxViews:
    """Context crops of the faces that have a detector box (see the module docstring).

    ``contexts``: uint8 BGR (M, C, C, 3); ``row``: int64 (N,) index into ``contexts`` per
    face of the training set, -1 for a face without a box (it keeps aligned views).
    """

    def __init__(self, contexts: np.ndarray, row: np.ndarray, jitter: BoxJitter) -> None:
        self.contexts, self.row, self.jitter = contexts, np.asarray(row, np.int64), jitter

    @property
    def covered(self) -> int:
        return int((self.row >= 0).sum())

    def has(self, idx: int) -> bool:
        return bool(self.row[idx] >= 0)

    def view(self, idx: int, rng: np.random.Generator) -> np.ndarray:
        """uint8 BGR (112, 112, 3) jittered box crop of face ``idx`` (which :meth:`has` a box)."""
        return box_view(self.contexts[self.row[idx]], self.jitter, rng)

    def card(self) -> dict[str, Any]:
        return {
            "faces_with_box": self.covered,
            "faces": len(self.row),
            "margin": BOX_MARGIN,
            "jitter": dataclasses.asdict(self.jitter),
        }


def _photo_boxes(
    root: Path, rels: list[str], detector: str, lfw: Any | None, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes float32 (N, 4) x1 y1 x2 y2, found bool (N,))`` of ``rels`` under ``root``.

    LFW sources use :func:`lrface.datasets.boxes.load_box_crops` (the most central face,
    the face the aligned crop uses), which serves any subset from a cached superset (the
    train split's boxes) and otherwise detects only ``rels``; other folders use
    :func:`lrface.datasets.boxes.box_crops` (the largest face).
    """
    if lfw is not None:
        _, fallback, boxes = load_box_crops(lfw, rels, detector, progress=progress)
        return boxes, ~fallback
    _, fallback, boxes = box_crops([root / r for r in rels], detector, progress=progress)
    return boxes, ~fallback


def build_box_views(
    parts: list[Any],
    detector: str,
    jitter: BoxJitter = BoxJitter(),
    progress: bool = True,
) -> BoxViews:
    """:class:`BoxViews` over the faces of ``parts`` (:class:`SourceFaces`, in training
    order).  Photo-backed sources (LFW, folders) get a context crop per face whose photo
    has a detector box; RecordIO faces (pre-aligned, no photo) get none."""
    from lrface.datasets.lfw import LFW

    detector = resolve_detector(detector)
    rows: list[np.ndarray] = []
    contexts: list[np.ndarray] = []
    n_ctx = 0
    for part in parts:
        faces = part.faces
        n = len(faces.paths)
        row = np.full(n, -1, np.int64)
        if part.source.kind == "rec":
            rows.append(row)
            log.warning(
                "--p-box: %s is pre-aligned (no photo): aligned views only", part.source.path
            )
            continue
        lfw = LFW(part.source.path) if part.source.kind == "lfw" else None
        root = Path(faces.root)
        boxes, found = _photo_boxes(root, list(faces.paths), detector, lfw, progress)
        for i in np.flatnonzero(found):
            try:
                image = read_image(root / faces.paths[i])
            except ImageError:
                continue
            contexts.append(box_crop(image, boxes[i], BOX_MARGIN * CONTEXT, CONTEXT_SIDE))
            row[i] = n_ctx
            n_ctx += 1
        missed = n - int((row >= 0).sum())
        if missed:
            log.warning(
                "--p-box: %s: %d of %d faces have no detector box: aligned views only",
                part.source.path,
                missed,
                n,
            )
        rows.append(row)
    ctx = np.stack(contexts) if contexts else np.zeros((0, CONTEXT_SIDE, CONTEXT_SIDE, 3), np.uint8)
    return BoxViews(ctx, np.concatenate(rows), jitter)
