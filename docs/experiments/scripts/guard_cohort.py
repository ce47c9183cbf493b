"""Round 2 of the guard study: cohort-normalised scores vs plain template cosines.

    LRFACE_HOME=../shared python docs/experiments/scripts/guard_cohort.py --sample LIST

(docs/experiments/guard-per-identity.md, round 2: the rule).  The LFW **train**
identities are split in halves by ``numpy.random.default_rng(0).permutation`` of their
sorted names: DEV (the first half) chooses each guard's threshold (the highest 0.005 step
with DEV leave-one-image-out recall >= 99 %); EVAL (the second half), the unlabelled
photos of ``--sample`` (round 1's 1,031 UTKFace photos) and the test-split identities (a
check) report it.  Guards: cohort size 0 (plain cosine, round 1's rule: the shipped
guard) and :data:`COHORT_K` (:func:`guard_scores`).  Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from lrface.models.embedder import l2_normalize  # noqa: E402

#: Cohort size of the normalised score (chosen on DEV, guard-per-identity.md round 2).
COHORT_K = 20


def _top_mean(sims: np.ndarray, k: int) -> np.ndarray:
    """Mean of the ``k`` (>= 1) highest values of each row of ``sims`` float32 (N, M),
    ``k <= M`` -> float32 (N,)."""
    return (-np.partition(-sims, k - 1, axis=1)[:, :k]).mean(1)


def template_cohort(templates: np.ndarray, k: int) -> np.ndarray:
    """For each unit row of ``templates`` float32 (M, D): the mean of its ``k`` highest
    cosines with the *other* rows -> float32 (M,) (zeros for ``k`` 0 or one row)."""
    k = min(k, len(templates) - 1)
    if k <= 0:
        return np.zeros(len(templates), np.float32)
    sims = templates @ templates.T
    np.fill_diagonal(sims, -np.inf)
    return _top_mean(sims, k).astype(np.float32)


def guard_scores(
    emb: np.ndarray, templates: np.ndarray, k: int, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """The guard's score of each face against its best template.

    ``emb`` (N, D) and ``templates`` (M, D): float32 unit rows.  The score of face x and
    template j is ``cos(x, t_j)`` minus the mean of the ``k`` highest ``cos(x, t_i)``,
    i != j (the face's cohort), minus the mean of the ``k`` highest ``cos(t_j, t_i)``,
    i != j (the template's cohort): faces close to many templates and templates close to
    many faces score lower.  ``k`` 0: the plain cosine.  Returns each face's highest
    score and its template's index -> float32 (N,), int64 (N,).
    """
    k = min(k, len(templates) - 1)
    cohort_t = template_cohort(templates, k)
    best = np.full(len(emb), -np.inf, np.float32)
    arg = np.zeros(len(emb), np.int64)
    for i in range(0, len(emb), chunk):
        sims = emb[i : i + chunk] @ templates.T
        score = sims - cohort_t[None, :]
        if k > 0:  # the face's cohort without j: j among its k best -> the (k+1)-th joins
            top = -np.sort(np.partition(-sims, k, axis=1)[:, : k + 1], axis=1)  # descending
            sum_k = top[:, :k].sum(1, keepdims=True)
            in_top = sims >= top[:, k - 1 : k]
            score -= np.where(in_top, sum_k - sims + top[:, k : k + 1], sum_k) / k
        arg[i : i + chunk] = score.argmax(1)
        best[i : i + chunk] = score.max(1)
    return best, arg


def recall_threshold(loo: np.ndarray, recall: float) -> float:
    """The highest step of a 0.005 grid at which at least ``recall`` of the
    leave-one-image-out scores ``loo`` float32 (K,) are at or above it."""
    steps = np.round(np.arange(-2.0, 2.0, 0.005), 3)
    return float(max(t for t in steps if (loo >= t).mean() >= recall))


def loo_scores(ids: np.ndarray, emb: np.ndarray, templates: np.ndarray, k: int) -> np.ndarray:
    """For each face (names ``ids`` (N,), unit embeddings ``emb`` float32 (N, D)) of an
    identity with >= 2 faces: the guard score (:func:`guard_scores`) of its own
    identity's template made of its *other* faces, that template joining the unit rows
    ``templates`` (M, D) (both cohorts taken over ``templates``) -> float32 (K,) (faces
    of single-face identities left out); ``k`` 0: the plain cosine."""
    uniq, inv, counts = np.unique(ids, return_inverse=True, return_counts=True)
    sums = np.zeros((len(uniq), emb.shape[1]), np.float64)
    np.add.at(sums, inv, emb.astype(np.float64))
    rows = np.flatnonzero(counts[inv] >= 2)
    others = l2_normalize((sums[inv[rows]] - emb[rows]).astype(np.float32))
    score = np.einsum("nd,nd->n", emb[rows], others).astype(np.float32)
    k = min(k, len(templates))
    if k > 0:
        score -= _top_mean(emb[rows] @ templates.T, k) + _top_mean(others @ templates.T, k)
    return score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", required=True, help="unlabelled photos (folder or .txt list)")
    a = ap.parse_args()
    from lrface.datasets.lfw import LFW, identity_of
    from lrface.datasets.sources import parse_source
    from lrface.distill import guard
    from lrface.distill.faces import load_source, teacher_targets
    from lrface.models.loader import load_embedder

    shared = Path(os.environ.get("LRFACE_HOME", REPO.parent / "shared"))
    lfw = LFW(shared / "data" / "lfw")
    teacher = load_embedder("mobilefacenet-arcface", flip=False)
    emb, fallback = guard.lfw_embeddings(lfw, lfw.all_images, teacher)
    ids = np.array([identity_of(r) for r in lfw.all_images])
    is_test = np.isin(ids, sorted(lfw.test_identities))
    names = np.array(sorted(set(ids[~is_test].tolist())))
    dev_names = names[np.random.default_rng(0).permutation(len(names))[: len(names) // 2]]
    is_dev = np.isin(ids, dev_names)
    rows = {
        "dev": np.flatnonzero(~is_test & is_dev & ~fallback),
        "eval": np.flatnonzero(~is_test & ~is_dev & ~fallback),
        "test": np.flatnonzero(is_test & ~fallback),
    }
    ref = guard.test_reference(teacher, lfw)
    part = load_source(parse_source(f"unlabelled:{a.sample}"), detector="scrfd-2.5g")
    sample = l2_normalize(np.add(*teacher_targets(part.faces, teacher, progress=False)))
    out: dict[str, object] = {
        "dev_identities": len(dev_names),
        "eval_identities": len(names) - len(dev_names),
        "faces": {k: len(v) for k, v in rows.items()},
        "sample_faces": len(sample),
    }
    for k in (0, COHORT_K):
        loo = {s: loo_scores(ids[r], emb[r], ref.templates, k) for s, r in rows.items()}
        thr = recall_threshold(loo["dev"], 0.99)
        dropped = {
            s: float((guard_scores(emb[rows[s]], ref.templates, k)[0] >= thr).mean())
            for s in ("dev", "eval")
        }
        sample_dropped = float((guard_scores(sample, ref.templates, k)[0] >= thr).mean())
        out[f"cohort_k={k}"] = {
            "threshold_dev": thr,
            "loo_images": {s: len(v) for s, v in loo.items()},
            "dev_recall": round(float((loo["dev"] >= thr).mean()), 4),
            "eval_recall": round(float((loo["eval"] >= thr).mean()), 4),
            "test_recall_check": round(float((loo["test"] >= thr).mean()), 4),
            "dev_dropped": round(dropped["dev"], 4),
            "eval_dropped": round(dropped["eval"], 4),
            "sample_dropped": round(sample_dropped, 4),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
