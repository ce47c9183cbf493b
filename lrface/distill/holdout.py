"""Identities of a labelled folder held out of training to calibrate the run's thresholds.

A run on a user's labelled folder (``ROOT/<identity>/<images>``) without an LFW source
has no LFW pairs to calibrate ``verify``'s threshold on.  So before training, a seeded
choice of the folder's identities with >= 2 usable faces is set aside
(:func:`hold_out`); their faces never reach training.  At the end of the run
(:mod:`lrface.distill.card`) the student's threshold and ``threshold_vs_teacher`` are
calibrated on pairs of those faces (:meth:`HeldOut.pairs`): every same-identity pair and
a seeded sample of different-identity pairs, the same pairs counted as often as needed to
weigh as much as the different ones (balanced accuracy).
"""

from __future__ import annotations

import dataclasses
from itertools import combinations

import numpy as np

#: Share of the eligible identities (>= 2 faces) held out when ``--calib-identities`` is
#: left at its default, with at least :data:`MIN_HELD` and at most :data:`MAX_HELD`.
HELD_SHARE = 0.2
MIN_HELD = 2
MAX_HELD = 100
#: Identities that must stay for training besides the held-out ones.
MIN_TRAIN_IDENTITIES = 2
#: Different-identity pairs drawn at most.
MAX_DIFF_PAIRS = 5000


@dataclasses.dataclass
class CalibrationPairs:
    """Face pairs to calibrate a threshold on, as indices into the faces: ``crops``
    (K, 112, 112, 3) uint8 BGR aligned crops (each face once), ``a``, ``b`` int64 (P,)
    the rows of each pair's faces, ``hr`` float32 (P, D) the teacher's flip-fused
    embedding of each pair's first face, ``labels`` int64 (P,) 1 = same identity,
    ``description`` (for the card).  ``crops_a``/``crops_b`` (P, 112, 112, 3): the pairs'
    crops, as :class:`lrface.distill.validate.Validator` has them."""

    crops: np.ndarray
    a: np.ndarray
    b: np.ndarray
    hr: np.ndarray
    labels: np.ndarray
    description: str

    @property
    def crops_a(self) -> np.ndarray:
        return self.crops[self.a]

    @property
    def crops_b(self) -> np.ndarray:
        return self.crops[self.b]


@dataclasses.dataclass
class HeldOut:
    """The held-out faces: ``names`` (K,) identity of each, ``crops`` (K, 112, 112, 3)
    uint8 BGR, ``fused`` float32 (K, D) teacher flip-fused embeddings; ``identities``
    the held-out identity names (sorted), ``eligible`` how many identities could have
    been chosen, ``seed`` the seed of the choice and of the pair sample."""

    names: np.ndarray
    crops: np.ndarray
    fused: np.ndarray
    identities: list[str]
    eligible: int
    seed: int

    def card(self) -> dict[str, object]:
        """The card's ``calibration_holdout`` entry."""
        same, diff = self.pair_counts()
        return {
            "identities": self.identities,
            "faces": len(self.names),
            "eligible_identities": self.eligible,
            "seed": self.seed,
            "same_pairs": same,
            "different_pairs": diff,
            "note": "identities of the labelled data held out of training (seeded choice "
            "among those with >= 2 usable faces); thresholds calibrated on their pairs",
        }

    def _pair_index(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """``(same pairs, different pairs)`` as row-index pairs; different pairs a seeded
        sample of at most :data:`MAX_DIFF_PAIRS`."""
        same = []
        for name in self.identities:
            rows = np.flatnonzero(self.names == name).tolist()
            same += list(combinations(rows, 2))
        rng = np.random.default_rng([self.seed, 1])
        return same, _different_pairs(self.names, rng)

    def pair_counts(self) -> tuple[int, int]:
        same, diff = self._pair_index()
        return len(same), len(diff)

    def pairs(self) -> CalibrationPairs:
        """Every same pair (repeated ``round(different / same)`` times: balanced) and the
        different pairs, as :class:`CalibrationPairs`."""
        same, diff = self._pair_index()
        rep = max(1, round(len(diff) / max(1, len(same))))
        idx = same * rep + diff
        a = np.array([i for i, _ in idx], np.int64)
        b = np.array([j for _, j in idx], np.int64)
        labels = np.array([1] * (len(same) * rep) + [0] * len(diff), np.int64)
        return CalibrationPairs(
            self.crops,
            a,
            b,
            self.fused[a],
            labels,
            f"{len(same)} same (weighted x{rep}) and {len(diff)} different pairs of "
            f"{len(self.identities)} identities held out of training (seed {self.seed})",
        )


def held_count(eligible: int, requested: int | None) -> int:
    """How many of ``eligible`` identities to hold out: ``requested``, or by default
    :data:`HELD_SHARE` of them within [:data:`MIN_HELD`, :data:`MAX_HELD`]; 0 when too
    few would stay for training."""
    if requested is not None:
        return requested if eligible - requested >= MIN_TRAIN_IDENTITIES else 0
    n = min(MAX_HELD, max(MIN_HELD, round(HELD_SHARE * eligible)))
    return n if eligible - n >= MIN_TRAIN_IDENTITIES else 0


def choose(identities: list[str], counts: list[int], requested: int | None, seed: int) -> list[str]:
    """The held-out identities among ``identities`` (with ``counts`` usable faces each):
    a seeded choice of :func:`held_count` among those with >= 2 faces, sorted."""
    eligible = sorted(i for i, c in zip(identities, counts) if c >= 2)
    n = held_count(len(eligible), requested)
    if n == 0:
        return []
    rng = np.random.default_rng([seed, 0])
    return sorted(eligible[i] for i in rng.choice(len(eligible), n, replace=False))


def _different_pairs(names: np.ndarray, rng: np.random.Generator) -> list[tuple[int, int]]:
    """At most :data:`MAX_DIFF_PAIRS` distinct row pairs ``(a, b)``, ``a < b``, of
    different ``names`` (K,): all of them when there are few, else a random draw."""
    n = len(names)
    if n * (n - 1) // 2 <= 4 * MAX_DIFF_PAIRS:
        pairs = [(a, b) for a, b in combinations(range(n), 2) if names[a] != names[b]]
        if len(pairs) > MAX_DIFF_PAIRS:
            pick = np.sort(rng.choice(len(pairs), MAX_DIFF_PAIRS, replace=False))
            pairs = [pairs[i] for i in pick]
        return pairs
    a = rng.integers(0, n, 4 * MAX_DIFF_PAIRS)
    b = rng.integers(0, n, 4 * MAX_DIFF_PAIRS)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    ok = names[lo] != names[hi]
    uniq = np.unique(np.stack([lo[ok], hi[ok]], 1), axis=0)[:MAX_DIFF_PAIRS]
    return [(int(x), int(y)) for x, y in uniq]
