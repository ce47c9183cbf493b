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
from typing import TYPE_CHECKING, Any

import numpy as np

from ..detect import DEFAULT_DETECTOR
from ..models.embedder import l2_normalize
from .lfw import LFW, Pair, identity_of

if TYPE_CHECKING:
    from ..models.interface import Embedder

log = logging.getLogger("lrface")

#: Cosine (flip-fused ``mobilefacenet-arcface`` embeddings of SCRFD-2.5g aligned crops) at
#: or above which a face counts as a possible LFW test-split identity and is dropped.
#: Chosen by ``LRFACE_HOME=../shared python -m lrface.datasets.guard --sample DIR`` (DIR:
#: 500 UTKFace photos, every 47th file): the highest 0.01 step at which the identity recall
#: on the LFW **train** split is >= 99 % -- 99.09 % of 4,194 train images (identities with
#: >= 2 images) have another image of their own identity at cosine >= 0.40.  At 0.40:
#: pair recall 98.36 % (59,398 same-identity pairs of train identities), 96.07 % on the
#: 1,500 same pairs of folds 1-5; different-identity pairs at or above it: 0 of 1,500
#: (folds 1-5), 0.0116 % of 23.9 M (all train identities).  Because a face is compared with
#: all 6,311 test-split images, the guard also drops 36.2 % of LFW train faces (none a test
#: identity) and 34.4 % of the UTKFace sample: the price of 99 % recall (0.44: recall
#: 98.35 %, drops 10.5 % / 17.0 %; 0.50: 96.85 %, 1.5 % / 7.2 %).
GUARD_THRESHOLD = 0.40

THRESHOLD_NOTE = (
    "identity recall 99.09 % on LFW train-split identities (pair recall 98.36 %); drops "
    "36 % of LFW train faces and 34 % of a UTKFace sample (the cost of comparing with all "
    "6,311 test-split images); python -m lrface.datasets.guard"
)


@dataclasses.dataclass
class Reference:
    """Flip-fused teacher embeddings (M, D) float32 of LFW test-split images, with their
    relative paths."""

    paths: list[str]
    embeddings: np.ndarray


def test_split_images(lfw: LFW, extra: frozenset[str] = frozenset()) -> list[str]:
    """Every image of every LFW test-split identity (6,311 for the full LFW), and of the
    identities ``extra`` (those of held-out validation folds)."""
    names = lfw.test_identities | extra
    return [r for r in lfw.all_images if identity_of(r) in names]


def fused_embeddings(
    lfw: LFW, rels: list[str], teacher: Embedder, detector: str = DEFAULT_DETECTOR
) -> np.ndarray:
    """Flip-fused teacher embeddings (N, D) of LFW images ``rels`` (aligned with the
    whole-LFW crop cache; teacher targets cached like a training source's)."""
    from ..distill.data import FaceSet, lfw_crops, teacher_targets

    crops = lfw_crops(lfw, rels, detector)
    faces = FaceSet(lfw.image_dir, list(rels), [identity_of(r) for r in rels], crops)
    plain, mirror = teacher_targets(faces, teacher, progress=True)
    return l2_normalize(plain + mirror)


def reference_embeddings(
    lfw: LFW,
    teacher: Embedder,
    detector: str = DEFAULT_DETECTOR,
    extra: frozenset[str] = frozenset(),
) -> Reference:
    """The guard's reference: every LFW test-split image (plus every image of the
    identities ``extra``: a run with ``--holdout-folds`` keeps unlabelled look-alikes of
    its held-out validation identities out too), embedded by ``teacher``."""
    rels = test_split_images(lfw)
    emb = fused_embeddings(lfw, rels, teacher, detector)
    more = sorted(set(test_split_images(lfw, extra)) - set(rels))
    if more:  # cached on their own: the test-split part stays one shared cache file
        rels = rels + more
        emb = np.concatenate([emb, fused_embeddings(lfw, more, teacher, detector)])
    return Reference(rels, emb)


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


def calibrate(
    lfw: LFW,
    teacher: Embedder,
    recall: float = 0.99,
    detector: str = DEFAULT_DETECTOR,
    sample: str | None = None,
) -> dict[str, Any]:
    """Figures for choosing the guard threshold on the LFW **train** split (flip-fused
    teacher embeddings of SCRFD-aligned crops, as the guard uses).

    ``threshold``: the highest cosine on a 0.01 grid at which the **identity recall** is at
    least ``recall``: the share of train images (of identities with >= 2 images) whose
    nearest *other* image of the same identity has cosine >= t.  That is the recall the
    guard acts with -- it compares a face with every image of every test identity.  The
    result also gives, per threshold of a grid (``curve``): the pair recall over all
    same-identity pairs of train identities and over the 1,500 same pairs of folds 1-5,
    the different pairs of folds 1-5 and of all train identities at or above t, and
    ``train_dropped``: the share of train images (none a test identity) that the guard
    would drop against the real reference (its collateral rate on LFW-like faces).
    ``sample``: a folder of unlabelled photos whose share dropped is reported too.
    """
    rels, emb, no_face = _train_faces(lfw, teacher, detector)
    cos = _train_cosines(lfw, rels, emb)
    ref = reference_embeddings(lfw, teacher, detector)
    best_test, _ = nearest(emb, ref.embeddings)
    best_sample = _sample_nearest(sample, teacher, ref, detector) if sample else None
    steps = np.round(np.arange(-1.0, 1.0, 0.01), 2)
    thr = float(max([t for t in steps if (cos.best_same >= t).mean() >= recall]))
    curve = _curve(cos, best_test, best_sample, thr)
    return {
        "threshold": thr,
        "identity_recall_target": recall,
        "at_threshold": next(r for r in curve if r["t"] == thr),
        **cos.counts(),
        "train_faces_checked": len(emb),
        "train_images_skipped_no_face": no_face,
        "reference_images": len(ref.paths),
        "sample_faces": None if best_sample is None else len(best_sample),
        "curve": curve,
    }


def _train_faces(lfw: LFW, teacher: Embedder, detector: str) -> tuple[list[str], np.ndarray, int]:
    """The LFW train-split images in which ``detector`` finds a face, their flip-fused
    teacher embeddings float32 (N, D) (the training source's cache) and the number of
    train images skipped for no detection."""
    from ..distill.data import lfw_faces

    train = lfw.train_images()
    got = lfw_faces(lfw, train, detector)
    ok = ~got["fallback"].astype(bool)
    rels = [r for r, k in zip(train, ok) if k]
    emb = fused_embeddings(lfw, rels, teacher, detector)
    return rels, emb, int((~ok).sum())


@dataclasses.dataclass
class _TrainCosines:
    """Cosines between train-split embeddings, each a 1-D array: float64 for ``same``,
    ``val_same`` and ``val_diff``, float32 (the similarity matrix's) for the others."""

    same: np.ndarray  # every same-identity pair of train identities
    best_same: np.ndarray  # per image of an identity with >= 2: its nearest same-identity
    val_same: np.ndarray  # the same pairs of folds 1-5 (both images with a face)
    val_diff: np.ndarray  # the different pairs of folds 1-5
    diff_all: np.ndarray  # every different-identity pair of train images

    def counts(self) -> dict[str, int]:
        """The result's sample sizes, ``identity_recall_images`` ... ``train_diff_pairs``."""
        return {
            "identity_recall_images": len(self.best_same),
            "train_same_pairs": len(self.same),
            "folds1_5_same_pairs": len(self.val_same),
            "folds1_5_diff_pairs": len(self.val_diff),
            "train_diff_pairs": len(self.diff_all),
        }


def _train_cosines(lfw: LFW, rels: list[str], emb: np.ndarray) -> _TrainCosines:
    """The cosines of :class:`_TrainCosines` among the train images ``rels``, of
    embeddings ``emb`` float32 (N, D) unit rows."""
    ids = np.array([identity_of(r) for r in rels])
    index = {r: i for i, r in enumerate(rels)}
    same = []
    for name in np.unique(ids):
        rows = np.flatnonzero(ids == name)
        same += [float(emb[a] @ emb[b]) for a, b in combinations(rows, 2)]
    val = lfw.split_pairs("val")
    val_same = _pair_cosines([p for p in val if p.same], emb, index)
    val_diff = _pair_cosines([p for p in val if not p.same], emb, index)
    sims = emb @ emb.T
    diff_mask = ids[:, None] != ids[None, :]
    diff_all = sims[np.triu(diff_mask, 1)]
    np.fill_diagonal(sims, -1.0)
    sims[diff_mask] = -1.0
    best_same = sims.max(1)
    best_same = best_same[best_same > -1.0]
    return _TrainCosines(np.array(same), best_same, val_same, val_diff, diff_all)


def _pair_cosines(pairs: list[Pair], emb: np.ndarray, index: dict[str, int]) -> np.ndarray:
    """Cosines float64 (P,) of the ``pairs`` whose two images are rows of ``emb`` (N, D)
    (``index``: path -> row); pairs with an image missing are left out."""
    return np.array(
        [float(emb[index[p.a]] @ emb[index[p.b]]) for p in pairs if p.a in index and p.b in index]
    )


def _sample_nearest(sample: str, teacher: Embedder, ref: Reference, detector: str) -> np.ndarray:
    """For each face of the unlabelled photos in folder ``sample``: its highest cosine
    float32 (S,) with an image of the reference (flip-fused ``teacher`` embeddings)."""
    from ..distill.data import load_source, teacher_targets
    from .sources import parse_source

    part = load_source(parse_source(f"unlabelled:{sample}"), detector=detector)
    plain, mirror = teacher_targets(part.faces, teacher, progress=True)
    return nearest(l2_normalize(plain + mirror), ref.embeddings)[0]


def _curve(
    cos: _TrainCosines, best_test: np.ndarray, best_sample: np.ndarray | None, thr: float
) -> list[dict[str, Any]]:
    """The result's ``curve``: one row per threshold ``t`` of a 0.30-0.60 grid (step 0.02)
    plus ``thr``; ``best_test`` float32 (N,): each train face's nearest reference cosine,
    ``best_sample`` float32 (S,) the sample faces' (None: no sample)."""
    grid = np.round(np.arange(0.30, 0.605, 0.02), 2)
    curve = []
    for t in sorted({*grid.tolist(), thr}):
        row = {
            "t": t,
            "identity_recall": round(float((cos.best_same >= t).mean()), 4),
            "pair_recall": round(float((cos.same >= t).mean()), 4),
            "folds1_5_same_recall": round(float((cos.val_same >= t).mean()), 4),
            "folds1_5_diff_at_or_above": int((cos.val_diff >= t).sum()),
            "train_diff_pairs_at_or_above": round(float((cos.diff_all >= t).mean()), 6),
            "train_dropped": round(float((best_test >= t).mean()), 4),
        }
        if best_sample is not None:
            row["sample_dropped"] = round(float((best_sample >= t).mean()), 4)
        curve.append(row)
    return curve


def main() -> None:  # pragma: no cover - a one-off calibration, figures in GUARD_THRESHOLD
    import argparse

    from ..models.loader import load_embedder
    from .lfw import LFW

    ap = argparse.ArgumentParser(description="calibrate the test-identity guard threshold")
    ap.add_argument("--lfw", default=None, help="LFW copy (default $LRFACE_HOME/data/lfw)")
    ap.add_argument("--teacher", default="mobilefacenet-arcface")
    ap.add_argument("--recall", type=float, default=0.99, help="identity recall to reach")
    ap.add_argument("--sample", default=None, help="folder of unlabelled photos: drop rates")
    a = ap.parse_args()
    import os
    from pathlib import Path

    lfw = LFW(a.lfw or Path(os.environ.get("LRFACE_HOME", "../shared")) / "data" / "lfw")
    teacher = load_embedder(a.teacher, flip=False)
    res = calibrate(lfw, teacher, a.recall, sample=a.sample)
    curve = res.pop("curve")
    print(json.dumps(res, indent=1))
    keys = list(curve[0])
    print("\t".join(keys))
    for row in curve:
        print("\t".join(str(row[k]) for k in keys))


if __name__ == "__main__":  # pragma: no cover
    main()
