"""Evaluation metrics for face verification (pairs) and identification (probe vs gallery).

Verification
    Inputs are one similarity score per pair (higher = more likely the same person) and a
    0/1 label (1 = same identity).  A pair is predicted "same" when ``score >= threshold``.
    :func:`kfold_accuracy` follows the LFW protocol (threshold chosen on the other folds),
    :func:`roc`, :func:`eer` and :func:`tar_at_far` are threshold-free summaries and
    :func:`verification_report` bundles them into a JSON-serialisable dict.

Identification
    Inputs are L2-normalised embeddings, so the dot product is the cosine similarity.
    :func:`cosine_topk` is a block-wise exact top-k search; :func:`identification_report`
    gives closed-set CMC and mAP over mated probes and open-set DIR@FPIR using non-mated
    probes.  Neither ever builds the full ``P x G`` score matrix.  A probe is *mated*
    when its id occurs in the gallery ids, otherwise *non-mated*.  Gallery ids may repeat
    (several images per identity); gallery entries whose id no probe has are distractors
    and simply compete in every ranking.

    * CMC (mated probes): an identity's score is the max over its gallery images.  The
      rank of a probe is ``1 + #(other identities scoring >= the true identity)`` --
      ties count against the probe.  ``cmc[r]`` = fraction of mated probes with
      rank <= r.
    * mAP (mated probes): all gallery *images* ranked by score, relevant = images of the
      probe's identity; AP = mean over relevant images of precision at their position,
      with non-relevant images placed first inside a group of equal scores.
    * DIR@FPIR (open set): with ``n`` non-mated probes and ``m = floor(fpir * n)``, the
      threshold tau is the (m+1)-th highest non-mated top-1 score (``-inf`` if m = n);
      a probe is accepted when its top-1 score is strictly greater than tau, so at most
      m non-mated probes (FPIR <= fpir) are accepted.  DIR = fraction of mated probes
      with rank 1 and top-1 score > tau.  NaN (with a note) when ``m < 1`` (no or too
      few non-mated probes) or when there are no mated probes.

Tie rules (all deterministic, all documented where they apply):

* verification thresholds: among equally accurate thresholds the smallest one wins;
* :func:`cosine_topk`: equal scores are ordered by increasing gallery index;
* CMC rank: ties count against the probe (an identity scoring *equal* to the true one
  ranks ahead of it);
* mAP: within a group of equal scores the non-relevant entries are ranked first;
* DIR@FPIR: a mated probe is accepted only if its top-1 score is *strictly greater*
  than the threshold, so non-mated probes tied with the threshold count as rejected.

Every invalid input raises :class:`lrface.errors.LrfaceError` with a one-line message.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import auc as _sk_auc
from sklearn.metrics import roc_curve as _sk_roc_curve

from lrface.errors import LrfaceError
from lrface.io.validation import check_embeddings, check_positive_int, is_int

__all__ = [
    "best_threshold",
    "cmc_curve",
    "cosine_topk",
    "eer",
    "identification_report",
    "kfold_accuracy",
    "roc",
    "tar_at_far",
    "verification_report",
]

#: Slack used when comparing rates multiplied by counts (``far * n_neg``) with integers.
_COUNT_SLACK = 1e-9
#: Default-candidate thresholds extend this far below/above the lowest/highest score.
_END_MARGIN = 1.0
#: Working-memory budget of one probe block in :func:`identification_report`.
_ID_BLOCK_BUDGET_BYTES = 256 * 2**20


# --------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------


def _check_pairs(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _require_both_classes(y: np.ndarray) -> None:
    if y.all() or not y.any():
        raise LrfaceError("need at least one same (1) and one different (0) pair")


def _check_rates(rates: Sequence[float], name: str) -> list[float]:
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


def _check_ids(ids: np.ndarray, n: int, name: str) -> np.ndarray:
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
    s, y = _check_pairs(scores, labels)
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
    s, y = _check_pairs(scores, labels)
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


def _roc_points(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full (non-decimated) ROC: ``fpr, tpr, thresholds``, each (M,), fpr/tpr float64."""
    _require_both_classes(y)
    fpr, tpr, thr = _sk_roc_curve(y.astype(np.int8), s, pos_label=1, drop_intermediate=False)
    return fpr, tpr, thr


def roc(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Receiver operating characteristic of similarity scores.

    Args:
        scores: (N,) real similarity scores, higher = same.
        labels: (N,) 0/1 (or bool); both classes must be present.

    Returns:
        ``{"fpr": (M,) float64, "tpr": (M,) float64, "thresholds": (M,) float64,
        "auc": float}``.  One point per distinct score (no points dropped), ordered by
        decreasing threshold; the first point is ``(0, 0)`` at threshold ``+inf``.
        Tied scores of both classes form a diagonal segment, so the AUC counts
        positive/negative ties as one half (Mann-Whitney convention).
    """
    s, y = _check_pairs(scores, labels)
    fpr, tpr, thr = _roc_points(s, y)
    return {"fpr": fpr, "tpr": tpr, "thresholds": thr, "auc": float(_sk_auc(fpr, tpr))}


def _eer_from_roc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    d = fpr + tpr - 1.0  # FPR - FNR; non-decreasing from -1 to +1 along the curve
    i = int(np.argmax(d >= 0.0))
    if d[i] == 0.0:
        return float(fpr[i])
    t = -d[i - 1] / (d[i] - d[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate, a fraction in [0, 1].

    Found on the full ROC (see :func:`roc`): the first ROC segment where
    ``FPR - (1 - TPR)`` changes sign is linearly interpolated, and the FPR (= FNR) at
    the crossing is returned.  Both classes must be present.
    """
    s, y = _check_pairs(scores, labels)
    fpr, tpr, _ = _roc_points(s, y)
    return _eer_from_roc(fpr, tpr)


def _tar_from_roc(
    fpr: np.ndarray, tpr: np.ndarray, n_neg: int, fars: list[float]
) -> dict[float, float]:
    fp = np.rint(fpr * n_neg)  # exact false-positive counts
    out: dict[float, float] = {}
    for far in fars:
        allowed = far * n_neg
        if allowed < 1.0 - _COUNT_SLACK:
            out[far] = math.nan
        else:
            out[far] = float(tpr[fp <= allowed + _COUNT_SLACK].max())
    return out


def tar_at_far(
    scores: np.ndarray,
    labels: np.ndarray,
    fars: Sequence[float] = (1e-1, 1e-2, 1e-3),
) -> dict[float, float]:
    """True accept rate at given false accept rates, read exactly off the ROC.

    TAR@FAR is the largest TPR among ROC operating points whose FPR <= far, i.e.
    the best threshold that really achieves the FAR on these negatives (a step
    function: no interpolation between ROC points).

    Args:
        scores: (N,) real similarity scores, higher = same.
        labels: (N,) 0/1 (or bool); both classes must be present.
        fars: false accept rates, each in (0, 1].

    Returns:
        ``{far: tar}`` with float keys as given and TAR fractions in [0, 1].  When
        ``far < 1 / n_negatives`` the FAR cannot be resolved with this many negative
        pairs and the value is NaN.
    """
    s, y = _check_pairs(scores, labels)
    rates = _check_rates(fars, "fars")
    fpr, tpr, _ = _roc_points(s, y)
    return _tar_from_roc(fpr, tpr, int(np.count_nonzero(~y)), rates)


def verification_report(
    scores: np.ndarray,
    labels: np.ndarray,
    folds: np.ndarray | int = 10,
    fars: Sequence[float] = (1e-1, 1e-2, 1e-3),
) -> dict[str, Any]:
    """All verification metrics in one JSON-serialisable dict (python types only).

    Args: as :func:`kfold_accuracy` and :func:`tar_at_far`; both classes must be present.

    Returns:
        the :func:`kfold_accuracy` keys plus ``"n_pairs"``, ``"n_same"``, ``"n_diff"``
        (ints), ``"auc"``, ``"eer"`` (floats in [0, 1]), ``"tar_at_far"`` (``{far:
        tar}``, float keys that ``json`` writes as strings, NaN when unresolvable) and
        ``"notes"`` (list of one-line strings explaining any NaN).
    """
    s, y = _check_pairs(scores, labels)
    rates = _check_rates(fars, "fars")
    fpr, tpr, _ = _roc_points(s, y)
    n_neg = int(np.count_nonzero(~y))
    report: dict[str, Any] = {
        "n_pairs": int(s.size),
        "n_same": int(s.size - n_neg),
        "n_diff": n_neg,
    }
    report.update(kfold_accuracy(s, y, folds))
    report["auc"] = float(_sk_auc(fpr, tpr))
    report["eer"] = _eer_from_roc(fpr, tpr)
    report["tar_at_far"] = _tar_from_roc(fpr, tpr, n_neg, rates)
    report["notes"] = [
        f"TAR@FAR={far:g} is NaN: needs at least {math.ceil(1 / far - _COUNT_SLACK)} "
        f"different pairs, have {n_neg}"
        for far, tar in report["tar_at_far"].items()
        if math.isnan(tar)
    ]
    return report


# --------------------------------------------------------------------------------------
# identification
# --------------------------------------------------------------------------------------


def _block_topk(sc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-min(k, m) of each row of ``sc`` (n, m): (values, column indices), unsorted.

    Exact under the tie rule "equal scores -> smaller index first": rows where the
    k-th value is tied beyond the cut are redone with a stable sort.
    """
    n, m = sc.shape
    kk = min(k, m)
    if kk == m:
        return sc, np.broadcast_to(np.arange(m, dtype=np.int64), (n, m))
    part = np.argpartition(sc, m - kk, axis=1)[:, m - kk :].astype(np.int64)
    vals = np.take_along_axis(sc, part, axis=1)
    kth = vals.min(axis=1)
    tied = np.flatnonzero(np.count_nonzero(sc >= kth[:, None], axis=1) > kk)
    if tied.size:
        order = np.argsort(-sc[tied], axis=1, kind="stable")[:, :kk]
        part[tied] = order
        vals[tied] = np.take_along_axis(sc[tied], order, axis=1)
    return vals, part


def _merge_topk(
    s_a: np.ndarray, i_a: np.ndarray, s_b: np.ndarray, i_b: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge two candidate sets row-wise; keep the k best sorted (score desc, index asc)."""
    s = np.concatenate([s_a, s_b], axis=1)
    i = np.concatenate([i_a, i_b], axis=1)
    order = np.lexsort((i, -s), axis=-1)[:, :k]
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)


def cosine_topk(
    probes: np.ndarray, gallery: np.ndarray, k: int, block_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k cosine neighbours of each probe in the gallery, block by block.

    Args:
        probes: (P, D) float L2-normalised embeddings (row norms within ~0.5% of 1).
        gallery: (G, D) float L2-normalised embeddings.
        k: neighbours per probe, 1 <= k <= G.
        block_size: rows per probe block and per gallery block.  Peak extra memory is
            about ``block_size**2 * 16`` bytes (scores + partition indices; 256 MiB at
            the default) plus the (P, k) outputs; the P x G matrix is never built.

    Returns:
        ``(scores, indices)``: (P, k) float32 cosine similarities in [-1, 1] and (P, k)
        int64 gallery row indices, sorted by decreasing score; equal scores are ordered
        by increasing gallery index, so the result does not depend on ``block_size``.
    """
    p = check_embeddings(probes, "probes")
    g = check_embeddings(gallery, "gallery")
    if p.shape[1] != g.shape[1]:
        raise LrfaceError(f"probes have dimension {p.shape[1]}, gallery {g.shape[1]}")
    k = check_positive_int(k, "k")
    if k > g.shape[0]:
        raise LrfaceError(f"k={k} exceeds the gallery size {g.shape[0]}")
    bs = check_positive_int(block_size, "block_size")
    n_p, n_g = p.shape[0], g.shape[0]
    out_s = np.empty((n_p, k), dtype=np.float32)
    out_i = np.empty((n_p, k), dtype=np.int64)
    for p0 in range(0, n_p, bs):
        pb = p[p0 : p0 + bs]
        best_s = np.empty((pb.shape[0], 0), dtype=np.float32)
        best_i = np.empty((pb.shape[0], 0), dtype=np.int64)
        for g0 in range(0, n_g, bs):
            vals, idx = _block_topk(pb @ g[g0 : g0 + bs].T, k)
            best_s, best_i = _merge_topk(best_s, best_i, vals, idx + g0, k)
        out_s[p0 : p0 + bs] = best_s
        out_i[p0 : p0 + bs] = best_i
    return out_s, out_i


def _probe_codes(uniq: np.ndarray, probe_ids: np.ndarray) -> np.ndarray:
    """Index of each probe id in the sorted unique gallery ids, -1 if absent (int64, (P,))."""
    if (uniq.dtype.kind in "iu") != (probe_ids.dtype.kind in "iu"):
        raise LrfaceError("probe_ids and gallery_ids must both be integers or both strings")
    pos = np.minimum(np.searchsorted(uniq, probe_ids), uniq.size - 1)
    return np.where(uniq[pos] == probe_ids, pos, -1).astype(np.int64)


def _rows_per_block(n_gallery: int, n_ids: int, block_size: int) -> int:
    """Probe rows per block in :func:`identification_report` under the memory budget.

    One probe row needs about ``16 * G + 8 * n_ids`` bytes (scores, their id-sorted copy,
    the sorted copy for mAP, the mated-row copy, the per-identity maxima and a mask).
    """
    per_row = 16 * n_gallery + 8 * n_ids
    return max(1, min(block_size, _ID_BLOCK_BUDGET_BYTES // per_row))


def _average_precisions(
    sc: np.ndarray, codes: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """Average precision of each row of ``sc`` (n, G; gallery sorted by identity).

    Relevant entries of row r are columns ``starts[codes[r]]:ends[codes[r]]``.  With
    relevant scores sorted descending r_1 >= ... >= r_n, the j-th relevant entry sits at
    position ``#{non-relevant >= r_j} + j`` (ties: non-relevant first) and
    AP = mean_j(j / position_j).  Returns float64 (n,).
    """
    srt = np.sort(sc, axis=1)
    n_all = sc.shape[1]
    out = np.empty(sc.shape[0], dtype=np.float64)
    for r, c in enumerate(codes):
        rel_asc = np.sort(sc[r, starts[c] : ends[c]])
        rel = rel_asc[::-1]
        j = np.arange(1, rel.size + 1)
        n_ge = n_all - np.searchsorted(srt[r], rel, side="left")
        n_rel_ge = rel.size - np.searchsorted(rel_asc, rel, side="left")
        out[r] = np.mean(j / (n_ge - n_rel_ge + j))
    return out


def _score_probes(
    p: np.ndarray,
    g: np.ndarray,
    codes: np.ndarray,
    g_codes: np.ndarray,
    block_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per probe: rank of the true identity (0 if non-mated), top-1 score, AP (NaN if
    non-mated).  Works on probe blocks of (rows x G) scores, see :func:`_rows_per_block`.
    """
    order = None if np.all(g_codes[1:] >= g_codes[:-1]) else np.argsort(g_codes, kind="stable")
    sorted_codes = g_codes if order is None else g_codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    ends = np.r_[starts[1:], sorted_codes.size]
    n_p = p.shape[0]
    rank = np.zeros(n_p, dtype=np.int64)
    top1 = np.empty(n_p, dtype=np.float32)
    ap = np.full(n_p, np.nan)
    rows = _rows_per_block(g.shape[0], starts.size, block_size)
    for p0 in range(0, n_p, rows):
        sc = p[p0 : p0 + rows] @ g.T
        if order is not None:
            sc = np.take(sc, order, axis=1)
        id_max = np.maximum.reduceat(sc, starts, axis=1)  # (rows, n_ids)
        top1[p0 : p0 + rows] = id_max.max(axis=1)
        c = codes[p0 : p0 + rows]
        m = np.flatnonzero(c >= 0)
        if m.size == 0:
            continue
        true = id_max[m, c[m]]
        rank[p0 + m] = np.count_nonzero(id_max[m] >= true[:, None], axis=1)
        ap[p0 + m] = _average_precisions(sc[m], c[m], starts, ends)
    return rank, top1, ap


def _dir_at_fpir(
    rank: np.ndarray, top1: np.ndarray, mated: np.ndarray, fpirs: list[float]
) -> tuple[dict[float, float], dict[float, float], list[str]]:
    """DIR and threshold per FPIR (NaN when undefined) plus notes explaining NaNs."""
    nm = np.sort(top1[~mated])[::-1]  # non-mated top-1 scores, descending
    hit = rank[mated] == 1
    mated_top1 = top1[mated]
    dirs: dict[float, float] = {}
    taus: dict[float, float] = {}
    notes: list[str] = []
    for f in fpirs:
        n_alarms = math.floor(f * nm.size + _COUNT_SLACK)
        if nm.size == 0 or n_alarms < 1 or mated_top1.size == 0:
            dirs[f] = taus[f] = math.nan
            if nm.size == 0:
                notes.append(f"DIR@FPIR={f:g} is NaN: no non-mated probes")
            elif n_alarms < 1:
                need = math.ceil(1 / f - _COUNT_SLACK)
                notes.append(
                    f"DIR@FPIR={f:g} is NaN: needs at least {need} non-mated probes, have {nm.size}"
                )
            else:
                notes.append(f"DIR@FPIR={f:g} is NaN: no mated probes")
            continue
        tau = float(nm[n_alarms]) if n_alarms < nm.size else -math.inf
        taus[f] = tau
        dirs[f] = float(np.mean(hit & (mated_top1 > tau)))
    return dirs, taus, notes


def _check_probe_gallery(
    probe_emb: np.ndarray,
    probe_ids: np.ndarray,
    gallery_emb: np.ndarray,
    gallery_ids: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate the probe and gallery sides of :func:`identification_report`.

    Returns ``(probes, probe ids, gallery, gallery ids)``: float (P, D), (P,) ints or
    strings, float (G, D), (G,) of the same kind.
    """
    p = check_embeddings(probe_emb, "probe_emb")
    g = check_embeddings(gallery_emb, "gallery_emb")
    if p.shape[1] != g.shape[1]:
        raise LrfaceError(f"probe_emb has dimension {p.shape[1]}, gallery_emb {g.shape[1]}")
    pid = _check_ids(probe_ids, p.shape[0], "probe_ids")
    gid = _check_ids(gallery_ids, g.shape[0], "gallery_ids")
    return p, pid, g, gid


def _check_report_options(
    ranks: Sequence[int], fpirs: Sequence[float], block_size: int
) -> tuple[list[int], list[float], int]:
    """Validate the options of :func:`identification_report`: CMC ranks (positive ints, at
    least one), FPIRs in (0, 1] and the block size; return them as python numbers."""
    rank_list = [check_positive_int(r, "ranks") for r in ranks]
    if not rank_list:
        raise LrfaceError("ranks is empty")
    return rank_list, _check_rates(fpirs, "fpirs"), check_positive_int(block_size, "block_size")


def _cmc_and_map(
    rank: np.ndarray, ap: np.ndarray, mated: np.ndarray, ranks: list[int], n_ids: int
) -> dict[str, Any]:
    """``{"cmc", "cmc_full", "mAP"}`` of :func:`identification_report` from the per-probe
    ``rank`` (int64 (P,), 0 if non-mated), ``ap`` (float64 (P,)) and ``mated`` (bool (P,));
    ``n_ids`` gallery identities.  NaN when no probe is mated."""
    n_mated = int(np.count_nonzero(mated))
    max_rank = min(max(20, *ranks), n_ids)
    if not n_mated:
        return {
            "cmc": dict.fromkeys(ranks, math.nan),
            "cmc_full": [math.nan] * max_rank,
            "mAP": math.nan,
        }
    r_mated = rank[mated]
    counts = np.bincount(r_mated, minlength=max_rank + 1)[1 : max_rank + 1]
    return {
        "cmc": {r: float(np.mean(r_mated <= r)) for r in ranks},
        "cmc_full": (np.cumsum(counts) / n_mated).tolist(),
        "mAP": float(np.mean(ap[mated])),
    }


def identification_report(
    probe_emb: np.ndarray,
    probe_ids: np.ndarray,
    gallery_emb: np.ndarray,
    gallery_ids: np.ndarray,
    ranks: Sequence[int] = (1, 5, 10, 20),
    fpirs: Sequence[float] = (1e-2, 1e-1),
    block_size: int = 4096,
) -> dict[str, Any]:
    """Closed-set CMC and mAP plus open-set DIR@FPIR for a probe set against a gallery
    (definitions and tie rules: see the module docstring).

    Args:
        probe_emb, gallery_emb: (P, D) and (G, D) float L2-normalised embeddings.
        probe_ids, gallery_ids: (P,) and (G,) identities, both integers or both strings.
        ranks, fpirs: CMC ranks (positive ints) and false positive identification rates
            (each in (0, 1]) to report.
        block_size: maximum probes scored at once, fewer when a block would use over
            ~256 MiB: peak memory O(rows * (G + n_ids)), never P x G.

    Returns:
        JSON-serialisable dict (python types): ``n_probes``, ``n_mated``, ``n_nonmated``,
        ``n_gallery``, ``n_gallery_ids`` (ints); ``cmc`` ({rank: fraction}); ``cmc_full``
        (list, ranks 1..min(max(20, max(ranks)), n_gallery_ids)); ``mAP``; ``dir_at_fpir``
        and ``dir_thresholds`` ({fpir: value}); ``notes`` (one-line strings explaining
        NaNs).  Fractions in [0, 1]; CMC/mAP are NaN when no probe is mated.
    """
    p, pid, g, gid = _check_probe_gallery(probe_emb, probe_ids, gallery_emb, gallery_ids)
    rank_list, rates, bs = _check_report_options(ranks, fpirs, block_size)
    uniq, g_codes = np.unique(gid, return_inverse=True)
    codes = _probe_codes(uniq, pid)
    mated = codes >= 0
    rank, top1, ap = _score_probes(p, g, codes, g_codes.astype(np.int64), bs)
    n_mated = int(np.count_nonzero(mated))
    cmc_map = _cmc_and_map(rank, ap, mated, rank_list, int(uniq.size))
    dirs, taus, notes = _dir_at_fpir(rank, top1, mated, rates)
    if not n_mated:
        notes.insert(0, "CMC and mAP are NaN: no probe id occurs in the gallery")
    return {
        "n_probes": int(p.shape[0]),
        "n_mated": n_mated,
        "n_nonmated": int(p.shape[0] - n_mated),
        "n_gallery": int(g.shape[0]),
        "n_gallery_ids": int(uniq.size),
        **cmc_map,
        "dir_at_fpir": dirs,
        "dir_thresholds": taus,
        "notes": notes,
    }


def cmc_curve(report: dict[str, Any], max_rank: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """CMC curve from an :func:`identification_report` result, for plotting.

    Returns:
        ``(ranks, fractions)``: (R,) int64 ranks 1..R and (R,) float64 identification
        rates in [0, 1], with ``R = min(max_rank, number of gallery identities)``.
    """
    if "cmc_full" not in report:
        raise LrfaceError("report has no 'cmc_full' entry; pass an identification_report()")
    n = check_positive_int(max_rank, "max_rank")
    frac = np.asarray(report["cmc_full"], dtype=np.float64)[:n]
    return np.arange(1, frac.size + 1, dtype=np.int64), frac
