"""Face detectors behind one interface: SCRFD (ONNX, own decoder) and YuNet (OpenCV).

Every detector returns a list of :class:`Face` sorted by box area, largest first.
Boxes and landmarks are in the input image's pixel coordinates.  Small faces are
handled by running on an enlarged (and, for tiny images, padded) copy: a face 12-20 px
wide inside a frame, or a whole 24-36 px image, is brought to the size range the
detector was trained on.

Canvas (``canvas=``): ``"fixed"`` (:data:`DEFAULT_CANVAS`) fits every image into the 640 px
canvas, up or down; ``"image"`` (opt-in) runs the detector on the image at its own size,
enlarged to at least :data:`MIN_CANVAS_SIDE` and reduced to at most :data:`CANVAS_SIDE`
(longest side).  A network's cost grows with the canvas area: a 250x250 photo costs 4x
less at 320 than at 640 (3.3-4.8x faster, ``benchmarks/detect_speed.py``), but on 352x288
frames ``"image"`` found 190 of the 195 faces SCRFD found at 640 (YuNet 182), so the
default stays ``"fixed"`` until a canvas rule keeps recall equal.
"""

from __future__ import annotations

import dataclasses
import logging
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from lrface.models import registry
from lrface.models.defaults import DEFAULTS

DEFAULT_DETECTOR = DEFAULTS.detector
"""The detector used when none is named (CLI, API, evaluators and training data):
``auto`` = SCRFD-2.5g when its file is found, else the shipped YuNet (see
:func:`resolve_detector`)."""

#: The largest canvas side (px): larger images are reduced to it (plus native tiles).
CANVAS_SIDE = 640
#: The smallest canvas side (px) of ``canvas="image"``: smaller images are enlarged to it.
#: Chosen by measurement (benchmarks/detect_speed.py, RESULTS.md "Detection speed").
MIN_CANVAS_SIDE = 320
CANVASES = ("image", "fixed")
#: The canvas every caller gets unless it names one (see the module docstring).
DEFAULT_CANVAS = "fixed"
#: Input pixels per batched detector call (:meth:`Detector.detect_many`).
BATCH_PIXELS = 8 * 320 * 320

PREFERRED_DETECTOR = DEFAULTS.preferred_detector
FALLBACK_DETECTOR = DEFAULTS.fallback_detector
log = logging.getLogger("lrface")


@dataclasses.dataclass
class Face:
    """One detected face.

    ``box``: float32 (4,) x1, y1, x2, y2; ``landmarks``: float32 (5, 2), order left eye,
    right eye, nose, left mouth, right mouth (image left/right); ``score`` in [0, 1].
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0))

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "score": round(float(self.score), 4),
        }


def _nms(boxes: np.ndarray, scores: np.ndarray, thresh: float) -> list[int]:
    order = scores.argsort()[::-1]
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    keep: list[int] = []
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        iou = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][iou <= thresh]
    return keep


class Detector:
    """Common interface: ``detect(image_bgr) -> list[Face]`` (largest first)."""

    name: str = "detector"

    def __init__(self, det_thresh: float, nms_thresh: float = 0.4) -> None:
        self.det_thresh = det_thresh
        self.nms_thresh = nms_thresh

    def _detect_at(
        self, image: np.ndarray, scale: float, thresh: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run on ``image`` resized by ``scale`` keeping faces scored >= ``thresh``; return
        boxes (N,5: x1,y1,x2,y2,score) and landmarks (N,5,2) in the coordinates of ``image``."""
        raise NotImplementedError

    def _detect_same_size(
        self, images: list[np.ndarray], scale: float, thresh: float
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`_detect_at` on each of ``images`` (all of one shape); detectors whose
        network takes a batch override this with one call per batch."""
        return [self._detect_at(im, scale, thresh) for im in images]

    def detect(
        self,
        image: np.ndarray,
        max_faces: int = 0,
        det_thresh: float | None = None,
        canvas: str = DEFAULT_CANVAS,
    ) -> list[Face]:
        """Detect faces in a uint8 BGR (H, W, 3) image, multi-scale for small inputs.

        ``det_thresh``: score threshold of this call (None: the detector's ``det_thresh``);
        a shared detector is never changed by it.  ``canvas``: ``"fixed"`` (default, the
        640 px canvas) or ``"image"`` (sized to the image; see the module docstring)."""
        return self.detect_many([image], max_faces, det_thresh, canvas)[0]

    def detect_many(
        self,
        images: list[np.ndarray],
        max_faces: int = 0,
        det_thresh: float | None = None,
        canvas: str = DEFAULT_CANVAS,
    ) -> list[list[Face]]:
        """:meth:`detect` on each uint8 BGR image; the first pass of images of one shape
        runs batched where the network allows it (SCRFD), at most :data:`BATCH_PIXELS`
        input pixels per call.  Faces are the same as one :meth:`detect` per image."""
        if canvas not in CANVASES:
            raise ValueError(f"canvas: expected one of {CANVASES}, got {canvas!r}")
        thresh = self.det_thresh if det_thresh is None else float(det_thresh)
        passes = [list(self._pyramid(im, canvas)) for im in images]
        found: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in images]
        groups: dict[tuple[tuple[int, ...], float], list[int]] = {}
        for i, (first, _, scale) in enumerate(p[0] for p in passes):
            groups.setdefault((first.shape, scale), []).append(i)
        for (shape, scale), idx in groups.items():
            step = max(1, BATCH_PIXELS // max(1, int(shape[0] * shape[1] * scale * scale)))
            for k in range(0, len(idx), step):
                chunk = idx[k : k + step]
                outs = self._detect_same_size([images[i] for i in chunk], scale, thresh)
                for i, out in zip(chunk, outs):
                    found[i].append(out)
        for i, p in enumerate(passes):
            for padded, offset, scale in p[1:]:
                found[i].append(_unpad(*self._detect_at(padded, scale, thresh), offset))
        return [self._merge(f, im.shape[0], im.shape[1], max_faces) for f, im in zip(found, images)]

    def _merge(
        self, found: list[tuple[np.ndarray, np.ndarray]], h: int, w: int, max_faces: int
    ) -> list[Face]:
        """The faces of one image from its passes' (boxes (N, 5), landmarks (N, 5, 2)) in
        image coordinates: NMS across passes, clipped to the image, largest first."""
        results = [r for r in found if len(r[0])]
        if not results:
            return []
        boxes = np.concatenate([r[0] for r in results])
        kps = np.concatenate([r[1] for r in results])
        keep = _nms(boxes[:, :4], boxes[:, 4], self.nms_thresh)
        faces = [
            Face(
                box=np.clip(boxes[i, :4], [0, 0, 0, 0], [w, h, w, h]).astype(np.float32),
                landmarks=kps[i].astype(np.float32),
                score=float(boxes[i, 4]),
            )
            for i in keep
        ]
        faces.sort(key=lambda f: -f.area)
        return faces[:max_faces] if max_faces > 0 else faces

    def _pyramid(self, image: np.ndarray, canvas: str = DEFAULT_CANVAS):
        """(image, (pad_x, pad_y), scale) triples to run the detector on.

        - always: the image scaled by :func:`fit_scale` (``canvas``);
        - large frames (> 640 px): also at native scale in tiles of at most 1280 px so
          faces of ~12 px stay detectable;
        - small images (< 160 px): also padded by 50 % with a grey border, so a face that
          fills the whole crop is seen with some context.
        """
        h, w = image.shape[:2]
        yield image, (0, 0), fit_scale(h, w, canvas)
        if max(h, w) > CANVAS_SIDE:
            yield image, (0, 0), min(1.0, 1280.0 / max(h, w)) if max(h, w) > 1280 else 1.0
        if max(h, w) < 160:
            pad = int(round(0.5 * max(h, w)))
            padded = cv2.copyMakeBorder(
                image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(127, 127, 127)
            )
            yield padded, (pad, pad), fit_scale(padded.shape[0], padded.shape[1], canvas)


def fit_scale(h: int, w: int, canvas: str = DEFAULT_CANVAS) -> float:
    """Scale of a detector's first pass on an ``h`` x ``w`` image: ``"fixed"``: longest
    side to :data:`CANVAS_SIDE` (up or down); ``"image"``: 1, or the longest side brought
    into [:data:`MIN_CANVAS_SIDE`, :data:`CANVAS_SIDE`]."""
    side = max(h, w)
    if canvas == "fixed":
        return CANVAS_SIDE / side
    return min(CANVAS_SIDE, max(MIN_CANVAS_SIDE, side)) / side


def _unpad(
    boxes: np.ndarray, kps: np.ndarray, offset: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 5) and landmarks (N, 5, 2) found on a copy padded by ``offset`` = (x, y),
    in the coordinates of the unpadded image (new arrays)."""
    if not len(boxes) or offset == (0, 0):
        return boxes, kps
    boxes, kps = boxes.copy(), kps.copy()
    boxes[:, [0, 2]] -= offset[0]
    boxes[:, [1, 3]] -= offset[1]
    kps[:, :, 0] -= offset[0]
    kps[:, :, 1] -= offset[1]
    return boxes, kps


class SCRFD(Detector):
    """SCRFD with 5 keypoints (insightface), decoded here; BGR -> RGB, (x - 127.5) / 128."""

    name = "scrfd"
    _strides = (8, 16, 32)
    _num_anchors = 2

    def __init__(
        self,
        model_path: str | Path,
        det_thresh: float = registry.DETECTOR_THRESHOLDS["scrfd"],
        nms_thresh: float = 0.4,
        providers: list[str] | None = None,
    ) -> None:
        super().__init__(det_thresh, nms_thresh)
        from lrface.models.providers import make_session

        self.model_path = str(model_path)
        self._providers = providers
        self._batched = None  # the dynamic-batch session, made on first batched call
        self.session = make_session(model_path, providers)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        self.fixed_size = (
            (int(shape[3]), int(shape[2]))
            if isinstance(shape[2], int) and isinstance(shape[3], int)
            else None
        )
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._centers: dict[tuple[int, int, int], np.ndarray] = {}

    def _blob(self, image: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
        """``(blob, real_scale)``: float32 (3, ch, cw) RGB network input of uint8 BGR
        ``image`` resized by ``scale`` (area down, bilinear up) at the top-left of a black
        canvas of the model's fixed size, or of the resized image's size rounded up to
        32; ``real_scale``: the scale applied (a fixed-size model fits the image)."""
        h, w = image.shape[:2]
        nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        if self.fixed_size is not None:
            cw, ch = self.fixed_size
            s = min(cw / w, ch / h)
            nw, nh = max(1, int(w * s)), max(1, int(h * s))
        else:
            cw, ch = (int(np.ceil(nw / 32)) * 32, int(np.ceil(nh / 32)) * 32)
        real_scale = nw / w
        interp = cv2.INTER_AREA if real_scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(image, (nw, nh), interpolation=interp)
        canvas = np.zeros((ch, cw, 3), dtype=np.uint8)
        canvas[:nh, :nw] = resized
        blob = (canvas[:, :, ::-1].astype(np.float32) - 127.5) / 128.0
        return blob.transpose(2, 0, 1), real_scale

    def _detect_at(
        self, image: np.ndarray, scale: float, thresh: float
    ) -> tuple[np.ndarray, np.ndarray]:
        blob, real_scale = self._blob(image, scale)
        outs = self.session.run(self.output_names, {self.input_name: blob[None]})
        return self._decoded(outs, blob.shape[1], blob.shape[2], thresh, real_scale)

    def _detect_same_size(
        self, images: list[np.ndarray], scale: float, thresh: float
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """One network call for all ``images`` (one shape) on a copy of the model with a
        dynamic batch axis (made on first use).  The network's outputs are (H, W, N, C)
        flattened; row ``i`` of each is taken back out, so the result equals per-image
        calls (checked bit for bit in the tests)."""
        if len(images) == 1 or self.fixed_size is not None:
            return super()._detect_same_size(images, scale, thresh)
        blobs = [self._blob(im, scale) for im in images]
        batch = np.stack([b for b, _ in blobs])
        n, (ch, cw) = len(images), batch.shape[2:]
        outs = self._batch_session().run(self.output_names, {self.input_name: batch})
        a = self._num_anchors
        out = []
        for i, (_, real_scale) in enumerate(blobs):
            mine = [o.reshape(-1, n, a * o.shape[1])[:, i].reshape(-1, o.shape[1]) for o in outs]
            out.append(self._decoded(mine, ch, cw, thresh, real_scale))
        return out

    def _batch_session(self):
        """The model with a dynamic batch axis (:func:`make_batch_dynamic`), made once."""
        if self._batched is None:
            from lrface.models.onnx_utils import make_batch_dynamic
            from lrface.models.providers import make_session

            self._batched = make_session(make_batch_dynamic(self.model_path), self._providers)
        return self._batched

    def _decoded(
        self, outs: list[np.ndarray], ch: int, cw: int, thresh: float, real_scale: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N, 5) and landmarks (N, 5, 2) of one image's network outputs on a
        ``ch`` x ``cw`` canvas, in the coordinates of the image before ``real_scale``."""
        boxes, kps = self._decode(outs, ch, cw, thresh)
        if len(boxes) == 0:
            return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
        boxes[:, :4] /= real_scale
        kps /= real_scale
        return boxes, kps

    def _anchor_centers(self, ch: int, cw: int, stride: int) -> np.ndarray:
        key = (ch, cw, stride)
        if key not in self._centers:
            fh, fw = ch // stride, cw // stride
            ys, xs = np.mgrid[:fh, :fw]
            c = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
            self._centers[key] = np.repeat(c, self._num_anchors, axis=0)
        return self._centers[key]

    def _decode(
        self, outs: list[np.ndarray], ch: int, cw: int, thresh: float
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(self._strides)
        all_boxes, all_kps = [], []
        for i, stride in enumerate(self._strides):
            scores = outs[i].reshape(-1)
            bbox = outs[i + n].reshape(-1, 4) * stride
            kps = outs[i + 2 * n].reshape(-1, 10) * stride
            centers = self._anchor_centers(ch, cw, stride)
            idx = np.where(scores >= thresh)[0]
            if idx.size == 0:
                continue
            c = centers[idx]
            b = np.concatenate([c - bbox[idx, :2], c + bbox[idx, 2:]], axis=1)
            k = kps[idx].reshape(-1, 5, 2) + c[:, None, :]
            all_boxes.append(np.concatenate([b, scores[idx, None]], axis=1))
            all_kps.append(k)
        if not all_boxes:
            return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
        boxes = np.concatenate(all_boxes).astype(np.float32)
        kps = np.concatenate(all_kps).astype(np.float32)
        keep = _nms(boxes[:, :4], boxes[:, 4], self.nms_thresh)
        return boxes[keep], kps[keep]


def _quiet_opencv() -> None:
    """OpenCV's own log lines (e.g. YuNet's "Targets are not supported" warning) off."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # older OpenCV builds: cv2.setLogLevel (absent from OpenCV's stubs)
        set_level = getattr(cv2, "setLogLevel", None)
        if set_level is not None:
            set_level(2)


class YuNet(Detector):
    """OpenCV's YuNet (``cv2.FaceDetectorYN``)."""

    name = "yunet"

    def __init__(
        self,
        model_path: str | Path,
        det_thresh: float = registry.DETECTOR_THRESHOLDS["yunet"],
        nms_thresh: float = 0.3,
    ) -> None:
        super().__init__(det_thresh, nms_thresh)
        self.model_path = str(model_path)
        _quiet_opencv()
        self._net = cv2.FaceDetectorYN.create(
            self.model_path, "", (320, 320), det_thresh, nms_thresh, 5000
        )

    def _detect_at(
        self, image: np.ndarray, scale: float, thresh: float
    ) -> tuple[np.ndarray, np.ndarray]:
        h, w = image.shape[:2]
        nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(image, (nw, nh), interpolation=interp)
        self._net.setInputSize((nw, nh))
        self._net.setScoreThreshold(float(thresh))
        _, faces = self._net.detect(resized)
        if faces is None or len(faces) == 0:
            return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
        faces = np.asarray(faces, dtype=np.float32) / np.float32(scale)
        boxes = np.stack(
            [
                faces[:, 0],
                faces[:, 1],
                faces[:, 0] + faces[:, 2],
                faces[:, 1] + faces[:, 3],
                faces[:, 14] * scale,
            ],
            axis=1,
        )
        kps = faces[:, 4:14].reshape(-1, 5, 2)
        # YuNet lists the subject's right eye first, i.e. the eye on the image's left: same
        # order as ours.  Sort defensively so index 0 is the left-most eye/mouth corner.
        for a, b in ((0, 1), (3, 4)):
            swap = kps[:, a, 0] > kps[:, b, 0]
            kps[swap, a], kps[swap, b] = kps[swap, b].copy(), kps[swap, a].copy()
        return boxes.astype(np.float32), kps


def detector_names() -> list[str]:
    """Valid values of ``detector``: ``auto`` and every registry detector."""
    return ["auto", *sorted(n for n, s in registry.all_models().items() if s.kind == "detector")]


def resolve_detector(name: str | None = DEFAULT_DETECTOR) -> str:
    """The registry detector that ``name`` stands for.

    ``auto`` (or None): SCRFD-2.5g when its file is found in the model directories or
    insightface's packs, otherwise YuNet (MIT, shipped in ``weights/``), with one notice
    per process naming how to get SCRFD.  Any other name is returned unchanged.
    """
    if name not in (None, "auto"):
        return str(name)
    if registry.find(registry.get_spec(PREFERRED_DETECTOR)) is not None:
        return PREFERRED_DETECTOR
    _notice_fallback()
    return FALLBACK_DETECTOR


@lru_cache(maxsize=1)
def _notice_fallback() -> None:
    log.warning(
        "detector %s not found, using %s (shipped); for SCRFD run `lrface models fetch %s` "
        "(insightface licence: non-commercial research only)",
        PREFERRED_DETECTOR,
        FALLBACK_DETECTOR,
        PREFERRED_DETECTOR,
    )


def load_detector(
    name: str = DEFAULT_DETECTOR, det_thresh: float | None = None, model_dir: str | None = None
) -> Detector:
    """Build a registry detector by name (cached per resolved name and threshold):
    ``auto`` (default, see :func:`resolve_detector`), ``scrfd-2.5g``, ``scrfd-500m``,
    ``scrfd-10g`` or ``yunet``.  ``det_thresh`` in (0, 1); None = the detector's default
    (its registry entry's ``det_thresh``)."""
    return _load_detector(resolve_detector(name), det_thresh, model_dir)


@lru_cache(maxsize=8)
def _load_detector(name: str, det_thresh: float | None, model_dir: str | None) -> Detector:
    from lrface.errors import LrfaceError

    if det_thresh is not None and not 0.0 < float(det_thresh) < 1.0:
        raise LrfaceError(f"--det-thresh {det_thresh}: must be a score between 0 and 1")
    try:
        spec = registry.get_spec(name)
    except registry.ModelFileError:
        if name in registry.SHIPPED_CARDS:  # says which file this install lacks
            raise
        spec = None
    if spec is None or spec.kind != "detector":
        raise registry.ModelFileError(
            f"{name}: not a face detector; choose one of {', '.join(detector_names())}"
        )
    path = registry.locate(spec, model_dir)
    thresh = det_thresh if det_thresh is not None else spec.det_thresh
    if thresh is None:
        raise registry.ModelFileError(
            f"{name}: its registry entry has no default det_thresh; pass --det-thresh"
        )
    if spec.detector_type == "yunet":
        return YuNet(path, det_thresh=thresh)
    return SCRFD(path, det_thresh=thresh)
