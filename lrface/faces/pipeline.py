"""From an input image to an aligned face crop: read -> detect -> pick a face -> align.

This module is the one crop pipeline of lrface.  Every caller (the API, ``lrface embed``,
``gallery build``, ``identify``, the evaluation protocols) describes what it wants with
one :class:`CropOptions` and gets crops from:

* :func:`prepare_face`: one image -> :class:`PreparedFace`, raises :class:`LrfaceError`;
* :func:`prepare_crop`: one image -> :class:`CropResult` ``(crop | None, error line,
  fallback)``, never raises (batch jobs report per-file failures and keep going);
* :class:`CropPreparer` / :func:`prepare_many`: many images, in a pool of worker processes
  or in this process (see "Worker processes" below), results in input order.

``detect=False`` (CLI ``--no-detect``) treats the input as a pre-cut face crop, handled by
``crop_mode`` (:mod:`lrface.faces.given_crop`): ``auto`` (default) looks for the face's
landmarks inside the crop and aligns by them (with fusion on, off as shipped, a small face
is read both ways, ``aligned+box``: :func:`lrface.faces.routing.fuses_given`), else takes
the box path (the crop resized, for the box model); ``aligned`` resizes a crop already
template-aligned; ``box`` always takes the box path.  With detection, every face is searched by
:func:`lrface.faces.find_face.find_faces` (the detector, then a grey-padded copy, then the other
detector, only while nothing is found; the pass that found it is reported) and the
largest face is used unless ``face_index`` picks another (faces are ordered largest
first); the number found is reported.  Dataset photos
(one centred subject: LFW, UTKFace, training folders) use ``pick="central"``
(:mod:`lrface.faces.face_choice`: the most central face, with retries) and, for the crops cached
for training and evaluation, :func:`dataset_photo_options`.  Options that do not apply are
refused, not ignored: ``det_thresh``, ``face_index``, a non-default ``detector``, a
``pick`` or an ``on_no_face`` other than the defaults together with ``detect=False``
raise :class:`LrfaceError`, as do ``face_index`` or ``tight_crops`` with the other pick.

Worker processes (:class:`CropPreparer`): the one pool of :mod:`lrface.io.workers` (``spawn``
start, one OpenCV/onnxruntime thread each, workers that die with their parent), started
only when there are at least :data:`POOL_MIN_PATHS` images to prepare -- below that,
starting them (imports and detector loading, about a second each) costs more than it
saves, so the images are prepared in the calling process.  Scripts that use workers need
the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from lrface.errors import LrfaceError, NoFaceError
from lrface.faces.align import align_face, align_native, native_face_size
from lrface.faces.detect import DEFAULT_DETECTOR, Face, detector_names, load_detector
from lrface.faces.face_choice import central_candidates, most_central, template_landmarks
from lrface.faces.find_face import Found, find_faces
from lrface.faces.given_crop import CROP_MODES, landmarks_in_crop
from lrface.io.images import ImageInput, describe, read_image
from lrface.io.pathnames import name_problem
from lrface.io.validation import check_flag, check_index, check_number, check_resource, is_int
from lrface.io.workers import POOL_MIN_ITEMS, PREFETCH, WorkerPool, progress_bar
from lrface.models.preprocess import resize_crop

log = logging.getLogger("lrface")

__all__ = [
    "CROP_ALIGNED",
    "CROP_BOX",
    "CROP_FUSED",
    "CROP_GIVEN",
    "CROP_MODES",
    "CROP_WHOLE_IMAGE",
    "NO_FACE_ACTIONS",
    "PICKS",
    "POOL_MIN_PATHS",
    "CropOptions",
    "CropPreparer",
    "CropResult",
    "PreparedFace",
    "align_crop",
    "align_to",
    "dataset_photo_options",
    "detect_faces",
    "detector_names",
    "given_view",
    "options_for",
    "prepare_crop",
    "prepare_face",
    "prepare_many",
    "progress_bar",
]

#: Accepted values of :attr:`CropOptions.on_no_face`.
NO_FACE_ACTIONS = ("error", "resize", "template")
#: Accepted values of :attr:`CropOptions.pick`.
PICKS = ("largest", "central")
#: Accepted values of :attr:`CropOptions.upscale`.
UPSCALES = ("native", "warp")
#: Worker processes are started only for at least this many images (see the module doc).
POOL_MIN_PATHS = POOL_MIN_ITEMS
#: Smallest and largest crop side accepted by :class:`CropOptions`.
MIN_SIZE, MAX_SIZE = 8, 2048

#: :attr:`PreparedFace.crop_kind` of a face aligned by its 5 landmarks to the ArcFace
#: template (detected in the image, or found inside a pre-cut crop by ``crop_mode="auto"``).
CROP_ALIGNED = "aligned-5pt"
#: ... of a pre-cut crop taken as already aligned (``crop_mode="aligned"``): resized.
CROP_GIVEN = "given"
#: ... of a pre-cut crop without landmarks (``crop_mode="box"``, or ``"auto"`` when none
#: were found): resized, for the box model.
CROP_BOX = "box"
#: ... of a small pre-cut crop whose landmarks were found (``crop_mode="auto"``), read both
#: ways: aligned by them (``crop``) and whole, resized (``box_crop``); embedded by both
#: students, normalised mean (:func:`lrface.faces.routing.fuses_given`; off as shipped).
CROP_FUSED = "aligned+box"
#: ... when no face was found and the whole image was resized (``on_no_face="resize"``) or
#: aligned to the template framing (``on_no_face="template"``).
CROP_WHOLE_IMAGE = "whole-image"


def _is_detector(name: object) -> bool:
    if name == DEFAULT_DETECTOR:
        return True
    return isinstance(name, str) and _known_detector(name)


@functools.lru_cache(maxsize=32)
def _known_detector(name: str) -> bool:
    return name in detector_names()  # scans the model cards: once per name


@dataclasses.dataclass(frozen=True)
class CropOptions:
    """How an image becomes an aligned face crop; validated on construction.

    ``detect``: detect and align (False: the input is a pre-cut face, only resized).
    ``detector``: ``auto`` or a registered detector name
    (:func:`lrface.faces.detect.detector_names`; ``auto``:
    :func:`lrface.faces.detect.resolve_detector`).
    ``det_thresh``: detection score threshold in (0, 1) (None: the detector's default).
    ``pick``: which detected face: ``"largest"`` (faces ordered largest first; see
    ``face_index``) or ``"central"`` (dataset photos: the face nearest the image centre,
    the detector retried at 0.1 and on a grey-padded copy when nothing is found;
    :func:`lrface.faces.face_choice.central_candidates`).
    ``face_index``: with ``pick="largest"``, which face, 0 = largest (None: the largest).
    ``tight_crops``: with ``pick="central"``, photos cropped tightly around the face
    (UTKFace-like): the padded copy is tried before the lower threshold.
    ``size``: side of the square output crop in pixels (8-2048).
    ``on_no_face``: ``"error"`` (raise :class:`NoFaceError`), ``"resize"`` (use the
    whole image resized; evaluation protocols) or ``"template"`` (align to the template
    landmarks at the LFW framing, :func:`lrface.faces.face_choice.template_landmarks`; dataset
    photos); both mark the result as a fallback.
    ``upscale``: a face smaller than ``size``: ``"native"`` (aligned at its own resolution,
    then enlarged bicubically: the recipe the students are deployed with) or ``"warp"``
    (warped straight to ``size``: the 112x112 crops cached for training and evaluation).
    ``crop_mode``: with ``detect=False``, how a pre-cut crop is read (:data:`CROP_MODES`,
    :mod:`lrface.faces.given_crop`): ``"auto"`` (default; ``detector``/``det_thresh`` are
    used to find the landmarks inside the crop), ``"aligned"`` or ``"box"``.

    Raises :class:`LrfaceError` (one line, naming the CLI option) for an invalid value or
    an option that does not apply (detection options with ``detect=False``, except the
    detector of ``crop_mode="auto"``; a ``crop_mode`` other than ``auto`` with detection).
    """

    detect: bool = True
    detector: str = DEFAULT_DETECTOR
    det_thresh: float | None = None
    face_index: int | None = None
    size: int = 112
    on_no_face: str = "error"
    pick: str = "largest"
    tight_crops: bool = False
    upscale: str = "native"
    crop_mode: str = "auto"

    def __post_init__(self) -> None:
        self._check_values()
        self._check_applies()

    def _check_values(self) -> None:
        """Each option on its own: type and range."""
        check_flag(self.detect, "detect")
        if not is_int(self.size) or not MIN_SIZE <= self.size <= MAX_SIZE:
            raise LrfaceError(
                f"crop size must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {self.size!r}"
            )
        if self.det_thresh is not None:
            check_number(self.det_thresh, "--det-thresh", 0.0, 1.0, open_lo=True, open_hi=True)
        check_index(self.face_index, "--face-index")
        for field, value, allowed in (
            ("on_no_face", self.on_no_face, NO_FACE_ACTIONS),
            ("pick", self.pick, PICKS),
            ("upscale", self.upscale, UPSCALES),
            ("--crop-mode", self.crop_mode, CROP_MODES),
        ):
            if value not in allowed:
                raise LrfaceError(
                    f"{field} must be one of {', '.join(map(repr, allowed))}, got {value!r}"
                )
        check_flag(self.tight_crops, "tight_crops")
        if not _is_detector(self.detector):
            raise LrfaceError(
                f"--detector {self.detector!r}: unknown detector; choose one of "
                f"{', '.join(detector_names())}"
            )

    def _check_applies(self) -> None:
        """Options together: one that does not apply to the others is refused."""
        if self.pick == "central" and self.face_index is not None:
            raise LrfaceError("--face-index applies to pick='largest', not to pick='central'")
        if self.tight_crops and self.pick != "central":
            raise LrfaceError("tight_crops applies to pick='central' only")
        if self.detect and self.crop_mode != "auto":
            raise LrfaceError(
                f"--crop-mode {self.crop_mode} applies to pre-cut crops (--no-detect; API: "
                "detect=False); drop it, or add --no-detect"
            )
        if not self.detect:
            searched = self.crop_mode == "auto"  # landmarks are searched inside the crop
            unused = [
                opt
                for opt, used in (
                    ("--detector", self.detector != DEFAULT_DETECTOR and not searched),
                    ("--det-thresh", self.det_thresh is not None and not searched),
                    ("--face-index", self.face_index is not None),
                    (f"on_no_face={self.on_no_face!r}", self.on_no_face != "error"),
                    (f"pick={self.pick!r}", self.pick != "largest"),
                    ("tight_crops", self.tight_crops),
                    (f"upscale={self.upscale!r}", self.upscale != "native"),
                )
                if used
            ]
            if unused:
                many = len(unused) > 1
                raise LrfaceError(
                    f"{', '.join(unused)} only appl{'y' if many else 'ies'} when faces are "
                    f"detected (or, for --detector/--det-thresh, searched inside pre-cut "
                    f"crops with --crop-mode auto); drop {'them' if many else 'it'} or drop "
                    "--no-detect (API: detect=False)"
                )


@dataclasses.dataclass
class PreparedFace:
    """An aligned crop and where it came from.

    ``crop``: uint8 BGR (S, S, 3).  ``face``: the detection used (None with
    ``detect=False`` or a fallback).  ``n_faces``: faces found.  ``face_size``: estimated
    resolution of the face in the source (px, side of an ArcFace-aligned crop at native
    scale; the shorter image side without detection).  ``fallback``: no face was found
    (``on_no_face`` ``"resize"``: the whole image resized; ``"template"``: aligned to the
    template landmarks).  ``landmarks``: float32 (5, 2), the points (x, y in source
    pixels) the crop was aligned to (None when it was only resized).  ``crop_kind``: what
    the crop was cut as (:data:`CROP_ALIGNED`, :data:`CROP_FUSED`, :data:`CROP_GIVEN`,
    :data:`CROP_BOX`, :data:`CROP_WHOLE_IMAGE`).  ``crop_mode``: the ``crop_mode`` of a
    pre-cut crop (None with detection).  ``found``: the search that found the face (pass
    and detector; None when no search ran).  ``box_crop``: with :data:`CROP_FUSED`, the
    whole pre-cut crop resized, uint8 BGR (S, S, 3) (else None).
    """

    crop: np.ndarray
    face: Face | None
    n_faces: int
    face_index: int
    face_size: float
    source: str
    fallback: bool = False
    landmarks: np.ndarray | None = None
    crop_kind: str = CROP_ALIGNED
    crop_mode: str | None = None
    found: Found | None = None
    box_crop: np.ndarray | None = None

    def to_dict(self) -> dict:
        """JSON-ready description (``--json``): source, faces_found, face_index,
        face_size_px, crop, crop_mode (pre-cut crops), found_by / found_with (the pass and
        detector that found the face), fallback, and box, landmarks, score of the face."""
        d: dict[str, Any] = {
            "source": self.source,
            "faces_found": self.n_faces,
            "face_index": self.face_index,
            "face_size_px": round(float(self.face_size), 1),
            "crop": self.crop_kind,
        }
        if self.crop_mode is not None:
            d["crop_mode"] = self.crop_mode
        if self.found is not None:
            d.update(self.found.to_dict())
        if self.fallback:
            d["fallback"] = True
        if self.face is not None:
            d.update(self.face.to_dict())
        return d


_DEFAULTS = CropOptions()


def options_for(options: CropOptions | None, detect: bool, size: int) -> CropOptions:
    """``options`` (default ``CropOptions(detect=detect)``) with the crop ``size`` a model
    needs; for functions that take both a legacy ``detect`` flag and ``options``."""
    if options is None:
        return CropOptions(detect=detect, size=size)
    if not isinstance(options, CropOptions):
        raise LrfaceError(f"options must be a CropOptions, got {type(options).__name__}")
    if detect is not True and options.detect != detect:
        raise LrfaceError("pass detect inside options=CropOptions(...), not as well beside it")
    return dataclasses.replace(options, size=size)


def prepare_face(
    source: ImageInput,
    options: CropOptions | None = None,
    *,
    detect: bool = True,
    size: int = 112,
    face_index: int | None = None,
    detector: str = DEFAULT_DETECTOR,
    det_thresh: float | None = None,
    name: str | None = None,
) -> PreparedFace:
    """Read ``source`` and return its aligned face crop at ``options.size`` squared.

    Pass either ``options`` or the keyword options (``detect``, ``size``, ``face_index``,
    ``detector``, ``det_thresh``; same meaning as in :class:`CropOptions`), not both.
    Crops whose face is smaller than ``size`` are aligned at the face's native resolution
    and enlarged with bicubic interpolation (the recipe the students were trained with),
    not warped up directly.

    Raises :class:`NoFaceError` (with the ``--no-detect`` hint) when no face is found
    (unless ``on_no_face="resize"``), :class:`LrfaceError` when ``face_index`` is out of
    range or an option is invalid, :class:`lrface.errors.ImageError` for an unreadable
    image.
    """
    given = CropOptions(
        detect=detect, size=size, face_index=face_index, detector=detector, det_thresh=det_thresh
    )
    if options is None:
        options = given
    elif given != _DEFAULTS:
        raise LrfaceError(
            "prepare_face: pass either options=CropOptions(...) or keywords, not both"
        )
    label = name or describe(source)
    image = read_image(source, name=label)
    return _crop_image(image, options, label)


def dataset_photo_options(
    detector: str = DEFAULT_DETECTOR, tight_crops: bool = False
) -> CropOptions:
    """The crop of a dataset photo as cached for training and evaluation
    (:func:`lrface.datasets.facecache.aligned_crops`): the most central face, the template
    framing when none is found, warped straight to 112x112."""
    return CropOptions(
        detector=detector,
        pick="central",
        tight_crops=tight_crops,
        on_no_face="template",
        upscale="warp",
    )


def _crop_image(image: np.ndarray, o: CropOptions, label: str) -> PreparedFace:
    """Steps of :func:`prepare_face` after reading: detect, pick a face, align."""
    if not o.detect:
        return _given_crop(image, o, label)
    found = None
    if o.pick == "central":
        faces = central_candidates(image, load_detector(o.detector, o.det_thresh), o.tight_crops)
        idx = most_central(faces, image.shape) if faces else 0
    else:
        found = find_faces(image, o.detector, o.det_thresh)
        faces = found.faces
        idx = 0 if o.face_index is None else int(o.face_index)
    if not faces:
        return _no_face(image, o, label, found.tried if found else ())
    if not 0 <= idx < len(faces):
        raise LrfaceError(f"{label}: --face-index {idx} out of range, {len(faces)} face(s) found")
    face = faces[idx]
    crop, native = align_to(image, face.landmarks, o)
    return PreparedFace(
        crop, face, len(faces), idx, native, label, landmarks=face.landmarks, found=found
    )


def _given_crop(image: np.ndarray, o: CropOptions, label: str) -> PreparedFace:
    """A pre-cut face crop under ``o.crop_mode`` (:mod:`lrface.faces.given_crop`): aligned by the
    landmarks found inside it (``auto``), or resized (``aligned``: as the caller aligned
    it; ``box``, or ``auto`` without landmarks: the box path)."""
    h, w = image.shape[:2]
    if o.crop_mode == "auto":
        inside = landmarks_in_crop(image, o.detector, o.det_thresh)
        if inside is not None:
            crop, native, kind, box_crop = given_view(image, inside.landmarks, o.size)
            face = Face(inside.box, inside.landmarks, inside.score)
            return PreparedFace(
                crop, face, 1, 0, native, label, landmarks=inside.landmarks,
                crop_kind=kind, crop_mode=o.crop_mode, found=inside.found, box_crop=box_crop,
            )  # fmt: skip
    kind = CROP_GIVEN if o.crop_mode == "aligned" else CROP_BOX
    return PreparedFace(
        resize_crop(image, o.size), None, 1, 0, float(min(h, w)), label, crop_kind=kind,
        crop_mode=o.crop_mode,
    )  # fmt: skip


def given_view(
    image: np.ndarray, landmarks: np.ndarray | None, size: int
) -> tuple[np.ndarray, float, str, np.ndarray | None]:
    """How ``crop_mode="auto"`` reads a pre-cut crop ``image`` (uint8 BGR) given the
    landmarks found inside it (float32 (5, 2) in its pixels, or None): ``(crop uint8 BGR
    (size, size, 3), native face size px, crop kind, box crop or None)``.

    Landmarks found: the crop aligned by them (native size, then bicubic); a face
    :func:`lrface.faces.routing.fuses_given` reads both ways is :data:`CROP_FUSED` with the
    whole crop resized as its box crop, any other :data:`CROP_ALIGNED`.  None: the whole
    crop resized, :data:`CROP_BOX` (its native size: the shorter side).  The one rule of
    the API, the CLI, ``serve`` and ``--probe-crop given`` (which passes cached landmarks).
    """
    from lrface.faces.routing import fuses_given

    if landmarks is None:
        return resize_crop(image, size), float(min(image.shape[:2])), CROP_BOX, None
    crop, native = align_to(image, landmarks, CropOptions(size=size))
    if fuses_given(native):
        return crop, native, CROP_FUSED, resize_crop(image, size)
    return crop, native, CROP_ALIGNED, None


def _no_face(
    image: np.ndarray, o: CropOptions, label: str, tried: tuple[str, ...] = ()
) -> PreparedFace:
    """The ``on_no_face`` outcome for an image where no face was detected (``tried``: the
    passes of :func:`lrface.faces.find_face.find_faces` that ran)."""
    h, w = image.shape[:2]
    whole = CROP_WHOLE_IMAGE
    if o.on_no_face == "resize":
        crop = resize_crop(image, o.size)
        return PreparedFace(
            crop, None, 0, 0, float(min(h, w)), label, fallback=True, crop_kind=whole
        )
    if o.on_no_face == "template":
        lm = template_landmarks(h, w)
        crop, native = align_to(image, lm, o)
        return PreparedFace(
            crop, None, 0, 0, native, label, fallback=True, landmarks=lm, crop_kind=whole
        )
    passes = f" (passes tried: {', '.join(tried)})" if tried else ""
    raise NoFaceError(
        f"{label}: no face found{passes}; if the image is already a cropped face, use "
        "--no-detect (API: detect=False)"
    )


def align_crop(
    image: np.ndarray, landmarks: np.ndarray, options: CropOptions
) -> tuple[np.ndarray, float]:
    """``(crop, native face size in px)`` of a face detected in the uint8 BGR ``image`` by
    its (5, 2) ``landmarks``: the crop every model takes, uint8 BGR (S, S, 3) at
    ``options.size``, a small face enlarged as ``options.upscale`` says (for callers that
    run the detector themselves, e.g. on video frames)."""
    return align_to(image, landmarks, options)


def align_to(image: np.ndarray, landmarks: np.ndarray, o: CropOptions) -> tuple[np.ndarray, float]:
    """``(crop uint8 BGR (S, S, 3), native face size in px)`` of ``image`` aligned to
    ``landmarks`` (5, 2) at ``o.size``, a small face enlarged as ``o.upscale`` says."""
    native = native_face_size(landmarks)
    if native < o.size and o.upscale == "native":
        crop = resize_crop(align_native(image, landmarks, max_size=o.size), o.size)
    else:
        crop = align_face(image, landmarks, o.size)
    return crop, native


def detect_faces(
    source: ImageInput, detector: str = DEFAULT_DETECTOR, det_thresh: float | None = None
) -> tuple[np.ndarray, Found]:
    """Read ``source`` and find every face (:func:`lrface.faces.find_face.find_faces`, retries
    included): returns (uint8 BGR image, :class:`~lrface.faces.find_face.Found`: the faces
    largest first and the pass and detector that found them).

    ``detector`` and ``det_thresh`` are validated as in :class:`CropOptions`.
    """
    CropOptions(detector=detector, det_thresh=det_thresh)
    image = read_image(source)
    return image, find_faces(image, detector, det_thresh)


# ---------------------------------------------------------------------- batches


class CropResult(NamedTuple):
    """One image's outcome in a batch.

    ``crop``: uint8 BGR (S, S, 3), or None when the image failed.  ``error``: "" on
    success, else a one-line reason (without the path, which the caller prints once).
    ``fallback``: no face was found and the whole image was resized
    (``on_no_face="resize"``).  ``face_size``: the face's native size in px and
    ``crop_kind``: what the crop was cut as (:class:`PreparedFace`; what
    :func:`lrface.api.choose_model` routes by).  ``info``: the face's
    :meth:`PreparedFace.to_dict` without box and landmarks (empty on failure).
    ``box_crop``: :attr:`PreparedFace.box_crop` (a face read both ways).
    """

    crop: np.ndarray | None
    error: str
    fallback: bool = False
    face_size: float = 0.0
    crop_kind: str = ""
    info: dict | None = None
    box_crop: np.ndarray | None = None


def prepare_crop(path: str | os.PathLike[str], options: CropOptions) -> CropResult:
    """:class:`CropResult` for one image file; never raises.

    A file whose name batch outputs cannot record (:func:`lrface.io.pathnames.name_problem`:
    a line break, a control character, undecodable bytes) fails without being read.
    Expected problems (:class:`LrfaceError`) give their message; anything else (a bug or a
    pathological file) is logged with its traceback and reported as ``internal error:
    ...``.  A leading ``"<path>: "`` is removed from the message.
    """
    problem = name_problem(path)  # one bad name fails alone, never the batch
    if problem:
        return CropResult(None, problem)
    label = str(path)
    try:
        face = prepare_face(path, options, name=label)
        info = {k: v for k, v in face.to_dict().items() if k not in ("box", "landmarks")}
        return CropResult(
            face.crop, "", face.fallback, float(face.face_size), face.crop_kind, info,
            face.box_crop,
        )  # fmt: skip
    except LrfaceError as exc:
        return CropResult(None, _strip_label(_one_line(str(exc)), label))
    except Exception as exc:
        log.debug("unexpected error on %s", label, exc_info=True)
        msg = _one_line(f"internal error: {type(exc).__name__}: {exc}")
        return CropResult(None, _strip_label(msg, label))


def _one_line(msg: str) -> str:
    return " ".join(msg.split())


def _strip_label(msg: str, label: str) -> str:
    prefix = f"{label}: "
    return msg[len(prefix) :] if msg.startswith(prefix) else msg


class CropPreparer:
    """Prepares crops for lists of paths, in worker processes or in this process.

    ``workers`` processes (a :class:`lrface.io.workers.WorkerPool`) are started only if
    ``workers > 0`` and ``n_paths`` (the number of images the caller will submit; None =
    unknown, treated as many) is at least :data:`POOL_MIN_PATHS`; :attr:`workers` tells
    what was decided (0 = in process).  The detector is loaded here first, so a missing or
    corrupt detector file is one error up front rather than one per image.  Use as a
    context manager, or call :meth:`close`.
    """

    def __init__(self, options: CropOptions, workers: int = 0, n_paths: int | None = None) -> None:
        if not isinstance(options, CropOptions):
            raise LrfaceError(f"options must be a CropOptions, got {type(options).__name__}")
        if not is_int(workers) or workers < 0:
            raise LrfaceError(f"workers must be an integer >= 0, got {workers!r}")
        check_resource("workers", workers)  # the documented cap (lrface.io.validation)
        self.options = options
        many = n_paths is None or n_paths >= POOL_MIN_PATHS
        self.workers = int(workers) if many else 0
        if options.detect or options.crop_mode == "auto":
            load_detector(options.detector, options.det_thresh)
        self._fn = functools.partial(prepare_crop, options=options)
        self.pool = WorkerPool(self.workers)

    def submit(self, paths: Sequence[str | os.PathLike[str]]) -> Any:
        """Start preparing ``paths``; pass the handle to :meth:`result`."""
        return self.pool.submit(self._fn, [str(p) for p in paths])

    def result(self, handle: Any) -> list[CropResult]:
        """The :class:`CropResult` of each submitted path, in order."""
        return self.pool.result(handle)

    def map(
        self, groups: Iterable[Sequence[str | os.PathLike[str]]], prefetch: int = PREFETCH
    ) -> Iterator[list[CropResult]]:
        """Yield the results of each group of paths, in order, ``prefetch`` groups ahead."""
        return self.pool.map(self._fn, ([str(p) for p in g] for g in groups), prefetch)

    def close(self) -> None:
        """Stop the workers (queued work is cancelled)."""
        self.pool.close()

    def __enter__(self) -> CropPreparer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def prepare_many(
    paths: Sequence[str | os.PathLike[str]],
    options: CropOptions,
    workers: int = 0,
    chunk_size: int = 256,
) -> Iterator[list[CropResult]]:
    """Prepare ``paths`` in chunks of ``chunk_size``: yields each chunk's results in order.

    Uses :class:`CropPreparer` (worker processes only for :data:`POOL_MIN_PATHS` or more
    images); the pool is closed when the generator is exhausted or closed.
    """
    names = [str(p) for p in paths]
    if not is_int(chunk_size) or chunk_size < 1:
        raise LrfaceError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    with CropPreparer(options, workers, len(names)) as prep:
        yield from prep.map(names[i : i + chunk_size] for i in range(0, len(names), chunk_size))
