"""Tests for lrface.eval.metrics: hand-computed cases, brute-force cross-checks, errors."""

from __future__ import annotations

import itertools
import json
import math
import re

import numpy as np
import pytest
from sklearn.model_selection import KFold

from lrface.errors import LrfaceError
from lrface.eval import metrics
from lrface.eval.metrics import (
    best_threshold,
    cmc_curve,
    cosine_topk,
    eer,
    identification_report,
    kfold_accuracy,
    roc,
    tar_at_far,
    verification_report,
)

# --------------------------------------------------------------------------------------
# verification: hand-computed cases
# --------------------------------------------------------------------------------------

# Dyadic scores, so every midpoint is exact in binary floating point.
# fold 0 (pairs 0-2): 0.875(1) 0.375(1) 0.125(0)
# fold 1 (pairs 3-5): 0.75(1)  0.5(0)   0.25(0)
SIX_SCORES = np.array([0.875, 0.375, 0.125, 0.75, 0.5, 0.25])
SIX_LABELS = np.array([1, 1, 0, 1, 0, 0])


def test_best_threshold_hand() -> None:
    # Sorted: .125(0) .25(0) .375(1) .5(0) .75(1) .875(1); correct pairs per candidate:
    #   -0.875:3  0.1875:4  0.3125:5  0.4375:4  0.625:5  0.8125:4  1.875:3
    # 5/6 is reached at 0.3125 and 0.625 -> the smaller one wins.
    thr, acc = best_threshold(SIX_SCORES, SIX_LABELS)
    assert thr == 0.3125
    assert acc == pytest.approx(5 / 6)


def test_best_threshold_uses_ge_rule_and_ends() -> None:
    # All positives above all negatives: threshold between 0.25 and 0.5, accuracy 1.
    assert best_threshold(np.array([0.5, 0.25, 1.0]), np.array([1, 0, 1])) == (0.375, 1.0)
    # Only negatives: rejecting all (max + 1) is the only perfect threshold.
    assert best_threshold(np.array([0.5, 0.25]), np.array([0, 0])) == (1.5, 1.0)
    # Only positives: accepting all (min - 1) wins and is the smallest.
    assert best_threshold(np.array([0.5, 0.25]), np.array([1, 1])) == (-0.75, 1.0)


def test_best_threshold_adjacent_floats() -> None:
    # The float midpoint of 1 and the next float rounds back to 1; the threshold must
    # still separate the two scores.
    hi = np.nextafter(1.0, 2.0)
    thr, acc = best_threshold(np.array([1.0, hi]), np.array([0, 1]))
    assert acc == 1.0 and 1.0 < thr <= hi


def test_kfold_accuracy_hand() -> None:
    # Fold 0, trained on fold 1 (.25 .5 .75): candidates -0.75:1/3 0.375:2/3 0.625:3/3
    #   1.75:2/3 -> thr 0.625; on fold 0: .875 same ok, .375 diff WRONG, .125 ok -> 2/3.
    # Fold 1, trained on fold 0 (.125 .375 .875): -0.875:2/3 0.25:3/3 0.625:2/3
    #   1.875:1/3 -> thr 0.25; on fold 1: .75 ok, .5 same WRONG, .25 >= .25 same WRONG
    #   -> 1/3.
    # mean 0.5, population std |2/3 - 1/3| / 2 = 1/6; all pairs -> 0.3125 (see above).
    r = kfold_accuracy(SIX_SCORES, SIX_LABELS, folds=2)
    assert r["fold_accuracies"] == pytest.approx([2 / 3, 1 / 3])
    assert r["thresholds"] == [0.625, 0.25]
    assert r["accuracy_mean"] == pytest.approx(0.5)
    assert r["accuracy_std"] == pytest.approx(1 / 6)
    assert r["best_threshold_all"] == 0.3125
    assert set(r) == {
        "accuracy_mean",
        "accuracy_std",
        "fold_accuracies",
        "thresholds",
        "best_threshold_all",
    }


def test_kfold_accuracy_hand_grid() -> None:
    # Grid {0.3, 0.6}.  Fold 0 trained on fold 1: 0.3 -> 2/3, 0.6 -> 3/3 => 0.6;
    #   on fold 0 -> 2/3.  Fold 1 trained on fold 0: 0.3 -> 3/3, 0.6 -> 2/3 => 0.3;
    #   on fold 1: .75 ok, .5 WRONG, .25 ok -> 2/3.  All pairs: both 5/6 -> 0.3.
    r = kfold_accuracy(SIX_SCORES, SIX_LABELS, folds=2, thresholds=np.array([0.6, 0.3]))
    assert r["thresholds"] == [0.6, 0.3]
    assert r["fold_accuracies"] == pytest.approx([2 / 3, 2 / 3])
    assert r["accuracy_std"] == pytest.approx(0.0)
    assert r["best_threshold_all"] == 0.3


def test_kfold_fold_id_array_equals_int() -> None:
    by_int = kfold_accuracy(SIX_SCORES, SIX_LABELS, folds=2)
    by_ids = kfold_accuracy(SIX_SCORES, SIX_LABELS, folds=np.array([3, 3, 3, 7, 7, 7]))
    assert by_ids == by_int


def _brute_best(s: np.ndarray, y: np.ndarray, grid: list[float] | None = None) -> float:
    """Reference: loop over every candidate threshold, keep the first (smallest) best."""
    if grid is None:
        u = sorted(set(s.tolist()))
        cands = [u[0] - 1.0] + [(a + b) / 2 for a, b in itertools.pairwise(u)] + [u[-1] + 1.0]
    else:
        cands = sorted(set(grid))
    best_t, best_acc = math.nan, -1.0
    for t in cands:
        acc = float(np.mean((s >= t) == (y == 1)))
        if acc > best_acc:
            best_t, best_acc = t, acc
    return best_t


def _brute_kfold(
    s: np.ndarray, y: np.ndarray, fold_of: np.ndarray, grid: list[float] | None = None
) -> tuple[list[float], list[float]]:
    """Reference k-fold: per fold, the brute-force best threshold of the other folds."""
    accs, thrs = [], []
    for f in sorted(set(fold_of.tolist())):
        tr = fold_of != f
        t = _brute_best(s[tr], y[tr], grid)
        thrs.append(t)
        accs.append(float(np.mean((s[~tr] >= t) == (y[~tr] == 1))))
    return accs, thrs


@pytest.mark.parametrize("n,k", [(300, 10), (303, 10), (50, 7)])
def test_kfold_matches_bruteforce_contiguous(n: int, k: int) -> None:
    rng = np.random.default_rng(n + k)
    y = rng.integers(0, 2, n)
    s = np.round(rng.normal(size=n) + 1.2 * y, 1)  # rounding -> many tied scores
    fold_of = np.empty(n, dtype=int)
    for i, (_, test) in enumerate(KFold(n_splits=k, shuffle=False).split(s)):
        fold_of[test] = i
    accs, thrs = _brute_kfold(s, y, fold_of)
    r = kfold_accuracy(s, y, folds=k)
    assert r["thresholds"] == thrs
    assert r["fold_accuracies"] == pytest.approx(accs)
    assert r["accuracy_mean"] == pytest.approx(np.mean(accs))
    assert r["accuracy_std"] == pytest.approx(np.std(accs))
    assert r["best_threshold_all"] == _brute_best(s, y)
    assert best_threshold(s, y)[0] == _brute_best(s, y)


def test_kfold_matches_bruteforce_fold_ids_and_grid() -> None:
    rng = np.random.default_rng(1)
    n = 240
    y = rng.integers(0, 2, n)
    s = np.round(rng.normal(size=n) + y, 2)
    fold_of = rng.integers(0, 6, n)
    accs, thrs = _brute_kfold(s, y, fold_of)
    r = kfold_accuracy(s, y, folds=fold_of)
    assert r["thresholds"] == thrs
    assert r["fold_accuracies"] == pytest.approx(accs)
    grid = np.r_[np.linspace(-1.0, 2.0, 7), np.unique(s)[::3]]  # some equal to scores
    accs_g, thrs_g = _brute_kfold(s, y, fold_of, grid.tolist())
    r_g = kfold_accuracy(s, y, folds=fold_of, thresholds=grid)
    assert r_g["thresholds"] == thrs_g
    assert r_g["fold_accuracies"] == pytest.approx(accs_g)
    assert r_g["best_threshold_all"] == _brute_best(s, y, grid.tolist())


def test_roc_auc_hand() -> None:
    # pos .9 .7, neg .8 .6.  Points (fpr, tpr) at thr inf,.9,.8,.7,.6:
    # (0,0) (0,.5) (.5,.5) (.5,1) (1,1).  AUC = P(pos > neg) = 3 of 4 pairs = 0.75.
    r = roc(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0]))
    np.testing.assert_allclose(r["fpr"], [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(r["tpr"], [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(r["thresholds"][1:], [0.9, 0.8, 0.7, 0.6])
    assert r["auc"] == pytest.approx(0.75)


def test_roc_auc_ties_count_half() -> None:
    # pos {.5, .9}, neg {.5, .1}: pairs (.9,.5) (.9,.1) (.5,.1) won, (.5,.5) tie -> 3.5/4.
    assert roc(np.array([0.9, 0.5, 0.5, 0.1]), np.array([1, 1, 0, 0]))["auc"] == pytest.approx(
        0.875
    )


def test_eer_hand() -> None:
    # .9(1) .8(1) .7(0) .6(1) .5(0) .4(0): ROC passes through (1/3, 2/3) exactly,
    # where FPR = FNR = 1/3.
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    assert eer(s, np.array([1, 1, 0, 1, 0, 0])) == pytest.approx(1 / 3)
    # Symmetric with a pos/neg tie at .5: ROC (0,0) (0,.5) (.5,1) (1,1); FPR-FNR goes
    # -0.5 -> +0.5 on the diagonal segment, crossing at its middle: FPR = FNR = 0.25.
    assert eer(np.array([0.9, 0.5, 0.5, 0.1]), np.array([1, 1, 0, 0])) == pytest.approx(0.25)
    # Perfect separation -> 0; perfectly inverted -> 1.
    assert eer(np.array([0.9, 0.1]), np.array([1, 0])) == 0.0
    assert eer(np.array([0.1, 0.9]), np.array([1, 0])) == 1.0


def test_tar_at_far_hand() -> None:
    # negatives 0.0 .. 0.9 (10), positives .95 .85 .55 .05.
    # FAR .1 -> 1 false accept allowed: threshold .85 accepts neg .9 only, pos .95 .85
    #   -> TAR .5.   FAR .3 -> 3 allowed (.9 .8 .7): still .5 (next pos .55 < .6).
    # FAR .5 -> 5 allowed (.9 .. .5): pos .95 .85 .55 -> .75.   FAR 1 -> 1.
    # FAR .05 < 1/10 -> not resolvable with 10 negatives -> NaN.
    neg = np.arange(10) / 10
    pos = np.array([0.95, 0.85, 0.55, 0.05])
    s = np.r_[neg, pos]
    y = np.r_[np.zeros(10, int), np.ones(4, int)]
    r = tar_at_far(s, y, fars=(0.5, 0.3, 0.1, 0.05, 1.0))
    assert list(r) == [0.5, 0.3, 0.1, 0.05, 1.0]
    assert r[0.5] == pytest.approx(0.75)
    assert r[0.3] == pytest.approx(0.5)
    assert r[0.1] == pytest.approx(0.5)
    assert math.isnan(r[0.05])
    assert r[1.0] == 1.0


def _assert_plain_python(obj: object) -> None:
    """Only dict/list/str/bool/int/float (no numpy scalars or arrays) anywhere."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert type(k) in (str, int, float), type(k)
            _assert_plain_python(v)
    elif isinstance(obj, list):
        for v in obj:
            _assert_plain_python(v)
    else:
        assert type(obj) in (str, int, float, bool), type(obj)


def test_verification_report_json_and_consistent() -> None:
    rng = np.random.default_rng(7)
    y = np.r_[np.ones(150, int), np.zeros(150, int)]
    s = rng.normal(size=300) + 1.5 * y
    rep = verification_report(s, y, folds=10)
    _assert_plain_python(rep)
    json.loads(json.dumps(rep))
    assert rep["n_pairs"] == 300 and rep["n_same"] == 150 and rep["n_diff"] == 150
    assert rep["auc"] == pytest.approx(roc(s, y)["auc"])
    assert rep["eer"] == pytest.approx(eer(s, y))
    assert rep["accuracy_mean"] == pytest.approx(kfold_accuracy(s, y)["accuracy_mean"])
    tar = tar_at_far(s, y)
    assert rep["tar_at_far"][0.1] == pytest.approx(tar[0.1])
    assert rep["tar_at_far"][0.01] == pytest.approx(tar[0.01])
    # 150 negatives cannot resolve FAR 1e-3 -> NaN with an explanatory note.
    assert math.isnan(rep["tar_at_far"][0.001])
    assert len(rep["notes"]) == 1 and "1000" in rep["notes"][0]
    assert 0.7 < rep["auc"] < 1.0  # sanity: separable-ish data


@pytest.mark.parametrize(
    "call",
    [
        lambda: best_threshold(np.zeros(3), np.zeros(4)),
        lambda: kfold_accuracy(np.zeros(6), np.zeros(5)),
        lambda: roc(np.zeros(3), np.array([0, 1])),
        lambda: eer(np.zeros(2), np.array([0, 1, 1])),
        lambda: tar_at_far(np.zeros(2), np.array([0])),
        lambda: verification_report(np.zeros(4), np.zeros(3)),
        lambda: best_threshold(np.array([]), np.array([])),
        lambda: best_threshold(np.array([0.1, 0.2]), np.array([0, 2])),
        lambda: best_threshold(np.array([0.1, np.nan]), np.array([0, 1])),
        lambda: best_threshold(np.zeros((2, 2)), np.zeros((2, 2))),
        lambda: kfold_accuracy(SIX_SCORES, SIX_LABELS, folds=1),
        lambda: kfold_accuracy(SIX_SCORES, SIX_LABELS, folds=7),
        lambda: kfold_accuracy(SIX_SCORES, SIX_LABELS, folds=np.zeros(6, int)),
        lambda: kfold_accuracy(SIX_SCORES, SIX_LABELS, folds=np.array([0, 1, 0])),
        lambda: kfold_accuracy(SIX_SCORES, SIX_LABELS, thresholds=np.array([])),
        lambda: roc(np.array([0.1, 0.2]), np.array([1, 1])),
        lambda: tar_at_far(np.array([0.1, 0.2]), np.array([1, 0]), fars=(0.0,)),
        lambda: tar_at_far(np.array([0.1, 0.2]), np.array([1, 0]), fars=(1.5,)),
    ],
)
def test_verification_invalid_input(call) -> None:
    with pytest.raises(LrfaceError) as exc:
        call()
    assert "\n" not in str(exc.value)


# --------------------------------------------------------------------------------------
# identification
# --------------------------------------------------------------------------------------


def _unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("k", [1, 5, 53])
@pytest.mark.parametrize("block", [1, 7, 16, 53, 100])
def test_cosine_topk_matches_bruteforce(k: int, block: int) -> None:
    rng = np.random.default_rng(0)
    p = _unit_rows(rng, 37, 16)  # 37 and 53 are not multiples of 7 or 16
    g = _unit_rows(rng, 53, 16)
    s = p.astype(np.float64) @ g.T.astype(np.float64)
    want_i = np.argsort(-s, axis=1, kind="stable")[:, :k]
    got_s, got_i = cosine_topk(p, g, k, block_size=block)
    assert got_s.dtype == np.float32 and got_i.dtype == np.int64
    assert got_s.shape == got_i.shape == (37, k)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_s, np.take_along_axis(s, want_i, axis=1), atol=1e-6)


@pytest.mark.parametrize("block", [1, 4, 7, 30, 64])
def test_cosine_topk_ties_broken_by_index(block: int) -> None:
    # Entries +-0.5 in 4-D: unit norm and every dot product (-1, -.5, 0, .5, 1) is exact,
    # so there are many exact ties; they must come out in increasing gallery index.
    rng = np.random.default_rng(3)
    p = (rng.integers(0, 2, (11, 4)) - 0.5).astype(np.float32)
    g = (rng.integers(0, 2, (30, 4)) - 0.5).astype(np.float32)
    s = p @ g.T
    want_i = np.argsort(-s, axis=1, kind="stable")[:, :7]
    got_s, got_i = cosine_topk(p, g, 7, block_size=block)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_array_equal(got_s, np.take_along_axis(s, want_i, axis=1))


@pytest.mark.parametrize(
    "call",
    [
        lambda: cosine_topk(np.eye(2, 3, dtype=np.float32), np.eye(2, dtype=np.float32), 1),
        lambda: cosine_topk(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32), 3),
        lambda: cosine_topk(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32), 0),
        lambda: cosine_topk(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32), 1, 0),
        lambda: cosine_topk(2 * np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32), 1),
        lambda: cosine_topk(np.zeros((0, 2), np.float32), np.eye(2, dtype=np.float32), 1),
        lambda: cosine_topk(np.full((1, 1), np.nan, np.float32), np.eye(1, dtype=np.float32), 1),
    ],
)
def test_cosine_topk_invalid_input(call) -> None:
    with pytest.raises(LrfaceError):
        call()


# Gallery: standard basis vectors, so a probe's score against gallery row j is simply
# its component along that basis vector (exact in float32).
#   row 0 = e0 id 1 | row 1 = e3 id 9 (distractor) | row 2 = e2 id 2 | row 3 = e1 id 1
GAL = np.eye(4, dtype=np.float32)[[0, 3, 2, 1]]
GAL_IDS = np.array([1, 9, 2, 1])


def test_identification_hand() -> None:
    # p0 id 1 = (.4 .2 .8 .4): id scores 1:max(.4,.2)=.4  2:.8  9:.4 -> id 2 beats it and
    #   the distractor ties it; ties count against -> rank 3.
    #   AP: images by score e2 .8 | e0 .4 (rel), e3 .4 (tie, non-relevant first) | e1 .2
    #   (rel): relevant at positions 3 and 4 -> (1/3 + 2/4) / 2 = 5/12.
    # p1 id 2 = (.2 .4 .8 .4): id 2 top with .8 -> rank 1, AP 1.
    # p2 id 7 = (.6 0 0 .8): not in the gallery -> non-mated, top-1 score .8.
    # CMC: ranks {3, 1} -> r1 .5, r2 .5, r3 1, r5 1; mAP (5/12 + 1) / 2 = 17/24.
    # FPIR .1 needs >= 10 non-mated probes -> NaN; FPIR 1 -> tau -inf -> DIR = r1 = .5.
    probes = np.array(
        [[0.4, 0.2, 0.8, 0.4], [0.2, 0.4, 0.8, 0.4], [0.6, 0.0, 0.0, 0.8]], np.float32
    )
    rep = identification_report(
        probes, np.array([1, 2, 7]), GAL, GAL_IDS, ranks=(1, 2, 3, 5), fpirs=(0.1, 1.0)
    )
    assert (rep["n_probes"], rep["n_mated"], rep["n_nonmated"]) == (3, 2, 1)
    assert (rep["n_gallery"], rep["n_gallery_ids"]) == (4, 3)
    assert rep["cmc"] == pytest.approx({1: 0.5, 2: 0.5, 3: 1.0, 5: 1.0})
    assert rep["cmc_full"] == pytest.approx([0.5, 0.5, 1.0])  # capped at 3 identities
    assert rep["mAP"] == pytest.approx(17 / 24)
    assert math.isnan(rep["dir_at_fpir"][0.1])
    assert math.isnan(rep["dir_thresholds"][0.1])
    assert rep["dir_at_fpir"][1.0] == pytest.approx(0.5)
    assert rep["dir_thresholds"][1.0] == -math.inf
    assert len(rep["notes"]) == 1 and "10 non-mated" in rep["notes"][0]
    _assert_plain_python(rep)
    json.dumps(rep)
    # String ids give the same result.
    rep_s = identification_report(
        probes,
        np.array(["a", "b", "z"]),
        GAL,
        np.array(["a", "x", "b", "a"]),
        ranks=(1, 2, 3, 5),
        fpirs=(0.1, 1.0),
    )
    assert rep_s["cmc"] == rep["cmc"] and rep_s["mAP"] == rep["mAP"]


def test_identification_relevant_ties() -> None:
    # id 1 probe (.5 .5 .7 .1): images e2 .7 | e0 .5, e1 .5 (both relevant) | e3 .1.
    # Relevant at positions 2, 3 -> AP (1/2 + 2/3) / 2 = 7/12; identity 2 beats it -> rank 2.
    rep = identification_report(
        np.array([[0.5, 0.5, 0.7, 0.1]], np.float32), np.array([1]), GAL, GAL_IDS
    )
    assert rep["mAP"] == pytest.approx(7 / 12)
    assert rep["cmc"] == pytest.approx({1: 0.0, 5: 1.0, 10: 1.0, 20: 1.0})
    assert rep["n_nonmated"] == 0
    assert all(math.isnan(v) for v in rep["dir_at_fpir"].values())
    assert rep["notes"] and all("no non-mated" in n for n in rep["notes"])


def test_dir_at_fpir_hand() -> None:
    # Gallery e0..e3 with ids 0..3.
    # Non-mated top-1 scores: .5 (.5 .5 .5 .5), .7 (.1 .7 .7 .1), .8 (.2 .4 .8 .4),
    #   .96 (.28 .96 0 0); descending .96 .8 .7 .5.
    # Mated: q0 id0 (.96 .28 0 0) rank 1, top-1 .96 | q1 id1 (.1 .7 .7 .1) tie with id2
    #   -> rank 2 | q2 id2 (.4 .2 .8 .4) rank 1, .8 | q3 id3 (.5 .5 .1 .7) rank 1, .7.
    # FPIR .25: m = 1 false alarm -> tau = 2nd highest = .8; accept > .8: q0 -> 1/4.
    # FPIR .5 : m = 2 -> tau = .7; q0, q2 (q3 .7 is not > .7) -> 2/4.
    # FPIR 1  : tau = -inf -> all rank-1 hits q0 q2 q3 -> 3/4.
    # FPIR .1 : .1 * 4 < 1 -> NaN.
    g = np.eye(4, dtype=np.float32)
    probes = np.array(
        [
            [0.5, 0.5, 0.5, 0.5],
            [0.1, 0.7, 0.7, 0.1],
            [0.2, 0.4, 0.8, 0.4],
            [0.28, 0.96, 0.0, 0.0],
            [0.96, 0.28, 0.0, 0.0],
            [0.1, 0.7, 0.7, 0.1],
            [0.4, 0.2, 0.8, 0.4],
            [0.5, 0.5, 0.1, 0.7],
        ],
        np.float32,
    )
    pid = np.array([100, 101, 102, 103, 0, 1, 2, 3])
    rep = identification_report(probes, pid, g, np.arange(4), fpirs=(0.1, 0.25, 0.5, 1.0))
    d, t = rep["dir_at_fpir"], rep["dir_thresholds"]
    assert math.isnan(d[0.1])
    assert d[0.25] == pytest.approx(0.25) and t[0.25] == pytest.approx(0.8)
    assert d[0.5] == pytest.approx(0.5) and t[0.5] == pytest.approx(0.7)
    assert d[1.0] == pytest.approx(0.75) and t[1.0] == -math.inf
    assert rep["cmc"][1] == pytest.approx(0.75)


def _brute_identification(
    p: np.ndarray, pid: np.ndarray, g: np.ndarray, gid: np.ndarray, fpirs: list[float]
) -> dict:
    """Reference on the full P x G matrix with plain loops."""
    s = p @ g.T
    uniq = sorted(set(gid.tolist()))
    ranks, aps, hits, top1s, nm_top1 = [], [], [], [], []
    for i in range(len(p)):
        id_score = {u: s[i, gid == u].max() for u in uniq}
        top1 = max(id_score.values())
        if pid[i] not in id_score:
            nm_top1.append(top1)
            continue
        true = id_score[pid[i]]
        rank = sum(v >= true for v in id_score.values())
        rel = gid == pid[i]
        order = np.lexsort((rel, -s[i]))  # score desc, non-relevant first on ties
        positions = np.flatnonzero(rel[order]) + 1
        aps.append(np.mean(np.arange(1, len(positions) + 1) / positions))
        ranks.append(rank)
        hits.append(rank == 1)
        top1s.append(top1)
    ranks_a, hits_a, top1_a = np.array(ranks), np.array(hits), np.array(top1s)
    dirs = {}
    for f in fpirs:
        m = math.floor(f * len(nm_top1) + 1e-9)
        cands = sorted([-math.inf, *nm_top1])
        tau = next(c for c in cands if sum(x > c for x in nm_top1) <= m)
        dirs[f] = float(np.mean(hits_a & (top1_a > tau)))
    return {
        "cmc": {r: float(np.mean(ranks_a <= r)) for r in (1, 5, 10, 20)},
        "mAP": float(np.mean(aps)),
        "dir": dirs,
    }


@pytest.mark.parametrize("block", [1, 5, 4096])
def test_identification_matches_bruteforce(block: int) -> None:
    rng = np.random.default_rng(11)
    d = 8
    centers = _unit_rows(rng, 40, d)
    gid = np.r_[rng.integers(0, 25, 50), np.arange(30, 40)]  # 30..39: distractors
    g = centers[gid] + 0.6 * rng.normal(size=(60, d)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    mated_ids = rng.choice(np.unique(gid[:50]), 30)
    pid = np.r_[mated_ids, np.arange(100, 120)]  # 20 non-mated probes
    p = np.r_[centers[mated_ids], _unit_rows(rng, 20, d)]
    p = p + 0.6 * rng.normal(size=p.shape).astype(np.float32)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    want = _brute_identification(p, pid, g, gid, [0.05, 0.1, 0.5])
    rep = identification_report(p, pid, g, gid, fpirs=(0.05, 0.1, 0.5), block_size=block)
    assert (rep["n_mated"], rep["n_nonmated"]) == (30, 20)
    assert rep["cmc"] == pytest.approx(want["cmc"])
    assert rep["mAP"] == pytest.approx(want["mAP"])
    assert rep["dir_at_fpir"] == pytest.approx(want["dir"])
    assert 0.0 < rep["cmc"][1] < 1.0  # the data exercise both hits and misses
    ranks, frac = cmc_curve(rep)
    np.testing.assert_array_equal(ranks, np.arange(1, 21))
    assert frac[[0, 4, 9, 19]] == pytest.approx([want["cmc"][r] for r in (1, 5, 10, 20)])
    assert np.all(np.diff(frac) >= 0)


def test_cmc_curve_caps_rank() -> None:
    rep = identification_report(
        np.array([[0.5, 0.5, 0.7, 0.1]], np.float32), np.array([1]), GAL, GAL_IDS
    )
    ranks, frac = cmc_curve(rep)  # only 3 identities
    np.testing.assert_array_equal(ranks, [1, 2, 3])
    np.testing.assert_allclose(frac, [0.0, 1.0, 1.0])
    assert cmc_curve(rep, max_rank=2)[1].tolist() == [0.0, 1.0]
    with pytest.raises(LrfaceError):
        cmc_curve({"cmc": {}})


def test_identification_memory_bound() -> None:
    # G = 200,000 gallery entries: one probe block stays far below 1 GiB.
    rows = metrics._rows_per_block(200_000, 20_000, 4096)
    assert 16 <= rows <= 4096
    assert rows * (16 * 200_000 + 8 * 20_000) <= 2**30 // 2


@pytest.mark.parametrize(
    "call",
    [
        lambda: identification_report(GAL, np.array([1, 2, 3]), GAL, GAL_IDS),
        lambda: identification_report(GAL, np.arange(4), GAL, GAL_IDS[:3]),
        lambda: identification_report(GAL[:, :3], np.arange(4), GAL, GAL_IDS),
        lambda: identification_report(GAL * 3, np.arange(4), GAL, GAL_IDS),
        lambda: identification_report(GAL, np.array(list("abcd")), GAL, GAL_IDS),
        lambda: identification_report(GAL, np.arange(4), GAL, GAL_IDS, ranks=(0,)),
        lambda: identification_report(GAL, np.arange(4), GAL, GAL_IDS, fpirs=(2.0,)),
    ],
)
def test_identification_invalid_input(call) -> None:
    with pytest.raises(LrfaceError):
        call()


_UNIT = np.eye(3, 8, dtype=np.float32)  # three unit rows, D = 8


def _nan_row(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[1, 2] = np.nan
    return x


@pytest.mark.parametrize(
    "bad, needle",
    [
        (_UNIT.astype(np.int32), "must be floating point, got dtype int32"),
        (_UNIT[None], "must be"),
        (_nan_row(_UNIT), "row 1 holds NaN or infinite values"),
        (2 * _UNIT, "row 0 is not L2-normalised (norm 2)"),
    ],
)
def test_one_embedding_validator_everywhere(bad, needle) -> None:
    """Metrics, search and galleries refuse bad embeddings with the same message (one
    validator, lrface.io.validation.check_embeddings); a gallery also names its model."""
    from lrface.search.exact import search
    from lrface.search.gallery import FlatGallery

    gallery = FlatGallery("model-x", None, 8)
    gallery.add("ann", _UNIT, ["a", "b", "c"])
    calls = [
        lambda: identification_report(bad, np.arange(len(bad)), _UNIT, np.arange(3)),
        lambda: search(bad, _UNIT, 1),
        lambda: gallery.add("bob", bad, ["x"] * len(bad)),
        lambda: gallery.search(bad),
    ]
    for call in calls:
        with pytest.raises(LrfaceError, match=re.escape(needle)):
            call()
    with pytest.raises(LrfaceError, match=r"dimension 4, but model model-x gives 8; embed with"):
        gallery.search(np.eye(2, 4, dtype=np.float32))
