"""Verification scores: checked (score, label) pairs, the best threshold, k-fold accuracy.

Inputs are one similarity score per pair (higher = more likely the same person) and a 0/1
label (1 = same identity); a pair is predicted "same" when ``score >= threshold``.
:func:`best_threshold` picks the most accurate threshold (among equally accurate ones the
smallest wins); :func:`kfold_accuracy` follows the LFW protocol (threshold chosen on the
other folds).  The bottom floor of evaluation, shared by training's validator and card
(:mod:`lrface.distill`), search and :mod:`lrface.eval.metrics`.  Every invalid input raises
:class:`lrface.errors.LrfaceError` with a one-line message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lrface.errors import LrfaceError
from lrface.io.validation import is_int

__all__ = ["best_threshold", "check_ids", "check_pairs", "check_rates", "kfold_accuracy",
           "require_both_classes"]

#: Slack used when comparing rates multiplied by counts (``far * n_neg``) with integers.
COUNT_SLACK = 1e-9
#: Default-candidate thresholds extend this far below/above the lowest/highest score.
_END_MARGIN = 1.0


# --------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------


def check_pairs(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate pair scores/labels; return ``(float64 scores (N,), bool labels (N,))``."""
    s = np.asarray(scores)
    y = np.asarray(labels)
    if s.ndim != 1 or y.ndim != 1:
        raise LrfaceError(f"scores and labels must be 1-D, got shapes {s.shape} and {y.shape}")
    if s.shape[0] != y.shape[0]:
        raise LrfaceError(f"scores and labels differ in length: {s.shape[0]} vs {y.shape[0]}")
    if s.shape[0] == 0:
        raise LrfaceError("scores and labels are empty")
    if s.dtype.kind not in "biuf":
        raise LrfaceError(f"scores must be real numbers, got dtype {s.dtype}")
    s = s.astype(np.float64)
    if not np.all(np.isfinite(s)):
        raise LrfaceError("scores contain NaN or infinity")
    if y.dtype.kind == "b":
        return s, y
    if y.dtype.kind not in "iuf":
        raise LrfaceError(f"labels must be 0 or 1, got dtype {y.dtype}")
    bad = (y != 0) & (y != 1)
    if bad.any():
        raise LrfaceError(f"labels must be 0 or 1, found {y[bad][0]!r}")
    return s, y == 1


def require_both_classes(y: np.ndarray) -> None:
    if y.all() or not y.any():
        raise LrfaceError("need at least one same (1) and one different (0) pair")


def check_rates(rates: Sequence[float], name: str) -> list[float]:
    """Validate a sequence of rates in ``(0, 1]``; return them as python floats."""
    try:
        out = [float(r) for r in np.atleast_1d(np.asarray(rates, dtype=np.float64))]
    except (TypeError, ValueError):
        raise LrfaceError(f"{name} must be numbers in (0, 1], got {rates!r}") from None
    if not out:
        raise LrfaceError(f"{name} is empty")
    for r in out:
        if not 0.0 < r <= 1.0:
            raise LrfaceError(f"{name} values must be in (0, 1], got {r}")
    return out


def _check_grid(thresholds: np.ndarray) -> np.ndarray:
    """Validate a threshold grid; return it sorted, unique, float64."""
    t = np.asarray(thresholds)
    if t.ndim != 1 or t.shape[0] == 0:
        raise LrfaceError(f"thresholds must be a non-empty 1-D array, got shape {t.shape}")
    if t.dtype.kind not in "iuf" or not np.all(np.isfinite(t)):
        raise LrfaceError("thresholds must be finite real numbers")
    return np.unique(t.astype(np.float64))


def _fold_ids(folds: np.ndarray | int, n: int) -> np.ndarray:
    """Fold id per pair, shape (n,): from an int k (contiguous folds) or an id array."""
    if is_int(folds):
        k = int(folds)
        if not 2 <= k <= n:
            raise LrfaceError(f"number of folds must be between 2 and {n} (pairs), got {k}")
        sizes = np.full(k, n // k)
        sizes[: n % k] += 1
        return np.repeat(np.arange(k), sizes)
    f = np.asarray(folds)
    if f.ndim != 1 or f.shape[0] != n:
        raise LrfaceError(f"fold ids must be a 1-D array of length {n}, got shape {f.shape}")
    if f.dtype.kind not in "iu":
        raise LrfaceError(f"fold ids must be integers, got dtype {f.dtype}")
    if np.unique(f).size < 2:
        raise LrfaceError("fold ids must contain at least 2 distinct folds")
    return f


def check_ids(ids: np.ndarray, n: int, name: str) -> np.ndarray:
    """Validate identity labels: 1-D, length n, integers or strings."""
    a = np.asarray(ids)
    if a.ndim != 1 or a.shape[0] != n:
        raise LrfaceError(f"{name} must be a 1-D array of length {n}, got shape {a.shape}")
    if a.dtype.kind == "O":
        a = a.astype(str)
    if a.dtype.kind not in "iuUS":
        raise LrfaceError(f"{name} must be integers or strings, got dtype {a.dtype}")
    return a


# --------------------------------------------------------------------------------------
# verification
# --------------------------------------------------------------------------------------


def _candidate_thresholds(s: np.ndarray) -> np.ndarray:
    """Default thresholds for scores ``s``: midpoints of sorted unique scores plus ends.

    The ends are ``min - 1`` (everything "same") and ``max + 1`` (everything
    "different").  Returned sorted ascending, float64, length ``n_unique + 1``.
    """
    u = np.unique(s)
    lo, hi = u[:-1], u[1:]
    mid = (lo + hi) / 2.0
    # For adjacent floats the midpoint can round down onto ``lo``; ``hi`` gives the
    # same partition as the true midpoint under the ">=" rule.
    mid = np.where(mid > lo, mid, hi)
    return np.concatenate([[u[0] - _END_MARGIN], mid, [u[-1] + _END_MARGIN]])


def _n_correct(s: np.ndarray, y: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Number of correctly classified pairs at each threshold (int64, shape (T,))."""
    pos = np.sort(s[y])
    neg = np.sort(s[~y])
    tp = pos.size - np.searchsorted(pos, thresholds, side="left")  # positives >= t
    tn = np.searchsorted(neg, thresholds, side="left")  # negatives < t
    return tp + tn


def _select_threshold(s: np.ndarray, y: np.ndarray, grid: np.ndarray | None) -> tuple[float, float]:
    """Most accurate threshold (smallest on ties) over ``grid`` or default candidates."""
    cands = _candidate_thresholds(s) if grid is None else grid
    correct = _n_correct(s, y, cands)
    i = int(np.argmax(correct))  # first maximum = smallest threshold (cands ascending)
    return float(cands[i]), float(correct[i]) / s.size


def _accuracy(s: np.ndarray, y: np.ndarray, threshold: float) -> float:
    """Fraction of pairs with ``(s >= threshold) == y``."""
    return float(np.mean((s >= threshold) == y))


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Threshold maximising accuracy of the rule "same if ``score >= threshold``".

    Args:
        scores: (N,) real similarity scores, higher = more likely the same identity.
        labels: (N,) 0/1 (or bool), 1 = same identity.

    Returns:
        ``(threshold, accuracy)``.  The threshold is the midpoint between two adjacent
        distinct scores, or ``min(scores) - 1`` / ``max(scores) + 1`` when accepting or
        rejecting everything is best; among equally accurate thresholds the smallest is
        returned.  ``accuracy`` is a fraction in [0, 1].
    """
    s, y = check_pairs(scores, labels)
    return _select_threshold(s, y, None)


def _held_out_folds(
    s: np.ndarray, y: np.ndarray, ids: np.ndarray, grid: np.ndarray | None
) -> tuple[list[float], list[float]]:
    """``(thresholds, accuracies)``, one per fold in increasing id: the threshold chosen on
    the other folds and its accuracy on the fold.  ``s`` float64 (N,), ``y`` bool (N,),
    ``ids`` int (N,) fold ids, ``grid`` float64 (T,) candidates or None (midpoints)."""
    thrs: list[float] = []
    accs: list[float] = []
    for f in np.unique(ids):
        test = ids == f
        thr, _ = _select_threshold(s[~test], y[~test], grid)
        thrs.append(thr)
        accs.append(_accuracy(s[test], y[test], thr))
    return thrs, accs


def kfold_accuracy(
    scores: np.ndarray,
    labels: np.ndarray,
    folds: np.ndarray | int = 10,
    thresholds: np.ndarray | None = None,
) -> dict[str, Any]:
    """LFW-style k-fold verification accuracy.

    For each fold the threshold maximising accuracy on the *other* folds is chosen
    (see :func:`best_threshold` for candidates and the smallest-wins tie rule, or from
    the ``thresholds`` grid when given) and applied to the held-out fold.

    Args:
        scores: (N,) real similarity scores, higher = same.
        labels: (N,) 0/1 (or bool), 1 = same identity.
        folds: an int k >= 2 -> k contiguous folds in input order, as laid out in LFW
            ``pairs.txt`` (sizes differ by at most one; the first ``N % k`` folds get
            the extra pair, as ``sklearn.model_selection.KFold``); or an (N,) integer
            array of fold ids (at least 2 distinct), folds visited in increasing id.
        thresholds: optional (T,) grid of candidate thresholds used instead of the
            midpoints of the training scores.

    Returns:
        ``{"accuracy_mean": float, "accuracy_std": float (population std, ddof=0),
        "fold_accuracies": list[float], "thresholds": list[float] (one per fold),
        "best_threshold_all": float (most accurate threshold on all pairs)}``.
        Accuracies are fractions in [0, 1]; the mean is unweighted over folds.
    """
    s, y = check_pairs(scores, labels)
    ids = _fold_ids(folds, s.size)
    grid = None if thresholds is None else _check_grid(thresholds)
    thrs, accs = _held_out_folds(s, y, ids, grid)
    best_all, _ = _select_threshold(s, y, grid)
    return {
        "accuracy_mean": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)),
        "fold_accuracies": accs,
        "thresholds": thrs,
        "best_threshold_all": best_all,
    }
