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
from lrface.io.validation import check_embeddings, check_positive_int
from lrface.scores import (
    COUNT_SLACK,
    best_threshold,
    check_ids,
    check_pairs,
    check_rates,
    kfold_accuracy,
    require_both_classes,
)
from lrface.search.exact import cosine_topk

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

#: Working-memory budget of one probe block in :func:`identification_report`.
_ID_BLOCK_BUDGET_BYTES = 256 * 2**20


def _roc_points(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full (non-decimated) ROC: ``fpr, tpr, thresholds``, each (M,), fpr/tpr float64."""
    require_both_classes(y)
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
    s, y = check_pairs(scores, labels)
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
    s, y = check_pairs(scores, labels)
    fpr, tpr, _ = _roc_points(s, y)
    return _eer_from_roc(fpr, tpr)


def _tar_from_roc(
    fpr: np.ndarray, tpr: np.ndarray, n_neg: int, fars: list[float]
) -> dict[float, float]:
    fp = np.rint(fpr * n_neg)  # exact false-positive counts
    out: dict[float, float] = {}
    for far in fars:
        allowed = far * n_neg
        if allowed < 1.0 - COUNT_SLACK:
            out[far] = math.nan
        else:
            out[far] = float(tpr[fp <= allowed + COUNT_SLACK].max())
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
    s, y = check_pairs(scores, labels)
    rates = check_rates(fars, "fars")
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
    s, y = check_pairs(scores, labels)
    rates = check_rates(fars, "fars")
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
        f"TAR@FAR={far:g} is NaN: needs at least {math.ceil(1 / far - COUNT_SLACK)} "
        f"different pairs, have {n_neg}"
        for far, tar in report["tar_at_far"].items()
        if math.isnan(tar)
    ]
    return report


# --------------------------------------------------------------------------------------
# identification
# --------------------------------------------------------------------------------------


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
        n_alarms = math.floor(f * nm.size + COUNT_SLACK)
        if nm.size == 0 or n_alarms < 1 or mated_top1.size == 0:
            dirs[f] = taus[f] = math.nan
            if nm.size == 0:
                notes.append(f"DIR@FPIR={f:g} is NaN: no non-mated probes")
            elif n_alarms < 1:
                need = math.ceil(1 / f - COUNT_SLACK)
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
    pid = check_ids(probe_ids, p.shape[0], "probe_ids")
    gid = check_ids(gallery_ids, g.shape[0], "gallery_ids")
    return p, pid, g, gid


def _check_report_options(
    ranks: Sequence[int], fpirs: Sequence[float], block_size: int
) -> tuple[list[int], list[float], int]:
    """Validate the options of :func:`identification_report`: CMC ranks (positive ints, at
    least one), FPIRs in (0, 1] and the block size; return them as python numbers."""
    rank_list = [check_positive_int(r, "ranks") for r in ranks]
    if not rank_list:
        raise LrfaceError("ranks is empty")
    return rank_list, check_rates(fpirs, "fpirs"), check_positive_int(block_size, "block_size")


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
