"""The public Python API: ``load_embedder``, ``detect``, ``embed``, ``verify``, ``choose_model``.

Arrays: images are uint8 BGR (H, W, 3) (paths, bytes, PIL images and HxW / HxWx4 arrays
are accepted and converted); embeddings are float32 (N, D), L2-normalised; similarity is
the cosine of two embeddings, in [-1, 1].

Arguments are validated in one place, :mod:`lrface.io.validation`: a wrong type raises
:class:`lrface.errors.ArgumentTypeError` (also a ``TypeError``), a bad value
:class:`lrface.errors.ArgumentValueError` (also a ``ValueError``); both are
:class:`LrfaceError`, with a one-line message naming the argument.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from lrface.errors import LrfaceError, ModelFileError
from lrface.faces.detect import DEFAULT_DETECTOR, resolve_detector
from lrface.faces.pipeline import CropOptions, PreparedFace, detect_faces, prepare_face
from lrface.faces.routing import FUSED_MODEL, ModelRouter, choose_model
from lrface.io.images import ImageInput
from lrface.io.validation import check_model_name, check_number
from lrface.models.embedder import EmbedderBase
from lrface.models.interface import Embedder
from lrface.models.loader import load_embedder
from lrface.models.registry import get_spec

__all__ = [
    "Verification",
    "choose_model",
    "detect",
    "embed",
    "load_embedder",
    "verify",
    "verify_detailed",
]


def detect(
    image: ImageInput, detector: str = DEFAULT_DETECTOR, det_thresh: float | None = None
) -> list[dict[str, Any]]:
    """Detect faces: list of ``{"box", "landmarks", "score", "found_by", "found_with"}``
    dicts, largest face first.

    ``box`` = [x1, y1, x2, y2] and ``landmarks`` = 5 x [x, y] in image pixels (left eye,
    right eye, nose, left mouth corner, right mouth corner; image left/right).  The faces
    come from the first pass that finds any (:func:`lrface.faces.find_face.find_faces`:
    ``found_by`` ``image``, ``padded``, ``other-detector`` or ``other-detector-padded``;
    ``found_with``: the detector of that pass).
    """
    CropOptions(detector=detector, det_thresh=det_thresh)  # validates both
    _, found = detect_faces(image, detector, det_thresh)
    return [{**f.to_dict(), **found.to_dict()} for f in found.faces]


def embed(
    images: Sequence[ImageInput],
    model: str | Embedder | None = None,
    detect: bool = True,
    face_index: int | None = None,
    detector: str = DEFAULT_DETECTOR,
    det_thresh: float | None = None,
    precision: str | None = None,
    crop_mode: str = "auto",
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, list[dict[str, Any]]]:
    """Embed one face per image: float32 (N, D), L2-normalised, in input order.

    ``images``: a list (or tuple) of paths, encoded bytes, arrays or PIL images -- a
    single path is refused, not iterated.  ``detect=False`` treats every image as a
    pre-cut face crop of any size (8x8 CCTV crops welcome), read by ``crop_mode``
    (``auto``: aligned by the landmarks found inside it, else embedded as a box crop;
    ``aligned``: already template-aligned; ``box``); otherwise faces are detected (with
    the retries of :func:`lrface.faces.find_face.find_faces`) and aligned (largest face, or
    ``face_index``).  ``model=None`` (default): each face by :func:`choose_model`, as
    :func:`verify` does (all in the teacher's space); a name or embedder forces one.
    ``return_info``: also return, per image, its face's ``{source, faces_found,
    face_index, face_size_px, crop, crop_mode?, found_by?, found_with?, box?, score?,
    model}`` (what was cut, how it was found and which model embedded it).  Raises
    :class:`LrfaceError` on the first bad image; for per-file error reporting over large
    collections use :mod:`lrface.batch.embed`.  ``precision``: ``"int8"``/``"fp32"``/None
    (as named) for models loaded by name (:func:`lrface.models.loader.load_embedder`).
    """
    if isinstance(images, str | bytes | os.PathLike | np.ndarray) or not isinstance(
        images, Sequence
    ):
        raise LrfaceError(
            f"images: expected a list of images, got {type(images).__name__}; "
            "wrap a single image in a list: lrface.embed([image])"
        )
    if model is not None and not isinstance(model, EmbedderBase):
        model = check_model_name(model)
    router = ModelRouter(model, precision=precision)
    opts = CropOptions(
        detect=detect,
        size=router.input_size,
        face_index=face_index,
        detector=detector,
        det_thresh=det_thresh,
        crop_mode=crop_mode,
    )
    faces = [prepare_face(im, opts) for im in images]
    emb, names = router.embed_faces(faces)
    if not return_info:
        return emb
    info = [{**_short(f.to_dict()), "model": n} for f, n in zip(faces, names)]
    return emb, info


def _short(d: dict[str, Any]) -> dict[str, Any]:
    """A face's description without its landmarks."""
    return {k: v for k, v in d.items() if k != "landmarks"}


@dataclasses.dataclass(frozen=True)
class Verification:
    """The answer of :func:`verify`.

    ``same``: similarity >= threshold.  ``similarity``: cosine of the two embeddings in
    [-1, 1].  ``threshold``: the calibrated (or given) threshold for this pair of models.
    ``models``: the recogniser that embedded each face.  ``threshold_from``: where the
    threshold came from.  ``images``: per face: source, face_size_px, faces_found,
    face_index, model, crop (:data:`CROP_ALIGNED`, :data:`CROP_GIVEN` or
    :data:`CROP_WHOLE_IMAGE`: what the face was embedded from), and with detection box,
    landmarks, score.  ``detector``: the detector used (None without detection).
    """

    same: bool
    similarity: float
    threshold: float
    models: tuple[str, str]
    threshold_from: str
    images: tuple[dict[str, Any], dict[str, Any]]
    detector: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``lrface verify --json``)."""
        d = dataclasses.asdict(self)
        d["models"], d["images"] = list(self.models), list(self.images)
        return d


def verify(
    image1: ImageInput,
    image2: ImageInput,
    model: str | None = None,
    threshold: float | None = None,
    detect: bool = True,
    face_index: int | None = None,
    detector: str = DEFAULT_DETECTOR,
    det_thresh: float | None = None,
    face_index1: int | None = None,
    face_index2: int | None = None,
    precision: str | None = None,
    crop_mode: str = "auto",
) -> Verification:
    """Decide whether two images show the same person.

    Models: ``model=None`` embeds each face with :func:`choose_model` by its size (the
    teacher for faces of >= 80 px, the ``lrface-mbf`` student below: the HR side by the
    teacher, the LR side by the student, as every benchmark figure is measured); a name
    forces one model for both.  ``threshold=None``: the calibrated threshold for that
    pair of models (teacher-teacher: the teacher's; student-student: the student's;
    teacher-student: the student card's ``threshold_vs_teacher``).
    Faces: the largest, or ``face_index`` for both images, or ``face_index1`` /
    ``face_index2`` for one (e.g. a face in a group photo against a portrait).
    Crops: every model expects a face aligned to the 5-point ArcFace template (112x112;
    the students: that crop, reduced), so each detected face, small ones included, is
    aligned by its 5 landmarks (measured: 97.4 % for ``lrface-mbf`` at 16 px on aligned
    LFW probes, 82.7 % on detector-box crops; ``benchmarks/RESULTS.md``); with
    ``detect=False`` each image is a pre-cut crop read by ``crop_mode`` (``auto``:
    aligned by the landmarks found inside it, else a box crop for the box model).  Each
    face's ``"crop"`` in ``images`` says which it was.  ``precision="int8"`` embeds with
    each model's statically quantized copy (thresholds: the fp32 model's), ``"fp32"`` with
    the float model, None as named (:func:`lrface.models.loader.load_embedder`).
    """
    return verify_detailed(
        image1,
        image2,
        model=model,
        threshold=threshold,
        detect=detect,
        face_index=face_index,
        detector=detector,
        det_thresh=det_thresh,
        face_index1=face_index1,
        face_index2=face_index2,
        precision=precision,
        crop_mode=crop_mode,
    )[0]


def verify_detailed(
    image1: ImageInput,
    image2: ImageInput,
    model: str | None = None,
    threshold: float | None = None,
    detect: bool = True,
    face_index: int | None = None,
    detector: str = DEFAULT_DETECTOR,
    det_thresh: float | None = None,
    face_index1: int | None = None,
    face_index2: int | None = None,
    names: tuple[str, str] | None = None,
    precision: str | None = None,
    crop_mode: str = "auto",
) -> tuple[Verification, list[PreparedFace]]:
    """:func:`verify` (same arguments), and the two :class:`PreparedFace` it decided on
    (each with its uint8 BGR ``crop``, cut as ``lrface embed`` cuts it: at the input side
    of ``model``, 112x112 without one).  ``names``: what to call the two images
    in messages and in ``images[i]["source"]`` (default: the path, or ``<N bytes>``)."""
    picks = _face_picks(face_index, face_index1, face_index2)
    if model is not None:
        model = check_model_name(model)
    if threshold is not None:
        threshold = check_number(threshold, "threshold", -1.0, 1.0)
    router = ModelRouter(model, precision=precision)  # None: each face as choose_model says
    opts = CropOptions(
        detect=detect,
        size=router.input_size,
        detector=detector,
        det_thresh=det_thresh,
        crop_mode=crop_mode,
    )
    faces = _prepare_pair((image1, image2), picks, opts, names)
    model_names, embs, sim = _embed_pair(faces, router)
    thr, source = _threshold((embs[0].name, embs[1].name), embs, threshold)
    used = resolve_detector(detector) if detect or crop_mode == "auto" else None
    return _verification(faces, model_names, sim, (thr, source), used), faces


def _face_picks(
    face_index: int | None, face_index1: int | None, face_index2: int | None
) -> tuple[int | None, int | None]:
    """The face index for each image of :func:`verify` (None: the largest face);
    ``face_index`` applies to both and cannot be combined with ``face_index1/2``."""
    if face_index is not None and (face_index1 is not None or face_index2 is not None):
        raise LrfaceError("--face-index applies to both images; use it or --face-index1/2")
    return (
        face_index if face_index1 is None else face_index1,
        face_index if face_index2 is None else face_index2,
    )


def _prepare_pair(
    images: tuple[ImageInput, ImageInput],
    picks: tuple[int | None, int | None],
    options: CropOptions,
    names: tuple[str, str] | None = None,
) -> list[PreparedFace]:
    """The two faces of :func:`verify`: each image read (uint8 BGR), the face ``picks[i]``
    detected and aligned (or, with ``detect=False``, the pre-cut crop read by its crop
    mode) into a crop at ``options.size``; ``names``: the images' names in messages (default: from
    the source)."""
    return [
        prepare_face(
            im,
            dataclasses.replace(options, face_index=i),
            name=None if names is None else names[k],
        )
        for k, (im, i) in enumerate(zip(images, picks))
    ]


def _embed_pair(
    faces: list[PreparedFace], router: ModelRouter
) -> tuple[tuple[str, str], list[Embedder], float]:
    """``(model names, embedders, cosine)`` for two prepared faces.

    Each face is embedded, alone, by the ``router`` (the road of ``lrface embed``: its
    forced model, or :func:`choose_model` of the face's native size and crop kind; the
    crop given to the model by :func:`lrface.faces.routing.crop_for`); the similarity is
    the dot product of the two float32 (D,) L2-normalised embeddings.  The names are the
    loaded models' (``-int8`` ones too), or :data:`lrface.faces.routing.FUSED_MODEL` for a
    face read both ways (its embedder: the aligned student, whose card decides the threshold).
    """
    e, embs, names = [], [], []
    for f in faces:
        v, chosen = router.embed_faces([f])
        e.append(v[0])
        embs.append(router.embedder(chosen[0]))
        names.append(chosen[0] if chosen[0] == FUSED_MODEL else embs[-1].name)
    return (names[0], names[1]), embs, float(np.dot(e[0], e[1]))


def _verification(
    faces: list[PreparedFace],
    names: tuple[str, str],
    sim: float,
    threshold: tuple[float, str],
    detector: str | None,
) -> Verification:
    """The :class:`Verification` for two faces embedded by ``names`` with cosine ``sim``,
    decided at ``threshold = (value, where it comes from)``; ``detector``: the resolved
    detector name, None without detection."""
    thr, source = threshold
    images = tuple({**f.to_dict(), "model": n} for f, n in zip(faces, names))
    return Verification(
        same=bool(sim >= thr),
        similarity=round(sim, 4),
        threshold=round(float(thr), 4),
        models=(names[0], names[1]),
        threshold_from=source,
        images=(images[0], images[1]),
        detector=detector,
    )


def _threshold(
    names: tuple[str, str], embs: list[Embedder], given: float | None
) -> tuple[float, str]:
    """The threshold for a pair embedded by ``names`` and where it comes from."""
    if given is not None:
        return float(given), "--threshold"
    if names[0] == names[1]:
        if embs[0].threshold is None:
            raise LrfaceError(f"{names[0]}: model has no calibrated threshold; pass --threshold")
        return float(embs[0].threshold), f"{names[0]} card"
    # an int8 copy is calibrated as its fp32 model (its card carries the same thresholds)
    base = [e.spec.quantized_from or n for e, n in zip(embs, names)]
    return cross_model_threshold(base[0], base[1])


def cross_model_threshold(name1: str, name2: str) -> tuple[float, str]:
    """``(threshold, where it comes from)`` for a face embedded by a student against one
    embedded by its teacher (either order, any student and teacher): the student card's
    ``threshold_vs_teacher``, when the card's ``teacher`` names the other model.  Raises
    :class:`LrfaceError` for any other pair of different models (none is calibrated)."""
    for student, other in ((name1, name2), (name2, name1)):
        try:
            spec = get_spec(student)
        except ModelFileError:  # not installed here: no card to read a threshold from
            continue
        teacher = ((spec.card or {}).get("teacher") or {}).get("name")
        if teacher == other and spec.threshold_vs_teacher is not None:
            return float(spec.threshold_vs_teacher), f"{student} card (vs {teacher})"
    raise LrfaceError(
        f"{name1} and {name2}: no threshold is calibrated for this pair of models; "
        "pass --threshold or --model to embed both faces with one model"
    )

