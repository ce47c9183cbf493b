"""Who walked past the camera: faces detected per frame, tracked, fused and identified.

For every processed frame (every ``every``-th frame of the input), faces are detected
(:func:`lrface.faces.detect.load_detector`, the detector of the crop pipeline), aligned like
every other lrface crop (:func:`lrface.faces.pipeline.align_crop`) and followed across frames
by :class:`lrface.video.tracks.SortTracker`.  Each track keeps its ``max_faces`` best faces by
quality (:func:`lrface.search.templates.face_quality`: size x detector score x sharpness).  When
a track ends (unseen for ``max_misses`` processed frames, or the input is over) its kept
faces are embedded by the model :func:`lrface.api.verify` would choose for the track's
median face size (:func:`lrface.api.choose_model`: the ``lrface-mbf`` student under 80 px,
the teacher above; or ``model``), fused into one quality-weighted template
(:func:`lrface.search.templates.fuse_template`) and searched in the gallery: top-k identities
with scores and the open-set decision at the threshold of
:func:`lrface.search.templates.decision_threshold`.  Tracks seen in fewer than ``min_frames``
processed frames are dropped as detector noise (counted in :class:`WatchReport`).

Embedding only each track's best faces, once, when it ends keeps the per-frame cost at
detection + alignment: 22.9 ms of CPU per 352x288 frame with 1-3 faces, everything
included (``benchmarks/watch_clips.py``, ``benchmarks/RESULTS.md``).

Frames are uint8 BGR (H, W, 3) arrays (what OpenCV decodes); frame indices count every
frame of the input from 0, processed or not.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lrface.api import choose_model
from lrface.errors import LrfaceError
from lrface.faces.detect import load_detector, resolve_detector
from lrface.faces.pipeline import CropOptions, align_crop
from lrface.faces.routing import crop_for
from lrface.io.validation import is_int
from lrface.models.defaults import DEFAULTS
from lrface.models.loader import load_embedder
from lrface.search.interface import Gallery
from lrface.search.templates import decision_threshold, face_quality, fuse_template
from lrface.video.tracks import SortTracker

__all__ = [
    "TrackResult",
    "WatchReport",
    "WatchSettings",
    "Watcher",
    "load_watchlist",
    "watch_frames",
]

#: Default detector of ``watch``: the shipped YuNet, the fastest (about 19 ms of CPU per
#: 352x288 frame; SCRFD-2.5g about 87 ms on the same frames, ``benchmarks/RESULTS.md``).
WATCH_DETECTOR = DEFAULTS.watch_detector
#: Side of the aligned crops kept per track (every model's input; students resize it).
CROP_SIZE = 112


@dataclasses.dataclass(frozen=True)
class WatchSettings:
    """How ``watch`` reads a clip; validated on construction (:class:`LrfaceError`).

    ``every``: process every N-th frame (1 = all).  ``detector``, ``det_thresh``: as in
    :class:`lrface.faces.pipeline.CropOptions` (default detector :data:`WATCH_DETECTOR`).
    ``model``: recogniser for every track (None: :func:`lrface.api.choose_model` of the
    track's median face size).  ``top_k``:
    candidates per track.  ``threshold``: open-set threshold (None:
    :func:`lrface.search.templates.decision_threshold`).  ``min_frames``: shortest track
    reported, in processed frames.  ``max_faces``: best faces per track embedded into its
    template.  ``max_misses``: processed frames a track may go unseen before it ends.
    """

    every: int = 1
    detector: str = WATCH_DETECTOR
    det_thresh: float | None = None
    model: str | None = None
    top_k: int = 5
    threshold: float | None = None
    min_frames: int = 3
    max_faces: int = 16
    max_misses: int = 10

    def __post_init__(self) -> None:
        for name, low in (("every", 1), ("top_k", 1), ("min_frames", 1), ("max_faces", 1)):
            v = getattr(self, name)
            if not is_int(v) or v < low:
                raise LrfaceError(f"--{name.replace('_', '-')} {v!r}: must be an integer >= {low}")
        if not is_int(self.max_misses) or self.max_misses < 0:
            raise LrfaceError(f"max_misses {self.max_misses!r}: must be an integer >= 0")
        t = self.threshold
        if t is not None and not (np.isfinite(t) and -1.0 <= t <= 1.0):
            raise LrfaceError(f"--threshold {t!r}: must be a cosine between -1 and 1")
        CropOptions(detector=self.detector, det_thresh=self.det_thresh)  # validates both


@dataclasses.dataclass
class TrackResult:
    """One face track and who it is.

    ``frames``: int frame indices where the face was detected (processed frames only);
    ``boxes``: float32 (len(frames), 4) ``[x1, y1, x2, y2]`` per detection;
    ``start_s`` / ``end_s``: times of the first / last detection (None without a frame
    rate).  ``face_px``: median native face size (px).  ``model``: recogniser of the
    template; ``n_embedded``: faces fused into it.  ``identity``: best gallery identity,
    or ``"unknown"`` when ``score`` < ``threshold``; ``candidates``: top-k
    ``{"identity", "score"}``, best first.  ``best_frame`` / ``best_box`` /
    ``best_crop`` (uint8 BGR (112, 112, 3)) / ``best_quality``: the face of highest
    quality.  ``template``: float32 (D,), L2-normalised.  ``best_crop_file``: where the
    CLI saved the best crop (``--save-crops``), else None.
    """

    track_id: int
    frames: list[int]
    boxes: np.ndarray
    start_s: float | None
    end_s: float | None
    face_px: float
    model: str
    n_embedded: int
    identity: str
    score: float
    threshold: float
    threshold_from: str
    candidates: list[dict[str, Any]]
    best_frame: int
    best_box: np.ndarray
    best_crop: np.ndarray
    best_quality: float
    template: np.ndarray
    best_crop_file: str | None = None

    @property
    def first_frame(self) -> int:
        return self.frames[0]

    @property
    def last_frame(self) -> int:
        return self.frames[-1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays but boxes as lists; frames as a list)."""
        return {
            "track": self.track_id,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "start_s": _round(self.start_s),
            "end_s": _round(self.end_s),
            "n_frames": len(self.frames),
            "frames": list(self.frames),
            "face_px": round(float(self.face_px), 1),
            "identity": self.identity,
            "score": round(float(self.score), 4),
            "threshold": round(float(self.threshold), 4),
            "threshold_from": self.threshold_from,
            "candidates": [
                {"identity": c["identity"], "score": round(float(c["score"]), 4)}
                for c in self.candidates
            ],
            "model": self.model,
            "n_embedded": self.n_embedded,
            "best_frame": self.best_frame,
            "best_box": [round(float(v), 1) for v in self.best_box],
            "best_quality": round(float(self.best_quality), 4),
            "best_crop_file": self.best_crop_file,
        }


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 3)


@dataclasses.dataclass
class WatchReport:
    """The result of :func:`watch_frames`: ``tracks`` (by first frame), frames read and
    processed, tracks dropped as shorter than ``min_frames``, wall time in seconds, the
    detector used, and the CPU time of this process in seconds (all threads; reading,
    detection, tracking, embedding and search -- not model loading)."""

    tracks: list[TrackResult]
    frames_read: int
    frames_processed: int
    short_tracks_dropped: int
    seconds: float
    detector: str
    cpu_seconds: float = float("nan")
    #: Reading stopped at Ctrl-C (KeyboardInterrupt); the tracks so far are complete.
    interrupted: bool = False

    @property
    def fps(self) -> float:
        """Frames read per second of wall time."""
        return self.frames_read / self.seconds if self.seconds > 0 else float("nan")


@dataclasses.dataclass(order=True)
class _Kept:
    """One face kept for a track's template (ordered by quality, then arrival)."""

    quality: float
    seq: int
    frame: int = dataclasses.field(compare=False)
    crop: np.ndarray = dataclasses.field(compare=False)
    face_px: float = dataclasses.field(compare=False)
    box: np.ndarray = dataclasses.field(compare=False)


@dataclasses.dataclass
class _Open:
    """A track still being followed: every detection, and its best faces (a min-heap)."""

    frames: list[int] = dataclasses.field(default_factory=list)
    boxes: list[np.ndarray] = dataclasses.field(default_factory=list)
    sizes: list[float] = dataclasses.field(default_factory=list)
    kept: list[_Kept] = dataclasses.field(default_factory=list)


class Watcher:
    """Incremental ``watch``: :meth:`feed` processed frames in order, then :meth:`finish`.

    Both return the tracks that ended (:class:`TrackResult`, identified).  ``gallery``: a
    :class:`~lrface.search.gallery.FlatGallery` or IVF gallery (:func:`load_watchlist`).  ``fps``:
    the input's frame rate, for times (None: times are None).
    """

    def __init__(
        self, gallery: Any, settings: WatchSettings | None = None, fps: float | None = None
    ) -> None:
        self.settings = s = settings or WatchSettings()
        self.gallery = gallery
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else None
        self.detector_name = resolve_detector(s.detector)
        self._detector = load_detector(s.detector, s.det_thresh)
        self._crop = CropOptions(detector=s.detector, det_thresh=s.det_thresh, size=CROP_SIZE)
        self._tracker = SortTracker(max_misses=s.max_misses)
        self._open: dict[int, _Open] = {}
        self._seq = itertools.count()
        self.short_tracks_dropped = 0
        for name in [s.model] if s.model else [choose_model(0.0), choose_model(1e9)]:
            gallery.check_model(load_embedder(name))  # refuse a gallery of another space now

    def feed(self, frame_index: int, frame: np.ndarray) -> list[TrackResult]:
        """Detect, align and track the faces of one uint8 BGR (H, W, 3) frame; returns the
        tracks that ended with it."""
        faces = self._detector.detect(frame)
        boxes = np.array([f.box for f in faces], np.float32).reshape(-1, 4)
        ids, ended = self._tracker.update(boxes)
        for face, tid in zip(faces, ids.tolist()):
            crop, native = align_crop(frame, face.landmarks, self._crop)
            t = self._open.setdefault(tid, _Open())
            t.frames.append(int(frame_index))
            t.boxes.append(face.box.astype(np.float32))
            t.sizes.append(native)
            q = face_quality(crop, native, face.score)
            kept = _Kept(q, next(self._seq), int(frame_index), crop, native, face.box)
            if len(t.kept) < self.settings.max_faces:
                heapq.heappush(t.kept, kept)
            elif kept > t.kept[0]:
                heapq.heapreplace(t.kept, kept)
        return self._close(ended)

    def finish(self) -> list[TrackResult]:
        """End every open track (the input is over); returns them, identified."""
        return self._close(self._tracker.finish())

    def _close(self, ended: list[int]) -> list[TrackResult]:
        done = [(tid, self._open.pop(tid)) for tid in ended if tid in self._open]
        long = [(tid, t) for tid, t in done if len(t.frames) >= self.settings.min_frames]
        self.short_tracks_dropped += len(done) - len(long)
        if not long:
            return []
        models = [self.settings.model or choose_model(float(np.median(t.sizes))) for _, t in long]
        results: list[TrackResult | None] = [None] * len(long)
        for name in dict.fromkeys(models):
            idx = [i for i, m in enumerate(models) if m == name]
            for i, r in zip(idx, self._identify(name, [long[i] for i in idx])):
                results[i] = r
        return [r for r in results if r is not None]

    def _identify(self, model: str, tracks: list[tuple[int, _Open]]) -> list[TrackResult]:
        """Embed, fuse and search the tracks whose template ``model`` embeds."""
        emb = load_embedder(model)
        kept = [sorted(t.kept, reverse=True) for _, t in tracks]
        vecs = emb.embed_crops([crop_for(emb, k.crop) for ks in kept for k in ks])
        templates, start = [], 0
        for ks in kept:
            w = np.array([k.quality for k in ks])
            templates.append(fuse_template(vecs[start : start + len(ks)], w))
            start += len(ks)
        thr, source = decision_threshold(emb.name, self.gallery, self.settings.threshold)
        found = self.gallery.identify(
            np.stack(templates), threshold=thr, top_k=self.settings.top_k, embedder=emb
        )
        return [
            self._result(tid, t, ks, tpl, res, emb.name, (thr, source))
            for (tid, t), ks, tpl, res in zip(tracks, kept, templates, found)
        ]

    def _result(
        self,
        tid: int,
        t: _Open,
        kept: list[_Kept],
        template: np.ndarray,
        found: dict[str, Any],
        model: str,
        threshold: tuple[float, str],
    ) -> TrackResult:
        best = kept[0]
        return TrackResult(
            track_id=tid,
            frames=t.frames,
            boxes=np.stack(t.boxes),
            start_s=self._time(t.frames[0]),
            end_s=self._time(t.frames[-1]),
            face_px=float(np.median(t.sizes)),
            model=model,
            n_embedded=len(kept),
            identity=found["identity"],
            score=float(found["score"]),
            threshold=threshold[0],
            threshold_from=threshold[1],
            candidates=found["candidates"],
            best_frame=best.frame,
            best_box=np.asarray(best.box, np.float32),
            best_crop=best.crop,
            best_quality=best.quality,
            template=template,
        )

    def _time(self, frame: int) -> float | None:
        return None if self.fps is None else frame / self.fps


def watch_frames(
    frames: Iterable[np.ndarray],
    gallery: Any,
    settings: WatchSettings | None = None,
    fps: float | None = None,
    progress: Any = None,
) -> WatchReport:
    """Tracks and identities of the faces in a sequence of frames.

    ``frames``: any iterable of uint8 BGR (H, W, 3) arrays (a decoded clip, a camera
    loop); frame ``i`` is processed when ``i % settings.every == 0``.  ``gallery``: a
    gallery object or path (:func:`load_watchlist`).  ``fps``: frame rate for the
    tracks' times (None: no times).  ``progress``: an object with ``update(n)`` (e.g. a
    tqdm bar), advanced once per frame read.  Returns a :class:`WatchReport` with the
    reported tracks ordered by first frame.  Ctrl-C (KeyboardInterrupt) while reading
    stops the reading: the open tracks are closed and identified, and the report says
    ``interrupted``.
    """
    settings = settings or WatchSettings()
    if isinstance(gallery, str | Path):
        gallery = load_watchlist(gallery)
    w = Watcher(gallery, settings, fps)
    tracks: list[TrackResult] = []
    start, cpu_start = time.perf_counter(), time.process_time()
    n_read = n_done = 0
    interrupted = False
    try:
        for i, frame in enumerate(_checked(frames)):
            n_read += 1
            if i % settings.every == 0:
                tracks += w.feed(i, frame)
                n_done += 1
            if progress is not None:
                progress.update(1)
    except KeyboardInterrupt:  # a camera or stream never ends: Ctrl-C ends the reading
        interrupted = True
    tracks += w.finish()
    tracks.sort(key=lambda r: (r.first_frame, r.track_id))
    return WatchReport(
        tracks,
        n_read,
        n_done,
        w.short_tracks_dropped,
        time.perf_counter() - start,
        w.detector_name,
        time.process_time() - cpu_start,
        interrupted,
    )


def _checked(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """``frames``, each checked to be a uint8 (H, W, 3) array."""
    for i, f in enumerate(frames):
        if not (isinstance(f, np.ndarray) and f.dtype == np.uint8 and f.shape[2:] == (3,)):
            desc = f"{f.dtype} {f.shape}" if isinstance(f, np.ndarray) else type(f).__name__
            raise LrfaceError(f"frame {i}: expected a uint8 BGR (H, W, 3) array, got {desc}")
        yield f


def load_watchlist(path: str | Path, progress: bool = False) -> Gallery:
    """The gallery to search: an ``.npz`` (``lrface gallery build``), an IVF gallery
    directory, or a directory ``ROOT/<identity>/<images>`` enrolled now with the teacher
    (as ``lrface gallery build`` does by default).  Raises :class:`LrfaceError` naming
    the path and the fix."""
    from lrface.search.ivf import is_ivf_gallery, open_gallery

    p = Path(path)
    if not p.exists():
        raise LrfaceError(
            f"{p}: no such gallery; pass an .npz or directory from `lrface gallery build`, or "
            "a folder with one sub-folder of photos per identity"
        )
    if p.is_file() or is_ivf_gallery(p):
        return open_gallery(p)
    from lrface.search.gallery import build_gallery

    gallery, failures = build_gallery(p, load_embedder(DEFAULTS.teacher), progress=progress)
    if failures:
        shown = "; ".join(f"{f}: {m}" for f, m in failures[:3])
        raise LrfaceError(
            f"{p}: {len(failures)} watchlist photo(s) could not be enrolled ({shown}); fix or "
            "remove them, or enrol with `lrface gallery build` and pass its .npz"
        )
    return gallery
