"""The public Python API: ``load_embedder``, ``detect``, ``embed``, ``verify``, ``choose_model``.

Arrays: images are uint8 BGR (H, W, 3) (paths, bytes, PIL images and HxW / HxWx4 arrays
are accepted and converted); embeddings are float32 (N, D), L2-normalised; similarity is
the cosine of two embeddings, in [-1, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from .detect import DEFAULT_DETECTOR
from .errors import LrfaceError, ModelFileError
from .io import ImageInput
from .models.embedder import Embedder
from .models.loader import load_embedder
from .models.registry import all_models
from .pipeline import PreparedFace, detect_faces, prepare_face

log = logging.getLogger("lrface")

TEACHER = "mobilefacenet-arcface"
LR_STUDENT = "lrface-mbf"
#: Faces whose native aligned-crop side is below this (eyes ~20 px apart) go to the student.
STUDENT_BELOW_PX = 64.0

__all__ = ["choose_model", "detect", "embed", "load_embedder", "verify"]


def choose_model(face_sizes: Sequence[float]) -> str:
    """The default recogniser for faces of the given native sizes (px, see
    :func:`lrface.align.native_face_size`).

    Rule: if any face is smaller than :data:`STUDENT_BELOW_PX` (64 px aligned side, i.e.
    about 20 px between the eyes) and the ``lrface-mbf`` student is installed, use the
    student (it lives in the teacher's space and is trained for 8-32 px faces);
    otherwise the HR teacher.
    """
    small = any(s < STUDENT_BELOW_PX for s in face_sizes)
    if small and LR_STUDENT in all_models():
        return LR_STUDENT
    if small:
        log.warning("small face but student %s is not installed; using the teacher", LR_STUDENT)
    return TEACHER


def detect(
    image: ImageInput, detector: str = DEFAULT_DETECTOR, det_thresh: float | None = None
) -> list[dict[str, Any]]:
    """Detect faces: list of ``{"box", "landmarks", "score"}`` dicts, largest face first.

    ``box`` = [x1, y1, x2, y2] and ``landmarks`` = 5 x [x, y] in image pixels (left eye,
    right eye, nose, left mouth corner, right mouth corner; image left/right).
    """
    _, faces = detect_faces(image, detector, det_thresh)
    return [f.to_dict() for f in faces]


def embed(
    images: Sequence[ImageInput],
    model: str | Embedder = LR_STUDENT,
    detect: bool = True,
    face_index: int | None = None,
    detector: str = DEFAULT_DETECTOR,
) -> np.ndarray:
    """Embed one face per image: float32 (N, D), L2-normalised, in input order.

    ``detect=False`` treats every image as a pre-cut face crop of any size (8x8 CCTV
    crops welcome); otherwise faces are detected and aligned (largest face, or
    ``face_index``).  Raises :class:`LrfaceError` on the first bad image; for
    per-file error reporting over large collections use :mod:`lrface.batch_embed`.
    """
    emb = model if isinstance(model, Embedder) else load_embedder(model)
    crops = [
        prepare_face(
            im, detect=detect, size=emb.input_size, face_index=face_index, detector=detector
        ).crop
        for im in images
    ]
    return emb.embed_crops(crops)


def verify(
    image1: ImageInput,
    image2: ImageInput,
    model: str | None = None,
    threshold: float | None = None,
    detect: bool = True,
    face_index: int | None = None,
    detector: str = DEFAULT_DETECTOR,
) -> dict[str, Any]:
    """Decide whether two images show the same person.

    ``model=None`` picks the model with :func:`choose_model` from the faces' sizes.
    ``threshold=None`` uses the model's calibrated threshold (registry / card).
    Returns ``{"same": bool, "similarity": float, "threshold": float, "model": str,
    "images": [per-image dict with source, box, landmarks, score, faces_found,
    face_index, face_size_px]}``.
    """
    faces: list[PreparedFace] = [
        prepare_face(im, detect=detect, size=112, face_index=face_index, detector=detector)
        for im in (image1, image2)
    ]
    name = model or choose_model([f.face_size for f in faces])
    try:
        emb = load_embedder(name)
    except ModelFileError:
        if model is None and name != TEACHER:
            log.warning("student %s unavailable; falling back to %s", name, TEACHER)
            name, emb = TEACHER, load_embedder(TEACHER)
        else:
            raise
    crops = [f.crop if emb.input_size == 112 else _native(f, emb.input_size) for f in faces]
    e = emb.embed_crops(crops)
    sim = float(np.dot(e[0], e[1]))
    thr = threshold if threshold is not None else emb.threshold
    if thr is None:
        raise LrfaceError(f"{name}: model has no calibrated threshold; pass --threshold")
    return {
        "same": bool(sim >= thr),
        "similarity": round(sim, 4),
        "threshold": round(float(thr), 4),
        "model": name,
        "images": [f.to_dict() for f in faces],
    }


def _native(face: PreparedFace, size: int) -> np.ndarray:
    from .models.embedder import resize_to

    return resize_to(face.crop, size)
