"""Which face of a dataset photo to use, and where to assume it is when none is detected.

Dataset photos (LFW, UTKFace, a user's training folder) hold one subject, roughly
centred; the face used is the detected face whose box centre is nearest the image centre
relative to its size (:func:`central_face`).  A photo where nothing is found at the
detector's threshold is retried at 0.1 and on a grey-padded copy (tightly cropped faces).
With no detection at all the face is assumed at the LFW framing (:func:`fallback_square`,
:func:`template_landmarks`).  :mod:`lrface.faces.pipeline` routes ``CropOptions(pick="central")``
here; the LFW box crops (:func:`lrface.datasets.boxes.load_box_crops`) use the same
choice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from lrface.faces.align import template
from lrface.faces.detect import Face

if TYPE_CHECKING:
    from lrface.faces.detect import Detector

#: Detection threshold of the retries (after the detector's own threshold).
RETRY_THRESH = 0.1
#: Grey border of the padded retry, as a fraction of the longer image side (each side).
PAD_FRACTION = 0.5


def central_face(image: np.ndarray, detector: Detector, tight: bool = False) -> Face | None:
    """The face of :func:`central_candidates` nearest the image centre relative to its size
    (:func:`most_central`); None if none.  ``image``: uint8 BGR (H, W, 3)."""
    faces = central_candidates(image, detector, tight)
    return faces[most_central(faces, image.shape)] if faces else None


def central_candidates(image: np.ndarray, detector: Detector, tight: bool = False) -> list[Face]:
    """Every face of the first detection attempt that finds one (boxes and landmarks in
    ``image``'s coordinates); ``[]`` when none does.

    Attempts, in order: ``image`` at the detector's ``det_thresh``, at :data:`RETRY_THRESH`,
    then a copy padded by :data:`PAD_FRACTION` grey (127) on every side at ``det_thresh``
    and at :data:`RETRY_THRESH`.  ``tight`` (photos cropped tightly around the face): the
    padded copy at ``det_thresh`` comes before the image at :data:`RETRY_THRESH` -- a face
    cropped so tightly that the detector sees no context (UTKFace's 200x200 "aligned &
    cropped" photos) is missed at ``det_thresh``, and at 0.1 the plain image mostly yields
    false detections (skin and hair patches: 214 of a 500-image UTKFace sample), while the
    padded copy finds every face at ``det_thresh``.  The default order is the one LFW's
    crops were cached with.
    """
    h, w = image.shape[:2]
    pad = int(round(PAD_FRACTION * max(h, w)))
    padded: list[np.ndarray] = []  # made on first use

    def view(with_pad: bool) -> np.ndarray:
        if with_pad and not padded:
            padded.append(
                cv2.copyMakeBorder(
                    image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(127, 127, 127)
                )
            )
        return padded[0] if with_pad else image

    t0 = detector.det_thresh
    order = [(False, t0), (False, RETRY_THRESH), (True, t0), (True, RETRY_THRESH)]
    if tight:
        order[1], order[2] = order[2], order[1]
    for with_pad, thresh in order:
        faces = detector.detect(view(with_pad), det_thresh=thresh)
        if faces:
            return [_shifted(f, pad) for f in faces] if with_pad else faces
    return []


def _shifted(face: Face, pad: int) -> Face:
    """``face`` found on the padded copy, in the original image's coordinates."""
    return Face(
        box=face.box - np.float32(pad), landmarks=face.landmarks - np.float32(pad), score=face.score
    )


def most_central(faces: list[Face], shape: tuple[int, ...]) -> int:
    """Index in ``faces`` (not empty) of the face whose box centre is nearest the centre of
    an image of ``shape`` (H, W, ...), in units of the face's size (sqrt of its box area);
    the first such face on a tie."""
    h, w = shape[:2]
    c = np.array([w / 2, h / 2])

    def cost(f: Face) -> float:
        bc = np.array([(f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2])
        return float(np.linalg.norm(bc - c) / max(np.sqrt(f.area), 1.0))

    return min(range(len(faces)), key=lambda i: cost(faces[i]))


def fallback_square(h: int, w: int) -> tuple[float, float, float]:
    """``(x1, y1, side)`` of where a dataset photo of ``h`` x ``w`` pixels is assumed to
    hold its face when none is detected: the centred square of 45 % of the shorter side,
    3 % of the height below the centre (LFW framing).  Used for the aligned crops'
    template landmarks and the box crops' box."""
    side = 0.45 * min(h, w)
    return w / 2 - side / 2, h / 2 - side / 2 + 0.03 * h, side


def template_landmarks(h: int, w: int) -> np.ndarray:
    """float32 (5, 2): the ArcFace template's five points on :func:`fallback_square` of an
    ``h`` x ``w`` photo (x, y in image pixels)."""
    x1, y1, side = fallback_square(h, w)
    lm = template(112) / 112 * side + np.array([x1, y1])
    return lm.astype(np.float32)
