"""From an input image to an aligned face crop: read -> detect -> pick a face -> align.

``detect=False`` (CLI ``--no-detect``) treats the input as a pre-cut face crop and only
resizes it.  With detection, the largest face is used unless ``face_index`` picks
another (faces are ordered largest first); the number found is reported.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .align import align_face, native_face_size, resize_crop
from .detect import DEFAULT_DETECTOR, Face, load_detector
from .errors import LrfaceError, NoFaceError
from .io import ImageInput, describe, read_image


@dataclasses.dataclass
class PreparedFace:
    """An aligned crop and where it came from.

    ``crop``: uint8 BGR (S, S, 3).  ``face``: the detection used (None with
    ``detect=False``).  ``n_faces``: faces found.  ``face_size``: estimated resolution
    of the face in the source (px, side of an ArcFace-aligned crop at native scale).
    """

    crop: np.ndarray
    face: Face | None
    n_faces: int
    face_index: int
    face_size: float
    source: str

    def to_dict(self) -> dict:
        d = {
            "source": self.source,
            "faces_found": self.n_faces,
            "face_index": self.face_index,
            "face_size_px": round(float(self.face_size), 1),
        }
        if self.face is not None:
            d.update(self.face.to_dict())
        return d


def prepare_face(
    source: ImageInput,
    detect: bool = True,
    size: int = 112,
    face_index: int | None = None,
    detector: str = DEFAULT_DETECTOR,
    det_thresh: float | None = None,
    name: str | None = None,
) -> PreparedFace:
    """Read ``source`` and return its aligned face crop at ``size`` x ``size``.

    Crops whose face is smaller than ``size`` are aligned at the face's native
    resolution and enlarged with bicubic interpolation (the recipe the students were
    trained with), not warped up directly.
    Raises :class:`NoFaceError` (with the ``--no-detect`` hint) when no face is found and
    :class:`LrfaceError` when ``face_index`` is out of range.
    """
    label = name or describe(source)
    image = read_image(source, name=label)
    if not detect:
        h, w = image.shape[:2]
        return PreparedFace(resize_crop(image, size), None, 1, 0, float(min(h, w)), label)
    faces = load_detector(detector, det_thresh).detect(image)
    if not faces:
        raise NoFaceError(
            f"{label}: no face found; if the image is already a cropped face, use --no-detect "
            "(API: detect=False)"
        )
    idx = 0 if face_index is None else face_index
    if not 0 <= idx < len(faces):
        raise LrfaceError(f"{label}: --face-index {idx} out of range, {len(faces)} face(s) found")
    face = faces[idx]
    native = native_face_size(face.landmarks)
    if native < size:
        from .align import align_native
        from .models.embedder import resize_to

        crop = resize_to(align_native(image, face.landmarks, max_size=size), size)
    else:
        crop = align_face(image, face.landmarks, size)
    return PreparedFace(crop, face, len(faces), idx, native, label)


def detect_faces(
    source: ImageInput, detector: str = DEFAULT_DETECTOR, det_thresh: float | None = None
) -> tuple[np.ndarray, list[Face]]:
    """Read ``source`` and detect every face: returns (BGR image, faces largest first)."""
    image = read_image(source)
    return image, load_detector(detector, det_thresh).detect(image)
