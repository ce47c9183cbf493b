"""Pre-cut face crops (``--no-detect``, ``detect=False``): aligned inside, or read as a box.

A crop handed over by another tool (a CCTV system's face crop, a detector's box) is rarely
aligned to the ArcFace template that every model expects.  :func:`landmarks_in_crop` looks
for the face's five landmarks inside the crop: the crop is enlarged to at least
:data:`ENLARGE_SIDE` px (bicubic) and searched with :func:`lrface.faces.find_face.find_faces`
(``tight``: the grey-padded copy first, then the crop itself, then the other detector).
A face counts as the crop's subject when its box centre lies inside the crop and its box
side (sqrt of the area) is at least :data:`MIN_FACE_FRACTION` of the crop's shorter side;
of those, the one nearest the centre (:func:`lrface.faces.face_choice.most_central`).

Crop modes (:data:`CROP_MODES`, :class:`lrface.faces.pipeline.CropOptions` ``crop_mode``):

* ``auto`` (default): landmarks found -> aligned by them; none -> the box path;
* ``aligned``: the crop is already template-aligned (``lrface detect --save-crops``): resized;
* ``box``: the crop is a face box without landmarks: resized, embedded by the box model
  (:func:`lrface.api.choose_model`).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from lrface.faces.detect import DEFAULT_DETECTOR
from lrface.faces.face_choice import most_central
from lrface.faces.find_face import Found, find_faces

__all__ = ["CROP_MODES", "ENLARGE_SIDE", "MIN_FACE_FRACTION", "CropLandmarks", "landmarks_in_crop"]

#: Accepted values of ``crop_mode`` (the first is the default).
CROP_MODES = ("auto", "aligned", "box")
#: A crop whose longer side is shorter than this is enlarged to it (bicubic) before the search.
ENLARGE_SIDE = 224
#: Smallest accepted face, as its box side over the crop's shorter side.
MIN_FACE_FRACTION = 0.25


@dataclasses.dataclass(frozen=True)
class CropLandmarks:
    """The crop's subject found by :func:`landmarks_in_crop`.

    ``landmarks``: float32 (5, 2) in the crop's pixels; ``box``: float32 (4,) x1, y1, x2,
    y2 in the crop's pixels; ``score``: detection score; ``found``: the search
    (:class:`lrface.faces.find_face.Found`, coordinates of the enlarged crop).
    """

    landmarks: np.ndarray
    box: np.ndarray
    score: float
    found: Found


def landmarks_in_crop(
    crop: np.ndarray, detector: str = DEFAULT_DETECTOR, det_thresh: float | None = None
) -> CropLandmarks | None:
    """The subject's landmarks in a pre-cut face ``crop`` (uint8 BGR (H, W, 3)), or None
    when no face of at least :data:`MIN_FACE_FRACTION` of the crop is found."""
    h, w = crop.shape[:2]
    scale = max(1.0, ENLARGE_SIDE / max(h, w))
    work = crop
    if scale > 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        work = cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC)
    sx, sy = work.shape[1] / w, work.shape[0] / h
    found = find_faces(work, detector, det_thresh, retry=True, tight=True)
    wh, ww = work.shape[:2]
    ok = [
        f
        for f in found.faces
        if 0 <= (f.box[0] + f.box[2]) / 2 <= ww
        and 0 <= (f.box[1] + f.box[3]) / 2 <= wh
        and np.sqrt(f.area) >= MIN_FACE_FRACTION * min(wh, ww)
    ]
    if not ok:
        return None
    face = ok[most_central(ok, work.shape)]
    xy = np.array([sx, sy], np.float32)
    box = (face.box.reshape(2, 2) / xy).reshape(4).astype(np.float32)
    return CropLandmarks((face.landmarks / xy).astype(np.float32), box, face.score, found)
