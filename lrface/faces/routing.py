"""Which model embeds each face, and embedding faces each with its own model.

The rule (:func:`choose_model`, the one ``verify`` uses and every command shares): a face
aligned by its landmarks (or a pre-cut crop taken as aligned) goes to the ``lrface-mbf``
student when its native size is under :data:`STUDENT_BELOW_PX`, to the HR teacher above;
a crop without landmarks (``crop_kind == "box"``) goes to :data:`BOX_MODEL`, the
``lrface-box`` student trained on detector-box crops.  With :data:`FUSE_GIVEN` on (**off as
shipped**: its rule failed on the LFW validation folds, docs/experiments/given-fusion.md), a
small pre-cut crop whose landmarks were found inside it (``crop_kind == "aligned+box"``,
:func:`fuses_given`) would be embedded by both students -- the landmark-aligned crop by
``lrface-mbf``, the whole crop by ``lrface-box`` -- as the two embeddings' L2-normalised mean
(:data:`FUSED_MODEL`).  Every model
chosen embeds into the teacher's space, so their embeddings compare with each other and with
a teacher gallery.

:class:`ModelRouter` embeds a batch of prepared faces: each with the model the rule
chooses, or every one with the model forced by ``--model``.

The road from a face to a model, one for ``verify``, ``embed``, ``gallery build``,
``identify``, ``serve``, ``watch`` and the evaluation protocols: the face is cut by the
crop pipeline (:mod:`lrface.faces.pipeline`) at the input side of the model that will
embed it when that model is known before the cut (``--model``: :attr:`ModelRouter.input_size`),
else at 112 (the aligned crop every chosen model takes), and :func:`crop_for` gives the
model its crop at its input side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from lrface.errors import LrfaceError, ModelFileError
from lrface.models.defaults import DEFAULTS
from lrface.models.preprocess import resize_crop
from lrface.models.registry import all_models, get_spec

if TYPE_CHECKING:
    from lrface.models.interface import Embedder

__all__ = [
    "BOX_MODEL",
    "FUSED_MODEL",
    "FUSE_GIVEN",
    "LR_STUDENT",
    "STUDENT_BELOW_PX",
    "TEACHER",
    "ModelRouter",
    "choose_model",
    "crop_for",
    "fuses_given",
    "probe_threshold",
]

#: The HR teacher and the student for small aligned faces (the defaults table).
TEACHER = DEFAULTS.teacher
LR_STUDENT = DEFAULTS.lr_student
#: Faces whose native aligned-crop side is below this (eyes ~25 px apart) go to the student:
#: the size rule of docs/experiments/realistic-aligned-views.md (80 px: below it the student
#: leads the teacher on realistic probes and is never behind by more than 0.3 on clean ones).
STUDENT_BELOW_PX = 80.0
#: The model for crops without landmarks (``crop_kind == "box"``): the ``lrface-box``
#: student, distilled on detector-box views with realistic degradation (shipped by the rule
#: of docs/experiments/box-student.md: +8.0 points over ``lrface-mbf`` on box crops of
#: held-out identities at 12/16 px).
BOX_MODEL = DEFAULTS.box_student
#: ``crop_kind`` of a crop without landmarks (:data:`lrface.faces.pipeline.CROP_BOX`).
_BOX = "box"
#: ``crop_kind`` of a small pre-cut crop read both ways (:data:`lrface.faces.pipeline.CROP_FUSED`).
_FUSED = "aligned+box"
#: Whether a small pre-cut crop whose landmarks were found (``crop_mode="auto"``) is read both
#: ways (aligned by ``lrface-mbf`` + whole by ``lrface-box``, normalised mean): the outcome of
#: the rule of docs/experiments/given-fusion.md (LFW validation folds 1-5): failed, so off.
FUSE_GIVEN = False
#: The name recorded for a face embedded by both students (``crop_kind == "aligned+box"``);
#: its card, threshold and gallery checks are the aligned student's (:data:`LR_STUDENT`).
FUSED_MODEL = f"{LR_STUDENT}+{BOX_MODEL}"


def fuses_given(face_size: float) -> bool:
    """Whether a pre-cut crop whose landmarks were found, of native ``face_size`` px, is read
    both ways (:data:`FUSE_GIVEN`; only faces :func:`choose_model` sends to the student:
    larger ones keep the teacher on the aligned crop)."""
    return FUSE_GIVEN and face_size < STUDENT_BELOW_PX


class RoutedFace(Protocol):
    """What :meth:`ModelRouter.embed_faces` reads of a prepared face."""

    @property
    def crop(self) -> np.ndarray | None: ...
    @property
    def face_size(self) -> float: ...
    @property
    def crop_kind(self) -> str: ...
    @property
    def box_crop(self) -> np.ndarray | None: ...


def choose_model(face_size: float, crop: str = "aligned-5pt") -> str:
    """The recogniser for one face: ``face_size`` is its native size (px, the side of its
    ArcFace-aligned crop at native scale, :func:`lrface.faces.align.native_face_size`), ``crop``
    what it was cut as (:attr:`lrface.faces.pipeline.PreparedFace.crop_kind`).

    Rule: a crop without landmarks (``"box"``) goes to :data:`BOX_MODEL`; a small pre-cut
    crop read both ways (``"aligned+box"``) to :data:`FUSED_MODEL` (both students); any other
    face under :data:`STUDENT_BELOW_PX` (80 px, eyes about 25 px apart) to the ``lrface-mbf``
    student, trained for 8-32 px faces in the teacher's embedding space; a larger face to
    the HR teacher.  A missing or corrupt student is an error, never a silent switch to the
    teacher.
    """
    if crop == _FUSED:
        name = FUSED_MODEL
    else:
        small = face_size < STUDENT_BELOW_PX
        name = BOX_MODEL if crop == _BOX else (LR_STUDENT if small else TEACHER)
    for part in _parts(name):
        if part != TEACHER and part not in all_models():
            raise LrfaceError(
                f"{part}: the student for small faces and box crops is not installed (weights/"
                f"{part}.json); restore it (git checkout weights/) or pass --model"
            )
    return name


def _parts(name: str) -> tuple[str, ...]:
    """The models behind a chosen name: both students for :data:`FUSED_MODEL`."""
    return (LR_STUDENT, BOX_MODEL) if name == FUSED_MODEL else (name,)


def crop_for(model: Embedder, face: RoutedFace | np.ndarray) -> np.ndarray:
    """The crop ``model`` embeds for ``face`` (a prepared face or its uint8 BGR crop):
    uint8 BGR (S, S, 3) at the model's input side S = ``model.input_size``.

    A face cut for this model (``CropOptions(size=S)``) is its crop as it is; a face cut
    at another side (112 before the model was chosen) is resized by the one resize rule
    (:func:`lrface.faces.align.resize_crop`: area when shrinking, bicubic when
    enlarging).  LR evaluation probes (already reduced to the condition's size) go
    through it as well: they reach the model at its input side."""
    crop = face if isinstance(face, np.ndarray) else face.crop
    if crop is None:
        raise LrfaceError("crop_for: a face that failed has no crop to embed")
    return resize_crop(crop, int(model.input_size))


def probe_threshold(
    model: str, gallery_model: str, gallery_threshold: float | None
) -> float | None:
    """The calibrated threshold for a probe embedded by ``model`` against a gallery built
    by ``gallery_model`` (whose threshold is ``gallery_threshold``): the gallery's when
    ``model`` (or the fp32 model an int8 copy was quantized from) built it, the student
    card's ``threshold_vs_teacher`` for a student probe in the gallery of the teacher its
    card names (or an int8 copy of it; as :func:`lrface.verify` pairs them), else the
    gallery's.  Used by ``lrface identify`` and ``lrface serve``'s /identify alike.  A face
    read both ways (:data:`FUSED_MODEL`) takes the aligned student's threshold."""
    model = _parts(model)[0]
    spec = get_spec(model)
    base = (spec.quantized_from if spec is not None else None) or model
    if base == gallery_model:
        return gallery_threshold
    teacher = ((spec.card or {}).get("teacher") or {}).get("name") if spec is not None else None
    if (
        spec is not None
        and teacher in _base_names(gallery_model)
        and spec.threshold_vs_teacher is not None
    ):
        return float(spec.threshold_vs_teacher)
    return gallery_threshold


def _base_names(name: str) -> set[str]:
    """``name`` and, for an int8 copy, the fp32 model it was quantized from."""
    try:
        spec = get_spec(name)
    except ModelFileError:  # a gallery of a model not installed here
        return {name}
    return {name, (spec.quantized_from if spec is not None else None) or name}


class ModelRouter:
    """Embeds prepared faces, each with its model.

    ``model``: None (each face by :func:`choose_model`), or a name / loaded embedder that
    embeds every face.  ``batch_size``: the loaded models' batch size (None: default);
    ``precision``: ``"int8"``/``"fp32"``/None (as named) for every model loaded by name;
    ``flip``: their mirrored-crop fusion (default on, as :func:`load_embedder`).
    Models are loaded on first use and kept.  Every model used must have the same
    embedding size (one space: the teacher's).
    """

    def __init__(
        self,
        model: str | Embedder | None = None,
        batch_size: int | None = None,
        precision: str | None = None,
        flip: bool = True,
    ):
        self.batch_size = batch_size
        self.precision = precision
        self.flip = flip
        self._loaded: dict[str, Embedder] = {}
        self.forced: str | None = None
        if isinstance(model, str):
            self.forced = model
            self.embedder(model)  # a bad name fails here, before any work
        elif model is not None:  # a loaded embedder
            self._loaded[model.name] = model
            self.forced = model.name

    @property
    def input_size(self) -> int:
        """Side of the crops to prepare: the forced model's input, else 112 (the aligned
        crop every chosen model takes; each is resized to its model's input)."""
        return int(self.embedder(self.forced).input_size) if self.forced else 112

    def embedder(self, name: str) -> Embedder:
        """The loaded model ``name`` (loaded once); for :data:`FUSED_MODEL` the aligned
        student, whose card (teacher, threshold, embedding size) the fused face takes."""
        name = _parts(name)[0]
        if name not in self._loaded:
            from lrface.models.loader import load_embedder

            if self.batch_size is None:
                self._loaded[name] = load_embedder(name, self.flip, precision=self.precision)
            else:
                self._loaded[name] = load_embedder(
                    name, self.flip, batch_size=self.batch_size, precision=self.precision
                )
        return self._loaded[name]

    def model_for(self, face_size: float, crop: str) -> str:
        """The model that embeds a face of ``face_size`` px cut as ``crop``."""
        return self.forced or choose_model(face_size, crop)

    def embed(
        self,
        crops: Sequence[np.ndarray],
        face_sizes: Sequence[float],
        crop_kinds: Sequence[str],
        box_crops: Sequence[np.ndarray | None] | None = None,
    ) -> tuple[np.ndarray, list[str]]:
        """``(float32 (N, D) L2-normalised embeddings, model name per face)`` of ``crops``
        (uint8 BGR, any square side; resized to each model's input), in input order.
        Faces are embedded in groups per model, in input order within each group.

        ``box_crops``: per face, the whole pre-cut crop resized (uint8 BGR, any square side)
        of a face read both ways (``crop_kind == "aligned+box"``), else None; such a face
        (unless a model is forced: then its aligned crop alone) is embedded as the
        L2-normalised mean of ``lrface-mbf`` on its crop and ``lrface-box`` on its box crop.
        """
        names = [self.model_for(s, k) for s, k in zip(face_sizes, crop_kinds)]
        out: np.ndarray | None = None
        for name in dict.fromkeys(names):
            idx = [i for i, n in enumerate(names) if n == name]
            part = self._embed_group(name, [crops[i] for i in idx])
            if name == FUSED_MODEL:
                boxes = [None if box_crops is None else box_crops[i] for i in idx]
                if any(b is None for b in boxes):
                    raise LrfaceError(f"{name}: a face read both ways needs its box crop")
                part = part + self._embed_group(BOX_MODEL, boxes)  # type: ignore[arg-type]
                part /= np.linalg.norm(part, axis=1, keepdims=True)
            if out is None:
                out = np.zeros((len(crops), part.shape[1]), np.float32)
            elif part.shape[1] != out.shape[1]:
                raise LrfaceError(
                    f"{name}: embeds into {part.shape[1]} dimensions, the other models into "
                    f"{out.shape[1]}; pass --model to embed every face with one model"
                )
            out[idx] = part
        if out is None:
            d = self.embedder(self.forced).embedding_size if self.forced else 128
            return np.zeros((0, int(d)), np.float32), []
        return out, names

    def embed_faces(self, faces: Sequence[RoutedFace]) -> tuple[np.ndarray, list[str]]:
        """:meth:`embed` of prepared faces (:class:`lrface.faces.pipeline.PreparedFace` or
        :class:`lrface.faces.pipeline.CropResult` with a crop): their crop, native size,
        crop kind and box crop."""
        return self.embed(
            [f.crop for f in faces],  # type: ignore[misc]
            [f.face_size for f in faces],
            [f.crop_kind for f in faces],
            [f.box_crop for f in faces],
        )

    def _embed_group(self, name: str, crops: Sequence[np.ndarray]) -> np.ndarray:
        """float32 (n, D) embeddings of ``crops`` by the model ``name`` (for
        :data:`FUSED_MODEL`: the aligned student)."""
        emb = self.embedder(name)
        return emb.embed_crops([crop_for(emb, c) for c in crops])
