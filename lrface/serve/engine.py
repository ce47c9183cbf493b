"""The work of each ``lrface serve`` endpoint, with the models of one worker process.

An :class:`Engine` is created once per worker: :meth:`Engine.warm_up` loads the detector
and recognisers (models load once per worker and stay loaded) and opens the gallery.  The
app runs it and the other methods on the worker's one inference thread
(:attr:`Engine.executor`, never on the event loop), in arrival order; each method also
holds the worker's inference lock for the whole request (granted in arrival order,
:class:`lrface.serve.turns.FairLock`), for callers on other threads -- not every model
object is thread-safe (OpenCV's YuNet keeps its input size), and one request at a time on
one thread bounds a worker's memory (one image decode at a time, one thread's allocator
arena) -- so throughput scales with ``--workers``.

Everything is the library's: images decoded by :func:`lrface.io.images.read_image` (its
header guard, at ``--max-pixels``), faces cut by :func:`lrface.faces.pipeline.prepare_face`,
verification by :func:`lrface.api.verify_detailed`, search by the galleries' ``identify``
-- with the CLI's defaults and thresholds, and its ``--json`` shapes in the answers.
Inputs are uploads only (:class:`Upload`: a name for messages and bytes), never a path.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from lrface.api import verify_detailed
from lrface.errors import LrfaceError
from lrface.faces.detect import DEFAULT_DETECTOR, load_detector, resolve_detector
from lrface.faces.pipeline import CropOptions, PreparedFace, prepare_face
from lrface.faces.routing import (
    BOX_MODEL,
    LR_STUDENT,
    TEACHER,
    ModelRouter,
    crop_for,
    probe_threshold,
)
from lrface.io.images import read_image
from lrface.models.interface import Embedder
from lrface.models.loader import load_embedder
from lrface.models.registry import all_models, find
from lrface.search.interface import Gallery
from lrface.serve.limits import Deadline
from lrface.serve.options import ServeOptions
from lrface.serve.store import GalleryStore
from lrface.serve.turns import FairLock

log = logging.getLogger("lrface")

#: The ``model`` of an answer whose faces were each embedded by their own model.
PER_FACE = "per-face"
#: Most candidates ``/identify`` returns per probe.
MAX_TOP_K = 100
#: Longest identity label accepted by ``/gallery/identities``.
MAX_IDENTITY_CHARS = 128

__all__ = ["CropRequest", "Engine", "NoGallery", "NotEnrolled", "Upload"]


class NotEnrolled(LrfaceError):
    """The identity named is not in the gallery (HTTP 404)."""


class NoGallery(LrfaceError):
    """The server was started without ``--gallery`` (HTTP 409)."""


@dataclasses.dataclass(frozen=True)
class Upload:
    """One uploaded image: ``name`` (the client's file name, cleaned; used in messages
    and as the ``source`` of results) and its encoded ``data``."""

    name: str
    data: bytes


@dataclasses.dataclass(frozen=True)
class CropRequest:
    """The crop fields of a request (the CLI's crop options); None: the server's default
    (``--detector``, ``--det-thresh``) or the CLI's.  ``crop_mode``: how a pre-cut crop
    (``detect=False``) is read, the CLI's ``--crop-mode`` (``auto``, ``aligned``, ``box``)."""

    detect: bool = True
    detector: str | None = None
    det_thresh: float | None = None
    face_index: int | None = None
    crop_mode: str = "auto"


def crop_png(crop: np.ndarray) -> str:
    """A uint8 BGR crop as a ``data:image/png;base64,...`` URL (for the operator page)."""
    import cv2

    ok, buf = cv2.imencode(".png", crop)
    if not ok:  # pragma: no cover - a valid uint8 crop always encodes
        raise LrfaceError("could not encode a face crop as PNG")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def face_info(face: PreparedFace) -> dict[str, Any]:
    """A face's ``lrface identify --json`` ``face``: its :meth:`PreparedFace.to_dict`
    without box and landmarks (as :attr:`lrface.faces.pipeline.CropResult.info`)."""
    return {k: v for k, v in face.to_dict().items() if k not in ("box", "landmarks")}


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Engine:
    """The models, gallery and inference lock of one worker (module docstring)."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.lock = FairLock()  # first come, first served (lrface.serve.turns)
        #: The worker's one inference thread: the app runs every request on it, in
        #: arrival order, so one thread's buffers serve them all (bounded memory).
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lrface-inference")
        self.store = (
            GalleryStore(options.gallery, options.gallery_model, options.aggregate)
            if options.gallery
            else None
        )

    # ------------------------------------------------------------------ start

    def warm_up(self) -> list[str]:
        """Load the default detector, the models per-face routing chooses from (the
        teacher, the ``lrface-mbf`` and ``lrface-box`` students) and the gallery's model,
        open the gallery, and run each model once; returns the models loaded."""
        o = self.options
        CropOptions(detector=o.detector, det_thresh=o.det_thresh)  # validates both
        detector = load_detector(o.detector, o.det_thresh)
        detector.detect(np.full((96, 96, 3), 127, np.uint8))
        routed = (TEACHER, LR_STUDENT, BOX_MODEL)
        names = [n for n in routed if n in all_models() and find(all_models()[n])]
        if self.store is not None:
            self.store.prepare()
            names.append(self.store.current().model_name)
        loaded = [resolve_detector(o.detector)]
        for name in dict.fromkeys(names):
            emb = load_embedder(name)
            emb.embed_crops([np.full((emb.input_size, emb.input_size, 3), 127, np.uint8)])
            loaded.append(name)
        return loaded

    # ------------------------------------------------------------------ helpers

    @contextlib.contextmanager
    def _turn(self, deadline: Deadline) -> Iterator[None]:
        """The worker's inference lock, waited for until ``deadline``."""
        if not self.lock.acquire(timeout=deadline.remaining()):
            raise deadline.timeout("the worker was free (other requests)")
        try:
            yield
        finally:
            self.lock.release()

    def _image(self, up: Upload, deadline: Deadline) -> np.ndarray:
        deadline.check(f"reading {up.name}")
        return read_image(up.data, name=up.name, max_pixels=self.options.max_pixels)

    def _crop_options(self, c: CropRequest, size: int = 112) -> CropOptions:
        """The request's :class:`CropOptions` (validated): the server's detector defaults
        apply only when faces are detected."""
        if c.detect:
            detector = c.detector or self.options.detector
            thresh = c.det_thresh if c.det_thresh is not None else self.options.det_thresh
        else:
            detector, thresh = c.detector or DEFAULT_DETECTOR, c.det_thresh
        return CropOptions(
            detect=c.detect,
            detector=detector,
            det_thresh=thresh,
            face_index=c.face_index,
            size=size,
            crop_mode=c.crop_mode,
        )

    def _router(self, model: str | None) -> ModelRouter:
        """The per-face model choice of the CLI (``model=None``), or ``model`` (a registry
        recogniser) for every face."""
        if model is not None:
            self._embedder(model)  # a registry name, never a path
        return ModelRouter(model)

    @staticmethod
    def _embedder(name: str) -> Embedder:
        """A registry recogniser by name (never a path: requests name models, not files)."""
        spec = all_models().get(name)
        if spec is None or spec.kind == "detector":
            raise LrfaceError(
                f"model {name!r}: not a recogniser known to this server; GET /models lists them"
            )
        return load_embedder(name)

    def _gallery(self) -> Gallery:
        if self.store is None:
            raise NoGallery(
                "this server has no gallery; start it with --gallery FILE.npz (or an IVF "
                "directory) to identify and enrol"
            )
        return self.store.current()

    def _prepare(
        self, ups: list[Upload], options: CropOptions, deadline: Deadline
    ) -> tuple[list[tuple[Upload, PreparedFace]], list[dict[str, str]]]:
        """Each upload decoded and its face cut: ``(prepared, failed)`` with ``failed``
        ``[{"source", "error"}]`` for the uploads that could not be used."""
        done: list[tuple[Upload, PreparedFace]] = []
        failed: list[dict[str, str]] = []
        for up in ups:
            try:
                img = self._image(up, deadline)
                deadline.check(f"finding the face in {up.name}")
                done.append((up, prepare_face(img, options, name=up.name)))
            except LrfaceError as exc:
                msg = _one_line(str(exc))
                msg = msg[len(up.name) + 2 :] if msg.startswith(f"{up.name}: ") else msg
                failed.append({"source": up.name, "error": msg})
        return done, failed

    @staticmethod
    def _all_failed(failed: list[dict[str, str]], what: str) -> LrfaceError:
        if len(failed) == 1:
            return LrfaceError(f"{failed[0]['source']}: {failed[0]['error']}")
        reasons = "; ".join(f"{f['source']}: {f['error']}" for f in failed)
        return LrfaceError(f"all {len(failed)} {what} failed: {reasons}")

    # ------------------------------------------------------------------ endpoints

    def verify(
        self,
        ups: tuple[Upload, Upload],
        crop: CropRequest,
        deadline: Deadline,
        model: str | None = None,
        threshold: float | None = None,
        face_index1: int | None = None,
        face_index2: int | None = None,
        crops: bool = False,
    ) -> dict[str, Any]:
        """``lrface verify --json`` of two uploads (``crops``: each face's aligned crop
        as ``crop_png``)."""
        if model is not None:
            self._embedder(model)
        o = self._crop_options(crop)
        with self._turn(deadline):
            images = [self._image(u, deadline) for u in ups]
            deadline.check("finding and comparing the faces")
            res, faces = verify_detailed(
                images[0],
                images[1],
                model=model,
                threshold=threshold,
                detect=o.detect,
                face_index=o.face_index,
                detector=o.detector,
                det_thresh=o.det_thresh,
                face_index1=face_index1,
                face_index2=face_index2,
                names=(ups[0].name, ups[1].name),
                crop_mode=o.crop_mode,
            )
        out = res.to_dict()
        if crops:
            for im, face in zip(out["images"], faces):
                im["crop_png"] = crop_png(face.crop)
        return out

    def detect(self, up: Upload, crop: CropRequest, deadline: Deadline) -> dict[str, Any]:
        """``lrface detect --json`` of one upload."""
        o = self._crop_options(dataclasses.replace(crop, face_index=None))
        with self._turn(deadline):
            image = self._image(up, deadline)
            deadline.check(f"finding the faces in {up.name}")
            faces = load_detector(o.detector, o.det_thresh).detect(image)
        return {"image": up.name, "faces": [f.to_dict() for f in faces]}

    def embed(
        self,
        ups: list[Upload],
        crop: CropRequest,
        deadline: Deadline,
        model: str | None = None,
        crops: bool = False,
    ) -> dict[str, Any]:
        """One embedding per upload (the CLI's crop modes), with the uploads that failed.

        Each face is embedded by the model ``verify`` would choose for it
        (:func:`lrface.faces.routing.choose_model`, as ``lrface embed`` and
        :func:`lrface.embed` do; all in the teacher's space), or every face by ``model``;
        each row names its ``model``, the top-level ``model`` is ``model`` or
        ``"per-face"`` (as the manifest of ``lrface embed``)."""
        router = self._router(model)
        options = self._crop_options(crop, router.input_size)
        with self._turn(deadline):
            done, failed = self._prepare(ups, options, deadline)
            if not done:
                raise self._all_failed(failed, "images")
            deadline.check("embedding")
            faces = [f for _, f in done]
            e, names = router.embed_faces(faces)
        rows = []
        for (up, face), vec, name in zip(done, e, names):
            row = {
                "source": up.name,
                "model": name,
                "face": face.to_dict(),
                "embedding": vec.tolist(),
            }
            if crops:
                row["crop_png"] = crop_png(face.crop)
            rows.append(row)
        return {
            "model": router.forced or PER_FACE,
            "embedding_size": int(e.shape[1]),
            "embeddings": rows,
            "failed": failed,
        }

    def identify(
        self,
        ups: list[Upload],
        crop: CropRequest,
        deadline: Deadline,
        model: str | None = None,
        threshold: float | None = None,
        top_k: int = 5,
        crops: bool = False,
    ) -> dict[str, Any]:
        """``lrface identify --json`` results of the uploads against the gallery.

        As the CLI: each probe embedded by the model ``verify`` would choose for it (or
        every probe by ``model``), each model checked against the gallery and searched
        with its own calibrated threshold
        (:func:`lrface.faces.routing.probe_threshold`) unless ``threshold`` is given;
        each result holds ``probe``, ``model`` and ``face`` as the CLI's.  Top level:
        ``model`` (``model`` or ``"per-face"``), ``thresholds`` (model -> the threshold
        its probes were decided at), ``gallery_model``."""
        if not 1 <= top_k <= MAX_TOP_K:
            raise LrfaceError(f"top_k {top_k}: must be from 1 to {MAX_TOP_K}")
        router = self._router(model)
        options = self._crop_options(crop, router.input_size)
        with self._turn(deadline):
            gallery = self._gallery()
            if router.forced:
                gallery.check_model(router.embedder(router.forced))
            done, failed = self._prepare(ups, options, deadline)
            if not done:
                raise self._all_failed(failed, "probes")
            deadline.check("searching the gallery")
            faces = [f for _, f in done]
            e, names = router.embed_faces(faces)
            for name in dict.fromkeys(names):  # every chosen model must search this gallery
                gallery.check_model(router.embedder(name))
            found: list[dict[str, Any]] = [{} for _ in done]
            thresholds: dict[str, float | None] = {}
            for name in dict.fromkeys(names):  # one search per model: its own threshold
                idx = [i for i, n in enumerate(names) if n == name]
                thr = (
                    threshold
                    if threshold is not None
                    else probe_threshold(name, gallery.model_name, gallery.threshold)
                )
                thresholds[name] = thr
                for i, res in zip(idx, gallery.identify(e[idx], top_k=top_k, threshold=thr)):
                    found[i] = res
        results = []
        for (up, face), res, name in zip(done, found, names):
            res.update(probe=up.name, model=name, face=face_info(face))
            if crops:
                res["crop_png"] = crop_png(face.crop)
            results.append(res)
        return {
            "results": results,
            "failed": failed,
            "model": router.forced or PER_FACE,
            "thresholds": thresholds,
            "gallery_model": gallery.model_name,
        }

    def identities(self, deadline: Deadline) -> dict[str, Any]:
        """The enrolled identities and their image counts."""
        with self._turn(deadline):  # an IVF gallery's arrays are (re)loaded lazily
            g = self._gallery()
            counts = g.image_counts()
        return {
            "identities": [{"identity": n, "images": k} for n, k in counts.items()],
            "model": g.model_name,
            "aggregate": g.aggregate,
            "threshold": g.threshold,
            "index": "ivf" if self.store is not None and self.store.is_ivf else "exact",
        }

    def enrol(
        self, identity: str, ups: list[Upload], crop: CropRequest, deadline: Deadline
    ) -> dict[str, Any]:
        """Enrol every upload under ``identity`` (appended when enrolled): all or nothing
        -- one unusable image refuses the request and nothing is written."""
        identity = _check_identity(identity)
        with self._turn(deadline):
            store = self._require_store()
            emb = self._embedder(store.current().model_name)
            options = self._crop_options(crop, int(emb.input_size))
            done, failed = self._prepare(ups, options, deadline)
            if failed:
                f = failed[0]
                raise LrfaceError(
                    f"{f['source']}: {f['error']}; nothing was enrolled (every image of an "
                    "enrolment must show a usable face)"
                )
            deadline.check("embedding")
            e = emb.embed_crops([crop_for(emb, face) for _, face in done])
            sources = [up.name for up, _ in done]

            def change(gallery: Any) -> dict[str, Any]:
                gallery.check_model(emb)
                gallery.add(identity, e, sources)
                return {
                    "identity": identity,
                    "enrolled": len(sources),
                    "images": gallery.image_counts()[identity],
                    "identities": len(gallery),
                }

            return store.write(change, deadline)

    def remove(self, identity: str, deadline: Deadline) -> dict[str, Any]:
        """Remove ``identity`` and all its images."""
        store = self._require_store()

        def change(gallery: Any) -> dict[str, Any]:
            if identity not in gallery:
                raise NotEnrolled(f"identity {identity!r} is not enrolled in the gallery")
            n = gallery.remove(identity)
            return {"identity": identity, "removed": n, "identities": len(gallery)}

        return store.write(change, deadline)

    def _require_store(self) -> GalleryStore:
        self._gallery()  # raises NoGallery
        assert self.store is not None
        return self.store


def _check_identity(identity: str) -> str:
    """An identity label: 1-128 printable characters, not ``unknown``, no surrounding
    spaces (they would make two labels look the same)."""
    if not identity or identity != identity.strip():
        raise LrfaceError("identity: must be a non-empty label without leading or trailing spaces")
    if len(identity) > MAX_IDENTITY_CHARS:
        raise LrfaceError(f"identity: {len(identity)} characters, more than {MAX_IDENTITY_CHARS}")
    if not identity.isprintable():
        raise LrfaceError("identity: must not contain control characters or line breaks")
    if identity == "unknown":
        raise LrfaceError("identity: 'unknown' is reserved for probes that match no one")
    return identity
