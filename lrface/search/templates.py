"""Several faces of one subject -> one template: quality weights and their fusion.

A template is the L2-normalised, quality-weighted mean of the subject's face embeddings
(set-based recognition, as in IJB-S / QMUL-SurvFace): many weak witnesses of one person
(a video track, a folder of CCTV stills) averaged into one strong one.  The same fusion
serves ``lrface watch`` (one template per track) and ``lrface identify --templates``
(one per probe folder, :func:`build_template`).

Quality of one face (:func:`face_quality`), a product of three terms in [0, 1]:

* **size**: ``min(face_size / 64, 1)`` -- the face's native resolution (px, side of its
  ArcFace-aligned crop, :func:`lrface.faces.align.native_face_size`); from 64 px on the
  teacher's clean accuracy is at its plateau (within 0.1 point of 96 px on LFW folds 1-5,
  docs/experiments/realistic-aligned-views.md), i.e. resolution stops being the bottleneck;
* **detector score** (in [0, 1]; 1 when the face was not detected, e.g. ``--no-detect``);
* **sharpness**: ``v / (v + 100)`` with ``v`` the variance of the Laplacian of the
  grey 112x112 crop (blur and low resolution both lower it).

The weights are a heuristic, not learnt; ``benchmarks/watch_lfw_templates.py`` reports
the weighted fusion beside the plain mean on the same templates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from lrface.errors import LrfaceError
from lrface.faces.routing import crop_for
from lrface.io.images import ImageInput
from lrface.io.validation import check_embeddings

if TYPE_CHECKING:
    from lrface.faces.pipeline import CropOptions
    from lrface.models.interface import Embedder

__all__ = [
    "FULL_QUALITY_PX",
    "SHARPNESS_HALF",
    "Template",
    "build_template",
    "decision_threshold",
    "face_quality",
    "fuse_template",
    "sharpness",
]

#: Face size (px) from which the size term of :func:`face_quality` is 1.
FULL_QUALITY_PX = 64.0
#: Laplacian variance at which the sharpness term is 0.5.
SHARPNESS_HALF = 100.0


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of a uint8 BGR (S, S, 3) (or grey (S, S)) crop, taken at
    112x112 so values are comparable across crop sizes."""
    img = np.asarray(crop)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if img.shape[:2] != (112, 112):
        img = cv2.resize(img, (112, 112), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(img, cv2.CV_64F).var())


def face_quality(crop: np.ndarray, face_size: float, det_score: float = 1.0) -> float:
    """Quality weight in [0, 1] of one aligned face (module docstring): size term x
    detector score x sharpness term.  ``crop``: uint8 BGR (S, S, 3); ``face_size``: native
    face size in px; ``det_score``: detector score in [0, 1]."""
    size_term = min(max(float(face_size), 0.0) / FULL_QUALITY_PX, 1.0)
    v = sharpness(crop)
    return size_term * min(max(float(det_score), 0.0), 1.0) * v / (v + SHARPNESS_HALF)


def fuse_template(embeddings: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """One template of a subject: float32 (D,), the L2-normalised weighted mean of its
    float (n, D) L2-normalised ``embeddings`` (float64 accumulation).

    ``weights``: float (n,) non-negative finite (None or all zero: the plain mean).
    Raises :class:`LrfaceError` for no embeddings or bad weights.
    """
    e = check_embeddings(embeddings, "template embeddings")
    if weights is None:
        w = np.ones(len(e))
    else:
        w = np.asarray(weights, np.float64).reshape(-1)
        if len(w) != len(e):
            raise LrfaceError(f"template: {len(e)} embeddings but {len(w)} weights")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise LrfaceError("template weights must be finite and >= 0")
        if not w.sum() > 0:
            w = np.ones(len(e))
    m = (w[:, None] * e.astype(np.float64)).sum(axis=0)
    norm = np.linalg.norm(m)
    if not norm > 1e-12:
        raise LrfaceError("template: the embeddings cancel out (weighted mean of norm 0)")
    return (m / norm).astype(np.float32)


def decision_threshold(probe_model: str, gallery: Any, given: float | None) -> tuple[float, str]:
    """``(threshold, where it comes from)`` for open-set decisions of probes embedded by
    ``probe_model`` in ``gallery`` (a :class:`~lrface.search.gallery.FlatGallery` or IVF gallery):
    ``given`` when not None; the gallery's own threshold when the probes come from the
    gallery's model; the student card's ``threshold_vs_teacher`` for a student's probes
    in a teacher gallery (or the reverse), the rule of :func:`lrface.api.verify`.
    These thresholds are calibrated on single images, not on templates."""
    from lrface.api import cross_model_threshold

    if given is not None:
        return float(given), "--threshold"
    if probe_model == gallery.model_name:
        if gallery.threshold is None:
            raise LrfaceError(
                f"gallery model {gallery.model_name} has no calibrated threshold; pass --threshold"
            )
        return float(gallery.threshold), "gallery"
    return cross_model_threshold(probe_model, gallery.model_name)


@dataclasses.dataclass
class Template:
    """One subject's template from several images (:func:`build_template`).

    ``embedding``: float32 (D,), L2-normalised.  ``sources``: the images fused, in order;
    ``weights``: float (len(sources),) their quality weights (:func:`face_quality`);
    ``failures``: ``(image, one-line reason)`` of the images that could not be used.
    """

    embedding: np.ndarray
    sources: list[str]
    weights: np.ndarray
    failures: list[tuple[str, str]]


def build_template(
    images: Sequence[ImageInput], embedder: Embedder, options: CropOptions | None = None
) -> Template:
    """Detect, align and embed every image of one subject with ``embedder``, and fuse
    them (quality-weighted, :func:`fuse_template`) into one :class:`Template`.

    ``images``: paths, bytes, arrays (uint8 BGR) or PIL images of the same person; each is
    prepared as ``options`` say (default :class:`~lrface.faces.pipeline.CropOptions`: the
    largest face; the crop size is the embedder's).  An image that fails (unreadable, no
    face) is left out and listed in ``failures``; raises :class:`LrfaceError` when none
    can be used.
    """
    from lrface.faces.pipeline import options_for, prepare_face
    from lrface.io.images import describe

    opts = options_for(options, True, int(embedder.input_size))
    crops, sources, weights, failures = [], [], [], []
    for im in images:
        label = describe(im)
        try:
            face = prepare_face(im, opts, name=label)
        except LrfaceError as exc:
            msg = " ".join(str(exc).split())
            failures.append((label, msg[len(label) + 2 :] if msg.startswith(label + ": ") else msg))
            continue
        score = face.face.score if face.face is not None else 1.0
        crops.append(face.crop)
        sources.append(label)
        weights.append(face_quality(face.crop, face.face_size, score))
    if not crops:
        why = f" ({failures[0][0]}: {failures[0][1]})" if failures else ""
        raise LrfaceError(f"template: none of its {len(failures)} image(s) could be used{why}")
    w = np.asarray(weights, np.float64)
    emb = embedder.embed_crops([crop_for(embedder, c) for c in crops])
    return Template(fuse_template(emb, w), sources, w, failures)
