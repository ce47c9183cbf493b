"""Following detected faces across video frames: SORT (Kalman filter + IoU assignment).

The tracker is SORT (Bewley et al., "Simple Online and Realtime Tracking", ICIP 2016):
each track is a constant-velocity Kalman filter over the box state
``[cx, cy, area, aspect, vx, vy, v_area]`` -- the filter itself is ``filterpy``'s
:class:`~filterpy.kalman.KalmanFilter` (maintained, numpy/scipy only) -- and detections
are assigned to the tracks' predicted boxes by the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`) on ``1 - IoU``.  One addition for small
faces: a detection left unmatched by IoU (a 14 px face that moved more than half its
width, e.g. with ``--every 5``) may still join an unmatched track whose predicted centre
is within :attr:`SortTracker.center_gate` box sides of it.

Why this and not a tracker package: ``norfair`` pins ``numpy<2`` (this project runs on
numpy 2), ``supervision`` 0.31 no longer ships ByteTrack (moved to ``trackers``, which
requires ``opencv-python`` and clashes with the ``opencv-python-headless`` lrface uses),
and ``motpy`` (last release 2021) does not say which track each detection joined -- which
is exactly what fusing a track's faces needs.  ``filterpy``-based SORT is the reference
formulation, small (one dependency, pure Python) and gives that mapping directly.

Boxes are float (N, 4) ``[x1, y1, x2, y2]`` in frame pixels.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lrface.errors import LrfaceError

__all__ = ["SortTracker", "iou_matrix"]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 (len(a), len(b)) intersection over union of boxes ``a`` (N, 4) and ``b``
    (M, 4), ``[x1, y1, x2, y2]``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _require_filterpy() -> None:
    """Raise :class:`LrfaceError` with the install command when filterpy is missing."""
    try:
        import filterpy.kalman  # noqa: F401
    except ImportError:
        raise LrfaceError(
            'tracking faces needs the filterpy package: pip install "lrface[video]"'
        ) from None


def _box_to_z(box: np.ndarray) -> np.ndarray:
    """(4, 1) measurement ``[cx, cy, area, aspect]`` of one ``[x1, y1, x2, y2]`` box."""
    w, h = max(box[2] - box[0], 1e-3), max(box[3] - box[1], 1e-3)
    return np.array([[box[0] + w / 2], [box[1] + h / 2], [w * h], [w / h]], np.float64)


def _x_to_box(x: np.ndarray) -> np.ndarray:
    """``[x1, y1, x2, y2]`` float64 (4,) of a Kalman state (7, 1)."""
    area, aspect = max(float(x[2, 0]), 1e-6), max(float(x[3, 0]), 1e-6)
    w = math.sqrt(area * aspect)
    h = area / w
    cx, cy = float(x[0, 0]), float(x[1, 0])
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


class _KalmanBox:
    """One track's constant-velocity Kalman filter (SORT's parameters)."""

    def __init__(self, box: np.ndarray) -> None:
        from filterpy.kalman import KalmanFilter

        kf = KalmanFilter(dim_x=7, dim_z=4)
        kf.F = np.eye(7)
        kf.F[0, 4] = kf.F[1, 5] = kf.F[2, 6] = 1.0
        kf.H = np.zeros((4, 7))
        kf.H[:4, :4] = np.eye(4)
        kf.R[2:, 2:] *= 10.0
        kf.P[4:, 4:] *= 1000.0  # unknown initial velocity
        kf.P *= 10.0
        kf.Q[-1, -1] *= 0.01
        kf.Q[4:, 4:] *= 0.01
        kf.x[:4] = _box_to_z(box)
        self.kf = kf

    def predict(self) -> np.ndarray:
        if self.kf.x[6, 0] + self.kf.x[2, 0] <= 0:
            self.kf.x[6, 0] = 0.0
        self.kf.predict()
        return _x_to_box(self.kf.x)

    def update(self, box: np.ndarray) -> None:
        self.kf.update(_box_to_z(box))


@dataclasses.dataclass
class _Track:
    track_id: int
    filter: _KalmanBox
    predicted: np.ndarray
    misses: int = 0


class SortTracker:
    """SORT over the frames given to :meth:`update` (see the module docstring).

    ``iou_threshold``: least IoU between a detection and a track's predicted box for the
    Hungarian match (default 0.1: small faces move a large part of their width).
    ``max_misses``: a track not matched in this many consecutive updates ends.
    ``center_gate``: second-chance match of leftovers by centre distance, in units of the
    detection's box side (0 disables).  Track ids start at 1 and are never reused.
    """

    def __init__(
        self, iou_threshold: float = 0.1, max_misses: int = 10, center_gate: float = 1.0
    ) -> None:
        if not 0.0 <= iou_threshold < 1.0:
            raise LrfaceError(f"iou_threshold must be in [0, 1), got {iou_threshold!r}")
        if max_misses < 0:
            raise LrfaceError(f"max_misses must be >= 0, got {max_misses!r}")
        _require_filterpy()
        self.iou_threshold = float(iou_threshold)
        self.max_misses = int(max_misses)
        self.center_gate = float(center_gate)
        self._tracks: list[_Track] = []
        self._next_id = 1

    @property
    def active_ids(self) -> list[int]:
        """Ids of the tracks still alive (matched within the last ``max_misses`` updates)."""
        return [t.track_id for t in self._tracks]

    def update(self, boxes: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Advance one frame with its detections.

        ``boxes``: float (N, 4) ``[x1, y1, x2, y2]`` of this frame's faces (N may be 0).
        Returns ``(ids, ended)``: int64 (N,) the track each detection joined (a new id
        for a detection that matched none) and the ids of the tracks that ended in this
        update (unmatched for more than ``max_misses`` updates).
        """
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        for t in self._tracks:
            t.predicted = t.filter.predict()
        matches = self._associate(boxes)
        ids = np.zeros(len(boxes), np.int64)
        matched_tracks = set()
        for d, ti in matches:
            t = self._tracks[ti]
            t.filter.update(boxes[d])
            t.misses = 0
            ids[d] = t.track_id
            matched_tracks.add(ti)
        for ti, t in enumerate(self._tracks):
            if ti not in matched_tracks:
                t.misses += 1
        ended = [t.track_id for t in self._tracks if t.misses > self.max_misses]
        self._tracks = [t for t in self._tracks if t.misses <= self.max_misses]
        for d in range(len(boxes)):
            if ids[d] == 0:
                kf = _KalmanBox(boxes[d])
                self._tracks.append(_Track(self._next_id, kf, boxes[d].copy()))
                ids[d] = self._next_id
                self._next_id += 1
        return ids, ended

    def finish(self) -> list[int]:
        """End every live track (the video is over); returns their ids."""
        ended = self.active_ids
        self._tracks = []
        return ended

    def _associate(self, boxes: np.ndarray) -> list[tuple[int, int]]:
        """``(detection index, track index)`` pairs: Hungarian on IoU, then the centre gate."""
        from scipy.optimize import linear_sum_assignment

        if not len(boxes) or not self._tracks:
            return []
        predicted = np.stack([t.predicted for t in self._tracks])
        iou = iou_matrix(boxes, predicted)
        rows, cols = linear_sum_assignment(-iou)
        pairs = [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= self.iou_threshold]
        if self.center_gate <= 0:
            return pairs
        free_d = [d for d in range(len(boxes)) if d not in {p[0] for p in pairs}]
        free_t = [t for t in range(len(predicted)) if t not in {p[1] for p in pairs}]
        if not free_d or not free_t:
            return pairs
        dist = _center_distance(boxes[free_d], predicted[free_t])
        rows, cols = linear_sum_assignment(dist)
        pairs += [
            (free_d[r], free_t[c]) for r, c in zip(rows, cols) if dist[r, c] <= self.center_gate
        ]
        return pairs


def _center_distance(dets: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """float64 (N, M): distance between box centres over the detection's box side; 1e6
    (never within a gate) where the two box areas differ by more than 4x."""
    cd = (dets[:, :2] + dets[:, 2:]) / 2
    cp = (preds[:, :2] + preds[:, 2:]) / 2
    area_d = np.clip((dets[:, 2] - dets[:, 0]) * (dets[:, 3] - dets[:, 1]), 1e-6, None)
    area_p = np.clip((preds[:, 2] - preds[:, 0]) * (preds[:, 3] - preds[:, 1]), 1e-6, None)
    dist = np.linalg.norm(cd[:, None] - cp[None], axis=2) / np.sqrt(area_d)[:, None]
    ratio = area_d[:, None] / area_p[None, :]
    return np.where((ratio > 0.25) & (ratio < 4.0), dist, 1e6)
