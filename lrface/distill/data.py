"""Training data for distillation: aligned HR crops and their cached teacher targets.

Faces come from one or several ``--data`` sources (:mod:`lrface.datasets.sources`: an
LFW copy's train split, labelled or unlabelled folders, insightface RecordIO packs), each
with a sampling weight.  Images without a detectable face are skipped and reported;
unlabelled and RecordIO faces too close to an LFW test-split image are dropped
(:mod:`lrface.distill.guard`).  The teacher sees the aligned 112x112 HR crop; its
embeddings of every crop and of the crop's mirror image are computed once and cached on
disk, one file per source.  :func:`prepare_training_data` gives all of it as one
:class:`TrainingData`; :func:`epoch_order` draws the faces of an epoch by source weight.
What the student sees (degraded views) is :mod:`lrface.distill.dataset`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrface.datasets.lfw import LFW
from lrface.datasets.sources import Source, parse_sources
from lrface.distill import guard
from lrface.distill.faces import (
    FaceSet,
    SourceFaces,
    combine,
    holdout_identities,
    lfw_or_none,
    list_source_images,
    load_source,
    teacher_targets,
)
from lrface.errors import DatasetError
from lrface.faces.detect import DEFAULT_DETECTOR
from lrface.models.embedder import l2_normalize
from lrface.models.interface import Embedder

if TYPE_CHECKING:
    from lrface.distill.config import DistillConfig
    from lrface.distill.holdout import HeldOut

log = logging.getLogger("lrface")


def load_training_faces(
    data: str | Path | Sequence[str | Path],
    test_pairs: str | Path | None = None,
    limit: int | None = None,
    detector: str = DEFAULT_DETECTOR,
    holdout_folds: tuple[int, ...] = (),
) -> FaceSet:
    """Faces to distil on, from one or several ``--data`` sources (no teacher needed).

    ``data``: source specs (see :mod:`lrface.datasets.sources`): an LFW copy (only its
    train split), ``ROOT/<identity>/<images>``, unlabelled photos, a RecordIO pack.  For a
    labelled folder, ``test_pairs`` (an LFW ``pairs.txt``) -- or the LFW found under
    ``$LRFACE_HOME/data/lfw`` -- lists the test identities, and any overlap is refused.
    ``holdout_folds`` (official LFW folds among 1-5) removes every identity of those folds'
    pairs from the LFW source.  ``limit`` keeps the first N images of each source.

    This does **not** apply the test-identity guard to unlabelled and RecordIO sources:
    :func:`prepare_training_data` (what ``distill`` uses) does.
    """
    sources = parse_sources(data)
    _check_holdout(sources, holdout_folds)
    banned = _test_identities(test_pairs)
    return combine([load_source(s, limit, detector, holdout_folds, banned).faces for s in sources])


def _check_holdout(sources: list[Source], holdout_folds: tuple[int, ...]) -> None:
    if holdout_folds and (
        not any(s.kind == "lfw" for s in sources) or not set(holdout_folds) <= {1, 2, 3, 4, 5}
    ):
        where = ", ".join(str(s.path) for s in sources)
        raise DatasetError(
            f"{where}: held-out validation folds {list(holdout_folds)} need an LFW copy and "
            "folds among 1-5 (6-10 are the test split)"
        )


def find_lfw(sources: Sequence[Source] = (), test_pairs: str | Path | None = None) -> LFW | None:
    """The LFW copy that defines the test split: an ``lfw`` source, else the one of
    ``test_pairs`` (its ``pairs.txt`` or folder), else ``$LRFACE_HOME/data/lfw``."""
    import os

    cands = [s.path for s in sources if s.kind == "lfw"]
    if test_pairs:
        tp = Path(test_pairs)
        cands.append(tp.parent if tp.name == "pairs.txt" else tp)
    home = os.environ.get("LRFACE_HOME")
    if home:
        cands.append(Path(home) / "data" / "lfw")
    for c in cands:
        lfw = lfw_or_none(c)
        if lfw is not None:
            return lfw
    return None


def _test_identities(test_pairs: str | Path | None) -> frozenset[str]:
    lfw = find_lfw((), test_pairs)
    return lfw.test_identities if lfw is not None else frozenset()


def _subset(faces: FaceSet, keep: np.ndarray) -> FaceSet:
    crops = faces.crops[keep] if isinstance(faces.crops, np.ndarray) else _Take(faces.crops, keep)
    return FaceSet(
        faces.root,
        [faces.paths[i] for i in keep],
        [faces.identities[i] for i in keep],
        crops,
    )


class _Take:
    """``seq[rows[i]]`` as a sequence (a lazily decoded subset)."""

    def __init__(self, seq: Any, rows: np.ndarray) -> None:
        self.seq, self.rows = seq, np.asarray(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.seq[int(self.rows[int(i)])]


@dataclasses.dataclass
class TrainingData:
    """Everything ``distill`` trains on: the faces of every source after skipping and
    guarding, their cached teacher targets, and what happened to each source."""

    faces: FaceSet
    plain: np.ndarray
    mirror: np.ndarray
    parts: list[SourceFaces]
    guard: dict[str, Any]
    lfw: LFW | None
    views: dict[str, Any] | None = None  # box views (distill.views.BoxViews.card), if any
    held: HeldOut | None = None  # identities held out to calibrate the thresholds

    @property
    def weights(self) -> list[float]:
        return [p.source.weight for p in self.parts]

    @property
    def sizes(self) -> list[int]:
        return [len(p.faces) for p in self.parts]

    def epoch_size(self) -> int:
        """Draws per epoch: ``sum(round(weight * n))`` over the sources."""
        return sum(_draws(w, n) for w, n in zip(self.weights, self.sizes))

    def epoch_order(self, seed: int, epoch: int) -> np.ndarray:
        """The sample keys of one epoch, shuffled; see :func:`epoch_order`."""
        return epoch_order(self.sizes, self.weights, seed, epoch)

    @functools.cached_property
    def fused(self) -> np.ndarray:
        """Flip-fused teacher targets: float32 (N, D), ``l2_normalize(plain + mirror)``."""
        return l2_normalize(self.plain + self.mirror)

    def lfw_part(self) -> SourceFaces | None:
        return next((p for p in self.parts if p.source.kind == "lfw"), None)

    def summary(self) -> dict[str, int]:
        """Faces, labelled identities and unlabelled faces of all sources."""
        labels = self.faces.labels
        return {
            "images": len(self.faces),
            "identities": len(np.unique(labels[labels >= 0])),
            "unlabelled_images": int((labels < 0).sum()),
        }

    def card(self, relpath: Callable[[Path], str]) -> dict[str, Any]:
        """The ``data`` entry of the run's card (``relpath``: how a path is written)."""
        total = self.epoch_size() or 1
        srcs = []
        for p, n in zip(self.parts, self.sizes):
            labelled = p.source.labelled
            entry: dict[str, Any] = {
                "kind": p.source.kind,
                "path": relpath(p.source.path),
                "weight": p.source.weight,
                "images_listed": p.listed,
                "images": n,
                "identities": len({i for i in p.faces.identities if i}) if labelled else None,
                "share_of_draws": round(_draws(p.source.weight, n) / total, 4),
                "no_face_skipped": len(p.no_face),
                "unreadable_skipped": len(p.unreadable),
            }
            if p.no_face:
                entry["no_face_examples"] = p.no_face[:5]
            if p.unreadable:
                entry["unreadable_examples"] = p.unreadable[:5]
            if p.source.needs_guard:
                entry["test_guard_dropped"] = len(p.dropped) if p.guard_checked else None
                if p.dropped:
                    entry["test_guard_examples"] = [
                        {"path": a, "nearest_lfw_test_identity": b, "cosine": c}
                        for a, b, c in p.dropped[:5]
                    ]
            srcs.append(entry)
        return {"sources": srcs, "test_guard": self.guard}

    def report(self) -> dict[str, Any]:
        """Every skipped and dropped path, per source (written to ``data_report.json``)."""
        return {
            "sources": [
                {
                    "spec": p.source.spec,
                    "kind": p.source.kind,
                    "no_face": p.no_face,
                    "unreadable": p.unreadable,
                    "test_guard_dropped": [
                        {"path": a, "nearest_lfw_test_identity": b, "cosine": c}
                        for a, b, c in p.dropped
                    ],
                }
                for p in self.parts
            ],
            "test_guard": self.guard,
        }


def display_path(path: Path) -> str:
    """How a card shows a source path: relative as given, else only its last component
    (never an absolute path of the training machine)."""
    import os

    return os.path.relpath(path) if not Path(path).is_absolute() else Path(path).name


def check_before_work(cfg: DistillConfig, training: bool = True) -> None:
    """The cheap checks of a run, before any detection, alignment or teacher work: the
    ``--out`` folder can be made (not made here: a refused run leaves none), every source
    parses and lists images, held-out folds fit, no labelled folder holds an LFW
    test-split identity, and (``training``; not for ``--prepare-only``) the images listed
    give at least one batch per epoch (repeated on the faces left after skipping)."""
    from lrface.io.fileio import check_writable

    check_writable(cfg.out, "dir", "--out")
    sources = parse_sources(cfg.data)
    _check_holdout(sources, cfg.holdout_folds)
    lfw = find_lfw(sources, cfg.test_pairs)
    banned = lfw.test_identities if lfw is not None else frozenset()
    draws = 0
    for s in sources:
        if s.kind == "rec":
            return  # counted when the pack is opened
        source_lfw = LFW(s.path) if s.kind == "lfw" else None
        _, rels, _ = list_source_images(s, source_lfw, cfg.holdout_folds, banned)
        if not rels:
            raise DatasetError(f"{s.path}: no images found (expected ROOT/<identity>/<image>.jpg)")
        n = min(len(rels), cfg.limit) if cfg.limit else len(rels)
        draws += _draws(s.weight, n)
    if training and draws < cfg.batch_size:
        raise DatasetError(
            f"{_spec_list(sources)}: {draws} images listed (draws per epoch) are fewer than "
            f"one batch of {cfg.batch_size}; add photos or lower --batch-size"
        )


def _spec_list(sources: Sequence[Source]) -> str:
    return " + ".join(s.spec for s in sources)


def training_data_for(cfg: DistillConfig, teacher: Embedder, progress: bool = True) -> TrainingData:
    """:func:`prepare_training_data` with the data settings of ``cfg``: the one place
    training and ``--prepare-only`` get their data."""
    return prepare_training_data(
        cfg.data,
        teacher,
        cfg.test_pairs,
        cfg.limit,
        holdout_folds=cfg.holdout_folds,
        test_guard=cfg.test_guard,
        guard_threshold=cfg.guard_threshold,
        progress=progress,
        calib_identities=cfg.calib_identities,
        seed=cfg.seed,
    )


def prepare_only(cfg: DistillConfig, progress: bool = True) -> dict[str, Any]:
    """``lrface distill --prepare-only``: detect, align, compute the teacher targets and
    apply the test-identity guard for every source of ``cfg``, all
    cached for the training run that follows; write ``<out>/data_report.json`` and return
    the summary that the run's card will hold under ``data``."""
    from lrface.io.fileio import write_json_atomic
    from lrface.models.loader import load_embedder

    check_before_work(cfg, training=False)
    td = training_data_for(cfg, load_embedder(cfg.teacher, flip=False), progress)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "data_report.json", td.report())
    return {
        **td.summary(),
        "draws_per_epoch": td.epoch_size(),
        **td.card(display_path),
        "report": str(out / "data_report.json"),
    }


def _draws(weight: float, n: int) -> int:
    return int(round(weight * n))


def epoch_order(
    sizes: Sequence[int], weights: Sequence[float], seed: int, epoch: int
) -> np.ndarray:
    """Shuffled sample keys of one epoch over sources of ``sizes`` faces.

    Source ``s`` (faces ``offset_s .. offset_s + n_s - 1`` of the combined set) gives
    ``round(w_s * n_s)`` draws: every face ``floor(w_s)`` times plus a random subset for
    the fraction, redrawn each epoch.  The r-th repeat of face ``i`` has key
    ``i + r * N`` (N = all faces), so :class:`~lrface.distill.dataset.DistillDataset`
    augments it differently.  With every weight 1 this is
    ``default_rng([seed, epoch]).permutation(N)``, as before sources had weights.  A pure
    function of its arguments (exact resume).
    """
    n_all = int(sum(sizes))
    rng = np.random.default_rng([seed, epoch])
    if all(w == 1 for w in weights):
        return rng.permutation(n_all)
    keys = []
    offset = 0
    for n, w in zip(sizes, weights):
        whole = int(np.floor(w))
        for r in range(whole):
            keys.append(offset + np.arange(n) + r * n_all)
        extra = _draws(w, n) - whole * n
        if extra > 0:
            keys.append(offset + np.sort(rng.choice(n, extra, replace=False)) + whole * n_all)
        offset += n
    return rng.permutation(np.concatenate(keys)) if keys else np.zeros(0, np.int64)


def prepare_training_data(
    data: str | Path | Sequence[str | Path],
    teacher: Embedder,
    test_pairs: str | Path | None = None,
    limit: int | None = None,
    detector: str = DEFAULT_DETECTOR,
    holdout_folds: tuple[int, ...] = (),
    test_guard: bool = True,
    guard_threshold: float | None = None,
    progress: bool = False,
    calib_identities: int | None = 0,
    seed: int = 0,
) -> TrainingData:
    """Load every source (:func:`load_source`), compute its cached teacher targets, and
    drop from unlabelled and RecordIO sources every face whose flip-fused teacher
    embedding has cosine >= ``guard_threshold`` (default
    :data:`lrface.distill.guard.GUARD_THRESHOLD`) with the template of an LFW test-split
    identity -- or of an identity of ``holdout_folds``, whose pairs validate the run.
    ``test_guard=False`` skips that filter (recorded in the card).  Without an LFW source,
    ``calib_identities`` identities of the labelled folders (None: the default share, 0:
    none) are held out of training (seeded by ``seed``) to calibrate the thresholds:
    :mod:`lrface.distill.holdout`; unlabelled faces close to them are dropped too."""
    sources = parse_sources(data)
    _check_holdout(sources, holdout_folds)
    lfw = find_lfw(sources, test_pairs)
    banned = lfw.test_identities if lfw is not None else frozenset()
    thr = _guard_threshold(guard_threshold)
    needs = [s for s in sources if s.needs_guard]
    _check_guard_possible(needs, lfw, test_guard)
    tguard = None
    if needs and test_guard:  # the templates first: a bad file fails before any alignment
        tguard = _TestGuard(lfw, teacher, detector, holdout_folds, thr)
        tguard.reference()
    parts, plains, mirrors = [], [], []
    for s in sources:
        part = load_source(s, limit, detector, holdout_folds, banned, progress)
        if not len(part.faces):
            raise DatasetError(f"--data {s.spec}: no usable face (every image was skipped)")
        plain, mirror = teacher_targets(part.faces, teacher, progress=progress)
        parts.append(part)
        plains.append(plain)
        mirrors.append(mirror)
    held = None
    if calib_identities != 0 and not any(s.kind == "lfw" for s in sources):
        held = _hold_out(parts, plains, mirrors, calib_identities, seed)
    for k, part in enumerate(parts):
        if part.source.needs_guard and tguard is not None:
            plains[k], mirrors[k] = tguard.apply(part, plains[k], mirrors[k], held)
        elif part.source.needs_guard:
            log.warning("test guard OFF for %s (--no-test-guard): not checked", part.source.path)
    faces = combine([p.faces for p in parts])
    guard_info = _guard_info(test_guard, bool(needs), thr, tguard)
    return TrainingData(
        faces, np.concatenate(plains), np.concatenate(mirrors), parts, guard_info, lfw, held=held
    )


def _hold_out(
    parts: list[SourceFaces],
    plains: list[np.ndarray],
    mirrors: list[np.ndarray],
    requested: int | None,
    seed: int,
) -> HeldOut | None:
    """Set aside (in place: ``parts`` and their targets lose those faces) the identities
    of labelled folders chosen by :func:`lrface.distill.holdout.choose` (``requested``:
    how many, None = default share; ``seed``); returns them, or None when no labelled
    folder has enough identities (logged)."""
    from lrface.distill.holdout import HeldOut, choose

    labelled = [k for k, p in enumerate(parts) if p.source.kind == "labelled"]
    if not labelled:
        return None
    many = len(labelled) > 1
    keyed = {
        k: np.array(
            [f"{parts[k].source.spec}/{i}" if many else i for i in parts[k].faces.identities]
        )
        for k in labelled
    }
    names = np.concatenate(list(keyed.values()))
    uniq, counts = np.unique(names, return_counts=True)
    chosen = choose(uniq.tolist(), counts.tolist(), requested, seed)
    eligible = int((counts >= 2).sum())
    if not chosen:
        log.warning(
            "%s: too few identities with >= 2 faces (%d) to hold some out; the threshold is "
            "not calibrated (pass --threshold to verify, or add identities)",
            ", ".join(parts[k].source.spec for k in labelled),
            eligible,
        )
        return None
    crops, fused, who = [], [], []
    for k in labelled:
        out = np.isin(keyed[k], chosen)
        rows = np.flatnonzero(out)
        crops.append(np.stack([parts[k].faces.crops[i] for i in rows]) if len(rows) else None)
        fused.append(l2_normalize(plains[k][rows] + mirrors[k][rows]))
        who.append(keyed[k][rows])
        keep = np.flatnonzero(~out)
        parts[k].faces = _subset(parts[k].faces, keep)
        plains[k], mirrors[k] = plains[k][keep], mirrors[k][keep]
    log.warning(
        "held out of training to calibrate the threshold: %d identities (%d faces), seed %d",
        len(chosen),
        sum(len(w) for w in who),
        seed,
    )
    return HeldOut(
        np.concatenate(who),
        np.concatenate([c for c in crops if c is not None]),
        np.concatenate(fused),
        chosen,
        eligible,
        seed,
    )


def _guard_threshold(guard_threshold: float | None) -> float:
    """``guard_threshold`` as a float (default :data:`lrface.distill.guard.GUARD_THRESHOLD`),
    refused outside the cosine range [-1, 1]."""
    thr = guard.GUARD_THRESHOLD if guard_threshold is None else float(guard_threshold)
    if not -1.0 <= thr <= 1.0:
        raise DatasetError(f"--guard-threshold {thr}: a cosine in [-1, 1]")
    return thr


def _check_guard_possible(needs: list[Source], lfw: LFW | None, test_guard: bool) -> None:
    """Refuse guarded sources (``needs``) when the guard is on but neither the shipped
    templates nor an LFW copy can give it a reference (checked again, with the teacher,
    by :func:`lrface.distill.guard.test_reference`)."""
    from lrface.models.registry import PACKAGE_WEIGHTS

    shipped = (PACKAGE_WEIGHTS / guard.REFERENCE_FILE).is_file()
    if needs and test_guard and lfw is None and not shipped:
        raise DatasetError(
            f"--data {needs[0].spec}: unlabelled faces must be checked against the LFW test "
            f"split, but weights/{guard.REFERENCE_FILE} is missing and no LFW copy was found; "
            "restore the file (git checkout weights/), pass --test-pairs PATH/lfw/pairs.txt "
            "(with its images) or set LRFACE_HOME, or --no-test-guard (recorded in the card)"
        )


@dataclasses.dataclass
class _TestGuard:
    """The test-identity guard of one :func:`prepare_training_data` call: the identity
    templates (LFW test-split identities: shipped, or computed from ``lfw`` for another
    teacher; plus the identities of ``holdout_folds``, from ``lfw``), and the faces
    checked and dropped so far."""

    lfw: LFW | None
    teacher: Embedder
    detector: str
    holdout_folds: tuple[int, ...]
    thr: float
    ref: guard.Reference | None = None
    checked: int = 0
    dropped: int = 0

    def reference(self) -> guard.Reference:
        """The templates (loaded or computed once)."""
        if self.ref is None:
            ref = guard.test_reference(self.teacher, self.lfw, self.detector)
            if self.holdout_folds and self.lfw is not None:
                held = holdout_identities(self.lfw, self.holdout_folds)
                ref = ref + guard.lfw_reference(self.lfw, self.teacher, held, self.detector)
                ref.origin += f" (identities of held-out folds {list(self.holdout_folds)})"
            self.ref = ref
        return self.ref

    def apply(
        self,
        part: SourceFaces,
        plain: np.ndarray,
        mirror: np.ndarray,
        held: HeldOut | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Drop from ``part`` (in place: ``faces``, ``dropped``, ``guard_checked``) every
        face whose flip-fused target has cosine >= ``thr`` with an identity template (and
        with the templates of the identities ``held`` out for calibration); returns the
        kept rows of ``plain`` and ``mirror`` (float32 (N, D) each)."""
        ref = self.reference()
        if held is not None:
            ids, tmpl, count = guard.templates(held.names.tolist(), held.fused)
            ref = ref + guard.Reference(ids, tmpl, count, "calibration identities")
        best, nearest = guard.nearest(l2_normalize(plain + mirror), ref.templates)
        drop = best >= self.thr
        part.dropped = [
            (part.faces.paths[i], ref.identities[nearest[i]], round(float(best[i]), 4))
            for i in np.flatnonzero(drop)
        ]
        part.guard_checked = True
        self.checked += len(drop)
        self.dropped += int(drop.sum())
        log.warning(
            "test guard: %s: dropped %d of %d faces (cosine >= %.3f with an LFW test-split "
            "identity's template)%s",
            part.source.path,
            int(drop.sum()),
            len(drop),
            self.thr,
            " e.g. " + ", ".join(p for p, _, _ in part.dropped[:3]) if part.dropped else "",
        )
        keep = np.flatnonzero(~drop)
        if not len(keep):
            raise DatasetError(
                f"--data {part.source.spec}: every face is within the guard threshold "
                f"{self.thr} of an LFW test-split (or held-out) identity; nothing left to "
                "train on"
            )
        part.faces = _subset(part.faces, keep)
        return plain[keep], mirror[keep]


def _guard_info(
    test_guard: bool, needed: bool, thr: float, tguard: _TestGuard | None
) -> dict[str, Any]:
    """The ``test_guard`` entry of the card: whether it was on, and where any source
    needed it, the threshold and the faces checked and dropped."""
    guard_info: dict[str, Any] = {
        "enabled": bool(test_guard),
        "applies_to": "unlabelled and RecordIO sources (no LFW names to check)",
    }
    if needed:
        guard_info.update(
            threshold=thr,
            threshold_default=guard.GUARD_THRESHOLD,
            threshold_note=guard.THRESHOLD_NOTE,
            checked=tguard.checked if tguard is not None else 0,
            dropped=tguard.dropped if tguard is not None else 0,
            reference=tguard.ref.origin if tguard is not None and tguard.ref else None,
        )
    return guard_info
