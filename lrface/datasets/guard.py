"""Test-identity guard for training faces that carry no LFW names.

Unlabelled photos (and the numeric identities of RecordIO packs) cannot be checked by
name against the LFW test split, and web-crawled faces may show LFW test-split people
(celebrities).  So before training, every such face whose flip-fused teacher embedding
has cosine >= :data:`GUARD_THRESHOLD` with **any** image of an LFW test-split identity
(every image of the 2,195 identities of pairs folds 6-10, not only the paired ones) is
dropped, and the count is reported in the log and the run's card.

The threshold is chosen on the train split's own identities (never on the test split),
so that it catches same-identity faces with high recall; see :func:`calibrate` and run
``python -m lrface.datasets.guard`` to reproduce the figures below.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from itertools import combinations

import numpy as np

from ..detect import DEFAULT_DETECTOR
from ..models.embedder import l2_normalize
from .lfw import LFW, identity_of

log = logging.getLogger("lrface")

#: Cosine (flip-fused ``mobilefacenet-arcface`` embeddings) at or above which a face is
#: treated as a possible LFW test-split identity and dropped.  Chosen by
#: ``LRFACE_HOME=../shared python -m lrface.datasets.guard`` (SCRFD-2.5g alignment):
#: the 1st percentile of the cosines of all same-identity pairs of LFW train-split
#: identities, rounded down -- see THRESHOLD_NOTE for the figures.
GUARD_THRESHOLD = 0.0  # placeholder: set from the calibration below

THRESHOLD_NOTE = "placeholder"


@dataclasses.dataclass
class Reference:
    """Flip-fused teacher embeddings (M, D) float32 of LFW test-split images, with their
    relative paths."""

    paths: list[str]
    embeddings: np.ndarray


def test_split_images(lfw: LFW) -> list[str]:
    """Every image of every LFW test-split identity (6,311 for the full LFW)."""
    test = lfw.test_identities
    return [r for r in lfw.all_images if identity_of(r) in test]


def fused_embeddings(lfw: LFW, rels: list[str], teacher, detector: str = DEFAULT_DETECTOR):
    """Flip-fused teacher embeddings (N, D) of LFW images ``rels`` (aligned with the
    whole-LFW crop cache; teacher targets cached like a training source's)."""
    from ..distill.data import FaceSet, lfw_crops, teacher_targets

    crops = lfw_crops(lfw, rels, detector)
    faces = FaceSet(lfw.image_dir, list(rels), [identity_of(r) for r in rels], crops)
    plain, mirror = teacher_targets(faces, teacher, progress=True)
    return l2_normalize(plain + mirror)


def reference_embeddings(lfw: LFW, teacher, detector: str = DEFAULT_DETECTOR) -> Reference:
    """The guard's reference: every LFW test-split image, embedded by ``teacher``."""
    rels = test_split_images(lfw)
    return Reference(rels, fused_embeddings(lfw, rels, teacher, detector))


def nearest(emb: np.ndarray, ref: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``emb`` (N, D) unit vectors: the highest cosine with a row of
    ``ref`` (M, D) and that row's index -> float32 (N,), int64 (N,)."""
    best = np.full(len(emb), -1.0, np.float32)
    arg = np.zeros(len(emb), np.int64)
    for i in range(0, len(emb), chunk):
        sims = emb[i : i + chunk] @ ref.T
        arg[i : i + chunk] = sims.argmax(1)
        best[i : i + chunk] = sims.max(1)
    return best, arg


def calibrate(lfw: LFW, teacher, recall: float = 0.99, detector: str = DEFAULT_DETECTOR) -> dict:
    """Figures for choosing the guard threshold on the LFW **train** split.

    * ``threshold``: the ``1 - recall`` quantile of the cosines of all same-identity pairs
      of train-split identities (images without a detected face left out, as training
      does), rounded down to 0.01;
    * recall at that threshold on those pairs and on the 1,500 same pairs of folds 1-5;
      the share of folds 1-5 different pairs and of all train different-identity pairs
      at or above it (what the guard would wrongly call "the same person" per pair);
    * ``identity_recall``: share of train images (identity with >= 2 images) whose
      nearest other image of the same identity is at or above it (the guard compares
      with every image of every test identity, so this is the recall it acts with);
    * ``train_faces_dropped``: share of train images (none a test identity) that the
      guard would drop against the real test-split reference (its collateral rate).
    """
    from ..distill.data import lfw_faces

    train = lfw.train_images()
    got = lfw_faces(lfw, train, detector)
    ok = ~got["fallback"].astype(bool)
    rels = [r for r, k in zip(train, ok) if k]
    emb = fused_embeddings(lfw, rels, teacher, detector)  # the training source's cache
    ids = np.array([identity_of(r) for r in rels])
    index = {r: i for i, r in enumerate(rels)}

    same = []
    for name in np.unique(ids):
        rows = np.flatnonzero(ids == name)
        same += [float(emb[a] @ emb[b]) for a, b in combinations(rows, 2)]
    same_a = np.array(same)
    thr = float(np.floor(np.quantile(same_a, 1.0 - recall) * 100) / 100)

    def pair_cos(pairs):
        return np.array(
            [
                float(emb[index[p.a]] @ emb[index[p.b]])
                for p in pairs
                if p.a in index and p.b in index
            ]
        )

    val = lfw.split_pairs("val")
    val_same = pair_cos([p for p in val if p.same])
    val_diff = pair_cos([p for p in val if not p.same])
    sims = emb @ emb.T
    diff_mask = ids[:, None] != ids[None, :]
    diff_all = sims[np.triu(diff_mask, 1)]
    np.fill_diagonal(sims, -1.0)
    sims[diff_mask] = -1.0
    best_same = sims.max(1)
    multi = best_same > -1.0
    ref = reference_embeddings(lfw, teacher, detector)
    best_test, _ = nearest(emb, ref.embeddings)
    return {
        "threshold": thr,
        "recall_target": recall,
        "train_same_pairs": len(same_a),
        "recall_train_same_pairs": round(float((same_a >= thr).mean()), 4),
        "folds1_5_same_pairs": len(val_same),
        "recall_folds1_5_same_pairs": round(float((val_same >= thr).mean()), 4),
        "folds1_5_diff_pairs": len(val_diff),
        "diff_pairs_folds1_5_at_or_above": int((val_diff >= thr).sum()),
        "train_diff_pairs": len(diff_all),
        "train_diff_pairs_at_or_above_share": float((diff_all >= thr).mean()),
        "identity_recall": round(float((best_same[multi] >= thr).mean()), 4),
        "identity_recall_images": int(multi.sum()),
        "train_faces_checked": len(emb),
        "train_faces_dropped": int((best_test >= thr).sum()),
        "reference_images": len(ref.paths),
        "train_images_skipped_no_face": int((~ok).sum()),
    }


def main() -> None:  # pragma: no cover - a one-off calibration, figures in GUARD_THRESHOLD
    import argparse

    from ..models.loader import load_embedder
    from .lfw import LFW

    ap = argparse.ArgumentParser(description="calibrate the test-identity guard threshold")
    ap.add_argument("--lfw", default=None, help="LFW copy (default $LRFACE_HOME/data/lfw)")
    ap.add_argument("--teacher", default="mobilefacenet-arcface")
    ap.add_argument("--recall", type=float, default=0.99)
    a = ap.parse_args()
    import os
    from pathlib import Path

    lfw = LFW(a.lfw or Path(os.environ.get("LRFACE_HOME", "../shared")) / "data" / "lfw")
    teacher = load_embedder(a.teacher, flip=False)
    print(json.dumps(calibrate(lfw, teacher, a.recall), indent=1))


if __name__ == "__main__":  # pragma: no cover
    main()
