"""Video in and out for ``lrface watch``: reading clips and streams, writing its outputs.

* :func:`open_video`: a file, URL (``rtsp://``, ``http://``) or camera index OpenCV can
  read -> :class:`VideoSource` (uint8 BGR frames, frame rate, frame count when known);
* :func:`write_tracks_json`, :func:`write_tracks_csv`, :func:`save_best_crops`: the
  per-track results, each file written atomically;
* :func:`write_annotated`: the clip again with every track's box and identity drawn
  (a second pass over a file; written to a temporary file beside the output, then
  renamed).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from lrface.errors import LrfaceError
from lrface.io.fileio import _umask, atomic_write, write_json_atomic

if TYPE_CHECKING:
    from lrface.video.watch import TrackResult

__all__ = [
    "VideoSource",
    "open_video",
    "save_best_crops",
    "write_annotated",
    "write_tracks_csv",
    "write_tracks_json",
]

_STREAM = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


@dataclasses.dataclass
class VideoSource:
    """An opened clip or stream.  ``fps``: frame rate (None when OpenCV reports none);
    ``n_frames``: frame count (None for streams or when unknown); ``is_stream``: a URL or
    camera index (cannot be read twice); ``size``: (width, height)."""

    name: str
    capture: Any
    fps: float | None
    n_frames: int | None
    is_stream: bool
    size: tuple[int, int]

    def frames(self) -> Iterator[np.ndarray]:
        """Yield uint8 BGR (H, W, 3) frames until the input ends; closes the capture."""
        try:
            while True:
                ok, frame = self.capture.read()
                if not ok or frame is None:
                    return
                yield frame
        finally:
            self.capture.release()

    def close(self) -> None:
        self.capture.release()


def open_video(source: str) -> VideoSource:
    """Open ``source`` (a video file, a URL such as ``rtsp://...``, or a camera index like
    ``0``) with OpenCV.  Raises :class:`LrfaceError` (one line naming ``source`` and the
    fix) when it does not exist or OpenCV cannot decode a frame of it."""
    is_cam = source.isdigit()
    is_stream = is_cam or bool(_STREAM.match(source))
    if not is_stream and not Path(source).is_file():
        what = "is a directory" if Path(source).is_dir() else "no such file"
        raise LrfaceError(f"{source}: {what}; pass a video file, a stream URL or a camera index")
    cap = cv2.VideoCapture(int(source) if is_cam else source)
    if not cap.isOpened():
        cap.release()
        raise LrfaceError(
            f"{source}: OpenCV cannot open it as a video; check the path/URL, or convert it "
            "(e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)"
        )
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    if not is_stream:  # a file that opens but holds no decodable frame
        ok, frame = cap.read()
        if not ok or frame is None:
            cap.release()
            raise LrfaceError(
                f"{source}: no frame could be decoded (not a video, truncated, or a codec "
                "OpenCV lacks); convert it (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)"
            )
        cap.release()  # reopened rather than rewound: seeking is inexact for some codecs
        cap = cv2.VideoCapture(source)
    return VideoSource(
        name=source,
        capture=cap,
        fps=fps if np.isfinite(fps) and fps > 0 else None,
        n_frames=count if count > 0 and not is_stream else None,
        is_stream=is_stream,
        size=size,
    )


def write_tracks_json(path: str | os.PathLike[str], summary: dict[str, Any]) -> None:
    """Write ``summary`` (the run's settings and ``"tracks"``: :meth:`TrackResult.to_dict`
    rows) as JSON, atomically."""
    write_json_atomic(path, summary)


#: Columns of the CSV written by :func:`write_tracks_csv`.
CSV_COLUMNS = (
    "track", "first_frame", "last_frame", "start_s", "end_s", "n_frames", "identity",
    "score", "threshold", "candidates", "model", "n_embedded", "face_px", "best_frame",
    "best_crop_file",
)  # fmt: skip


def write_tracks_csv(path: str | os.PathLike[str], tracks: Sequence[TrackResult]) -> None:
    """One row per track (:data:`CSV_COLUMNS`; ``candidates`` as ``name:score`` joined by
    ``;``), written atomically."""
    with atomic_write(path, "w") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for t in tracks:
            d = t.to_dict()
            d["candidates"] = ";".join(f"{c['identity']}:{c['score']:.4f}" for c in d["candidates"])
            w.writerow(["" if d[c] is None else d[c] for c in CSV_COLUMNS])


def save_best_crops(directory: str | os.PathLike[str], tracks: Sequence[TrackResult]) -> None:
    """Write each track's best crop to ``directory/track_<id>.png`` (atomically) and set
    its ``best_crop_file``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for t in tracks:
        ok, buf = cv2.imencode(".png", t.best_crop)
        if not ok:
            raise LrfaceError(f"track {t.track_id}: its best crop could not be encoded as PNG")
        path = out / f"track_{t.track_id:04d}.png"
        with atomic_write(path) as fh:
            fh.write(buf.tobytes())
        t.best_crop_file = str(path)


def write_annotated(
    source: str,
    out: str | os.PathLike[str],
    tracks: Sequence[TrackResult],
    every: int,
    fps: float | None,
) -> None:
    """Write ``source`` again to ``out`` with each track's box and label (``#id identity
    score``; green when identified, red when unknown) on the frames where it was seen;
    with ``every`` > 1 a box stays up until the next processed frame.  Codec ``mp4v``
    (``.mp4``/``.mov``), ``MJPG`` for anything else (e.g. ``.avi``)."""
    by_frame: dict[int, list[tuple[TrackResult, np.ndarray]]] = {}
    for t in tracks:
        for f, box in zip(t.frames, t.boxes):
            for k in range(every):
                by_frame.setdefault(f + k, []).append((t, box))
    video = open_video(source)
    w, h = video.size
    out = Path(out)
    fourcc = "mp4v" if out.suffix.lower() in (".mp4", ".m4v", ".mov") else "MJPG"
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter.fourcc(*fourcc), fps or 25.0, (w, h))
        if not writer.isOpened():
            raise LrfaceError(
                f"{out}: OpenCV cannot write {fourcc} video there; use an .mp4 or .avi name"
            )
        try:
            for i, frame in enumerate(video.frames()):
                for t, box in by_frame.get(i, []):
                    _draw(frame, t, box)
                writer.write(frame)
        finally:
            writer.release()
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _draw(frame: np.ndarray, t: TrackResult, box: np.ndarray) -> None:
    """Draw one track's box and label on a uint8 BGR frame, in place."""
    known = t.identity != "unknown"
    colour = (0, 200, 0) if known else (0, 0, 230)
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    cv2.rectangle(frame, (x1, y1), (x2, y2), colour, 1)
    label = f"#{t.track_id} {t.identity} {t.score:.2f}"
    cv2.putText(frame, label, (x1, max(y1 - 3, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1)
