"""LFW verification at low resolution on the official View-2 pairs.

Modes (see ``../shared/data/lfw/README.md`` for the recipe and the reference numbers):

* ``hr-hr``: both images as aligned 112x112 crops (size-independent, computed once);
* ``hr-lr``: the second image of each pair reduced to ``s x s``;
* ``lr-lr``: both images reduced.

Faces are the SCRFD-2.5g aligned 112x112 crops of :func:`lrface.datasets.facecache.aligned_crops`
(cached for the whole of LFW); LR crops come from :func:`lrface.faces.degrade.degrade` (area
reduction; the embedder upsamples with bicubic itself).  Scores are cosine similarities
and accuracy is k-fold cross-validated over the folds of the selected pairs (``test`` =
official folds 6-10, ``val`` = 1-5, ``all`` = 1-10): each fold's threshold is chosen on the
other folds.  With ``hr_embedder`` the HR side (first image) is embedded by another model:
the product's case of an HR gallery enrolled with the teacher and LR probes embedded by a
student.

Probe conditions (``degrade`` x ``probe_crop``, default ``clean`` x ``aligned``, the
tables of ``benchmarks/RESULTS.md``): ``degrade="realistic"`` adds the camera degradation of
:data:`lrface.faces.degrade.REALISTIC` after the reduction, each probe's draw fixed by its pair's
index in ``pairs.txt`` (:func:`lrface.faces.degrade.realistic_rng` with ``(pair index, size,
side)``: the same inputs in every run and every subset); ``probe_crop="box"`` replaces the
aligned crop of every *reduced* image by the detector's square box around the face (the
most central face, as for alignment; :func:`lrface.faces.degrade.box_crop`, no landmarks), cut
from the HR photo; ``probe_crop="given"`` reduces (and degrades) that box crop and hands it
to the default crop mode of pre-cut crops, as a user's ``--no-detect`` crop is read
(:mod:`lrface.faces.given_crop`: aligned by the landmarks found inside it, else the box path);
given probes are made per pair and side, clean ones too.  The HR side of ``hr-lr`` and both
sides of ``hr-hr`` stay aligned and clean.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrface.datasets.boxes import load_box_crops
from lrface.datasets.facecache import aligned_crops, cache_file
from lrface.datasets.lfw import LFW, Pair
from lrface.errors import LrfaceError
from lrface.eval.metrics import roc, verification_report
from lrface.eval.protocols.common import (
    check_hr_embedder,
    embed_cached,
    hr_for,
    hr_info,
    protocol_result,
    row_label,
)
from lrface.eval.protocols.conditions import (
    check_condition,
    condition_caption,
    condition_info,
    condition_recipe,
    degradation_for,
    degrade_probe,
    given_crop,
    given_landmarks,
    stable_seed,
)
from lrface.eval.protocols.routed import RoutedModel
from lrface.faces.degrade import BOX_HR_SIDE, BOX_MARGIN, Degradation, degrade
from lrface.faces.detect import DEFAULT_DETECTOR

if TYPE_CHECKING:
    from lrface.models.interface import Embedder, HrEmbedders

MODES = ("hr-hr", "hr-lr", "lr-lr")
MODE_TITLES = {"hr-hr": "HR vs HR", "hr-lr": "HR vs LR", "lr-lr": "LR vs LR"}
DEFAULT_SIZES = (8, 12, 16, 20, 24, 32)
DEFAULT_FARS = (1e-1, 1e-2, 1e-3)
SPLITS = ("test", "val", "all")
#: Points kept of each ROC curve in the results.
ROC_POINTS = 200
#: Above this many images the whole of LFW is aligned once (the shared cache) instead of
#: just the requested subset.
SUBSET_LIMIT = 1000
HR_COLUMN = "HR"


def select_pairs(
    lfw: LFW,
    split: str = "test",
    max_pairs_per_fold: int | None = None,
    pair_indices: Sequence[int] | None = None,
) -> list[Pair]:
    """The pairs to evaluate, in file order.

    ``pair_indices`` (indices into the 6,000 official pairs) overrides ``split``.
    ``max_pairs_per_fold = n`` keeps, in each fold, the first ``ceil(n/2)`` same and the
    first ``floor(n/2)`` different pairs (quick runs on real data).
    """
    if pair_indices is not None:
        n = len(lfw.pairs)
        bad = [i for i in pair_indices if not 0 <= int(i) < n]
        if bad:
            raise LrfaceError(f"pair index {bad[0]} out of range 0..{n - 1}")
        pairs = [lfw.pairs[int(i)] for i in pair_indices]
    else:
        if split not in SPLITS:
            raise LrfaceError(f"unknown LFW split {split!r}; choose {', '.join(SPLITS)}")
        pairs = lfw.split_pairs(split)
    if max_pairs_per_fold is not None:
        if max_pairs_per_fold < 2:
            raise LrfaceError(f"max_pairs_per_fold must be >= 2, got {max_pairs_per_fold}")
        quota = {True: (max_pairs_per_fold + 1) // 2, False: max_pairs_per_fold // 2}
        seen: dict[tuple[int, bool], int] = {}
        kept = []
        for p in pairs:
            k = (p.fold, p.same)
            if seen.get(k, 0) < quota[p.same]:
                seen[k] = seen.get(k, 0) + 1
                kept.append(p)
        pairs = kept
    folds = {p.fold for p in pairs}
    if len(folds) < 2:
        raise LrfaceError(f"the selected pairs cover {len(folds)} fold(s); need at least 2")
    return pairs


def load_crops(
    lfw: LFW, rels: Sequence[str], detector: str = DEFAULT_DETECTOR, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aligned 112x112 crops of ``rels`` (relative LFW paths).

    Uses the shared whole-LFW cache when it exists or when more than
    :data:`SUBSET_LIMIT` images are asked for (building it: passes ``lfw.all_images``);
    otherwise aligns (and caches) just ``rels``.  Returns ``(crops, index, fallback)``:
    crops uint8 BGR (M, 112, 112, 3) of the source set, int64 (len(rels),) row of each
    rel in ``crops``, and bool (M,) alignment fallback flags.
    """
    from lrface.faces.detect import resolve_detector

    rels = list(rels)
    detector = resolve_detector(detector)
    if cache_file(lfw.image_dir, lfw.all_images, detector).is_file() or len(rels) > SUBSET_LIMIT:
        source = lfw.all_images
    else:
        source = sorted(set(rels))
    faces = aligned_crops(lfw.image_dir, source, detector, progress=progress)
    pos = {r: i for i, r in enumerate(source)}
    missing = [r for r in rels if r not in pos]
    if missing:
        raise LrfaceError(f"{lfw.image_dir}: image {missing[0]} of pairs.txt is missing")
    return faces["crops"], np.array([pos[r] for r in rels], np.int64), faces["fallback"]


def subsample_roc(
    fpr: np.ndarray, tpr: np.ndarray, n_neg: int, points: int = ROC_POINTS
) -> dict[str, list[float]]:
    """At most ``points`` points of a ROC curve for plots: TAR at log-spaced FARs.

    The FAR grid runs from ``1 / n_neg`` to 1 (plus 0); the TAR at each FAR is the best
    true accept rate whose false accept rate does not exceed it (step function).
    Returns ``{"far": [...], "tar": [...]}`` (python floats).
    """
    lo = np.log10(1.0 / max(n_neg, 1))
    grid = np.unique(np.concatenate([[0.0], np.logspace(lo, 0.0, points - 1)]))
    order = np.argsort(fpr, kind="stable")
    f, t = np.asarray(fpr)[order], np.maximum.accumulate(np.asarray(tpr)[order])
    idx = np.searchsorted(f, grid + 1e-12, side="right") - 1
    tar = np.where(idx >= 0, t[np.clip(idx, 0, None)], 0.0)
    return {"far": grid.tolist(), "tar": tar.tolist()}


def _pairs_report(
    scores: np.ndarray, labels: np.ndarray, folds: np.ndarray, fars: Sequence[float]
) -> dict[str, Any]:
    rep = verification_report(scores, labels, folds, fars)
    r = roc(scores, labels)
    rep["roc"] = subsample_roc(r["fpr"], r["tpr"], rep["n_diff"])
    return rep


def _entry(
    rep: dict[str, Any],
    model: str,
    hr_model: str | None,
    mode: str,
    size: int | None,
    recipe: str,
    condition: tuple[str, str] = ("clean", "aligned"),
) -> dict[str, Any]:
    col = HR_COLUMN if size is None else f"{size}px"
    hr_name = hr_model if mode != "lr-lr" else None
    row = f"{row_label(model, hr_name)} {mode}"
    cell = f"{100 * rep['accuracy_mean']:.2f} ({100 * rep['accuracy_std']:.2f})"
    return {
        "model": model,
        "hr_model": hr_name,
        "mode": mode,
        "size": size,
        "recipe": recipe,
        "degrade": condition[0] if size is not None else "clean",
        "probe_crop": condition[1] if size is not None else "aligned",
        "kind": "verification",
        "row": row,
        "cells": {col: cell},
        "plot_group": "HR (112px)" if size is None else f"{size}px",
        "plot_label": row,
        "metrics": rep,
    }


class _PairSet:
    """The selected pairs with their crops: the unique images and pair -> image indices."""

    def __init__(
        self,
        lfw: LFW,
        pairs: list[Pair],
        detector: str,
        progress: bool,
        probe_crop: str = "aligned",
        load_aligned: bool = True,
    ) -> None:
        """``load_aligned=False``: without the aligned crops (only the probe crops; for
        :func:`precompute_given`)."""
        self.pairs = pairs
        official = {id(p): i for i, p in enumerate(lfw.pairs)}
        #: index of each pair among the official pairs (seeds of the realistic draws)
        self.index = [official.get(id(p), i) for i, p in enumerate(pairs)]
        self.rels = sorted({p.a for p in pairs} | {p.b for p in pairs})
        pos = {r: i for i, r in enumerate(self.rels)}
        self.ia = np.array([pos[p.a] for p in pairs], np.int64)
        self.ib = np.array([pos[p.b] for p in pairs], np.int64)
        self.labels = np.array([p.same for p in pairs], bool)
        _, self.folds = np.unique([p.fold for p in pairs], return_inverse=True)
        self.crops, self.rows, self.n_fallback = np.zeros((0, 112, 112, 3), np.uint8), self.ia, 0
        if load_aligned:
            self.crops, self.rows, fb = load_crops(lfw, self.rels, detector, progress)
            self.n_fallback = int(fb[self.rows].sum())
        self.source_key = (str(Path(lfw.image_dir).resolve()), detector)
        self.probe_crop = probe_crop
        self.box_crops: np.ndarray | None = None
        self.n_box_fallback = 0
        self.detector = detector
        #: fraction of given probes aligned by landmarks, per (size, degrade kind, side)
        self.given_found: dict[tuple[int, str, int], float] = {}
        #: share of given probes per path of ``--model auto`` (crop kind -> model), same keys
        self.given_paths: dict[tuple[int, str, int], dict[str, float]] = {}
        if probe_crop in ("box", "given"):
            self.box_crops, bfb, _ = load_box_crops(lfw, self.rels, detector, progress)
            self.n_box_fallback = int(bfb.sum())

    def probe_crop_of(self, i: int) -> np.ndarray:
        """The 112x112 crop image ``i`` (of ``rels``) is reduced from under the condition."""
        if self.box_crops is not None:
            return self.box_crops[i]
        return self.crops[self.rows[i]]

    def embed(
        self, emb: Embedder, deg: Degradation | None, progress: bool, use_cache: bool
    ) -> np.ndarray:
        """(len(rels), D) embeddings of every image, HR (``deg=None``) or reduced by ``deg``."""
        if deg is None:

            def load(a: int, b: int) -> list[np.ndarray]:
                return list(self.crops[self.rows[a:b]])

            recipe, desc = "hr-112", "HR crops"
        else:

            def load(a: int, b: int) -> list[np.ndarray]:
                return [
                    degrade(self.crops[self.rows[i]], deg, stable_seed(self.rels[i]))
                    for i in range(a, b)
                ]

            recipe, desc = f"{deg!r}", f"{deg.size}px crops"
        return embed_cached(
            emb,
            len(self.rels),
            load,
            (*self.source_key, recipe, *self.rels),
            desc=desc,
            progress=progress,
            use_cache=use_cache,
        )

    def embed_lr(
        self,
        emb: Embedder,
        deg: Degradation,
        degrade_kind: str,
        sides: Sequence[int],
        progress: bool,
        use_cache: bool,
    ) -> dict[int, np.ndarray]:
        """Reduced embeddings per pair: ``{side: (n_pairs, D)}`` (side 0 = first image).

        Clean probes are embedded once per image (clean aligned ones under the cache key
        of :meth:`embed`); realistic ones once per pair and side, with the draw of
        ``(pair index, size, side)``.
        """
        if self.probe_crop == "given":
            return {
                side: self._given_probes(emb, deg, degrade_kind, side, progress, use_cache)
                for side in sides
            }
        if degrade_kind == "clean":
            per_image = self._clean_probes(emb, deg, progress, use_cache)
            return {0: per_image[self.ia], 1: per_image[self.ib]}
        return {
            side: self._realistic_probes(emb, deg, degrade_kind, side, progress, use_cache)
            for side in sides
        }

    def _crop_key(self) -> tuple[Any, ...]:
        """What the probe crops are cut as, for the embedding cache key."""
        if self.probe_crop in ("box", "given"):
            return (self.probe_crop, BOX_MARGIN, BOX_HR_SIDE)
        return ("aligned",)

    def given_inputs(
        self, deg: Degradation, degrade_kind: str, side: int, progress: bool, use_cache: bool
    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, tuple[Any, ...]]:
        """``(probes, landmarks, found, key)`` of the given probes of image ``side``: uint8
        BGR ``s x s`` probes per pair, float32 (n_pairs, 5, 2) landmarks and bool
        (n_pairs,) found (:func:`given_landmarks`, cached) and the cache key of the probes."""
        img = self.ia if side == 0 else self.ib
        probes = [
            degrade_probe(self.probe_crop_of(img[k]), deg, degrade_kind, self.index[k], side)
            for k in range(len(self.pairs))
        ]
        ids = [f"{self.index[k]}:{self.rels[img[k]]}" for k in range(len(self.pairs))]
        recipe = condition_recipe(deg, degrade_kind, self.probe_crop)
        key = (*self.source_key, *self._crop_key(), degrade_kind, recipe, f"{deg!r}", side, *ids)
        lms, found = given_landmarks(probes, self.detector, key, progress, use_cache)
        return probes, lms, found, key

    def _given_probes(
        self,
        emb: Embedder,
        deg: Degradation,
        degrade_kind: str,
        side: int,
        progress: bool,
        use_cache: bool,
    ) -> np.ndarray:
        """(n_pairs, D) embeddings of each pair's image ``side`` as a given crop: its box
        crop reduced (and degraded with the draw of ``(pair index, size, side)``), then
        aligned by the landmarks the default crop mode finds inside it, or resized."""
        probes, lms, found, key = self.given_inputs(deg, degrade_kind, side, progress, use_cache)
        self.given_found[(deg.size, degrade_kind, side)] = float(found.mean())
        if isinstance(emb, RoutedModel):  # --model auto: each probe as the router reads it
            routed, paths = emb.embed_given(probes, lms, found)
            self.given_paths[(deg.size, degrade_kind, side)] = paths
            return routed

        def load_pairs(a: int, b: int) -> list[np.ndarray]:
            return [
                given_crop(probes[k], lms[k] if found[k] else None, emb.input_size)
                for k in range(a, b)
            ]

        return embed_cached(
            emb,
            len(self.pairs),
            load_pairs,
            (*key, emb.input_size),
            desc=f"{deg.size}px given {degrade_kind} side {side}",
            progress=progress,
            use_cache=use_cache,
        )

    def _clean_probes(
        self, emb: Embedder, deg: Degradation, progress: bool, use_cache: bool
    ) -> np.ndarray:
        """(len(rels), D) embeddings of every image's probe crop reduced by ``deg`` (the
        aligned ones under the cache key of :meth:`embed`)."""
        if self.probe_crop == "aligned":
            return self.embed(emb, deg, progress, use_cache)

        def load(a: int, b: int) -> list[np.ndarray]:
            return [
                degrade(self.probe_crop_of(i), deg, stable_seed(self.rels[i])) for i in range(a, b)
            ]

        return embed_cached(
            emb,
            len(self.rels),
            load,
            (*self.source_key, *self._crop_key(), f"{deg!r}", *self.rels),
            desc=f"{deg.size}px {self.probe_crop} crops",
            progress=progress,
            use_cache=use_cache,
        )

    def _realistic_probes(
        self,
        emb: Embedder,
        deg: Degradation,
        degrade_kind: str,
        side: int,
        progress: bool,
        use_cache: bool,
    ) -> np.ndarray:
        """(n_pairs, D) embeddings of each pair's image ``side`` (0: first), degraded
        with the draw of ``(pair index, size, side)``."""
        img = self.ia if side == 0 else self.ib

        def load_pairs(a: int, b: int) -> list[np.ndarray]:
            return [
                degrade_probe(self.probe_crop_of(img[k]), deg, degrade_kind, self.index[k], side)
                for k in range(a, b)
            ]

        return embed_cached(
            emb,
            len(self.pairs),
            load_pairs,
            (
                *self.source_key,
                *self._crop_key(),
                degrade_kind,
                condition_recipe(deg, degrade_kind, self.probe_crop),
                f"{deg!r}",
                side,
                *(f"{self.index[k]}:{self.rels[img[k]]}" for k in range(len(self.pairs))),
            ),
            desc=f"{deg.size}px {self.probe_crop} {degrade_kind} side {side}",
            progress=progress,
            use_cache=use_cache,
        )


def evaluate_lfw(
    embedders: Sequence[Embedder],
    data: str | Path,
    *,
    modes: Sequence[str] = MODES,
    sizes: Sequence[int] = DEFAULT_SIZES,
    split: str = "test",
    hr_embedder: HrEmbedders = None,
    recipe: Degradation | None = None,
    max_pairs_per_fold: int | None = None,
    pair_indices: Sequence[int] | None = None,
    detector: str = DEFAULT_DETECTOR,
    fars: Sequence[float] = DEFAULT_FARS,
    progress: bool = True,
    use_cache: bool = True,
    degrade: str = "clean",
    probe_crop: str = "aligned",
) -> dict[str, Any]:
    """Run the LFW low-resolution verification protocol for every embedder.

    Args:
        embedders: models to evaluate (their ``embed_crops`` gives (N, D) float32 L2-normed).
        data: LFW root (``pairs.txt`` + ``lfw-deepfunneled/``), see :class:`LFW`.
        modes: subset of ``hr-hr``, ``hr-lr``, ``lr-lr``.
        sizes: LR sides in pixels (``hr-lr`` / ``lr-lr``).
        split: ``test`` (folds 6-10), ``val`` (1-5) or ``all`` (1-10).
        hr_embedder: model for the HR side (first image) in ``hr-hr``/``hr-lr``; ``None`` =
            the evaluated model itself; a mapping ``{model name: HR model}`` (``--hr-model
            auto``) keeps hr-hr model vs model.  Must share the embedding space.
        recipe: degradation template (its ``size`` is replaced); default area reduction.
        max_pairs_per_fold, pair_indices: subsets for quick runs, see :func:`select_pairs`.
        fars: false accept rates of TAR@FAR.
        use_cache: keep/reuse embeddings under :func:`lrface.io.cache.cache_dir`.
        degrade: ``clean`` (default) or ``realistic`` (see the module docstring).
        probe_crop: ``aligned`` (default) or ``box``: what the reduced images are cut as.

    Returns:
        JSON-serialisable dict ``{"protocol", "description", "models", "hr_model",
        "caption", "results"}``; each result has ``model``, ``hr_model``, ``mode``, ``size``
        (None for hr-hr), ``recipe``, ``degrade``, ``probe_crop`` (``clean``/``aligned`` for
        hr-hr), table ``row``/``cells`` and ``metrics`` (the
        :func:`verification_report`: accuracy as fractions, AUC, EER, TAR@FAR, plus
        ``roc`` = at most 200 ``far``/``tar`` points).
    """
    _check_arguments(embedders, modes, sizes, hr_embedder, degrade, probe_crop)
    lfw = LFW(data)
    pairs = select_pairs(lfw, split, max_pairs_per_fold, pair_indices)
    ps = _PairSet(lfw, pairs, detector, progress, probe_crop if lr_needed(modes) else "aligned")
    run = _Run(ps, modes, fars, progress, use_cache, degrade, probe_crop)
    entries = [e for emb in embedders for e in run.model_entries(emb, hr_embedder, sizes, recipe)]
    subset = (max_pairs_per_fold, pair_indices)
    description = _describe(lfw, run, split, sizes, recipe, detector, hr_embedder, subset)
    caption = _caption(run, split, subset)
    return protocol_result("lfw", embedders, hr_embedder, description, caption, entries)


def _check_arguments(
    embedders: Sequence[Embedder],
    modes: Sequence[str],
    sizes: Sequence[int],
    hr_embedder: HrEmbedders,
    degrade: str,
    probe_crop: str,
) -> None:
    """One-line :class:`LrfaceError` for an unknown mode, LR modes without sizes, an
    unknown condition or an HR model of another embedding space."""
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise LrfaceError(f"unknown LFW mode {bad[0] if bad else ''!r}; choose {', '.join(MODES)}")
    if lr_needed(modes) and not sizes:
        raise LrfaceError("hr-lr / lr-lr need at least one size (--sizes)")
    check_condition(degrade, probe_crop)
    check_hr_embedder(embedders, hr_embedder)
    routed = any(isinstance(e, RoutedModel) for e in embedders)
    if routed and (probe_crop != "given" or list(modes) != ["hr-lr"]):
        raise LrfaceError(
            "--model auto (the default routing of pre-cut crops) is evaluated by --protocol lfw "
            "with --probe-crop given and --mode hr-lr only"
        )


@dataclasses.dataclass
class _Run:
    """The settings of one :func:`evaluate_lfw` call shared by every model's entries."""

    ps: _PairSet
    modes: Sequence[str]
    fars: Sequence[float]
    progress: bool
    use_cache: bool
    degrade: str
    probe_crop: str

    def model_entries(
        self,
        emb: Embedder,
        hr_embedder: HrEmbedders,
        sizes: Sequence[int],
        recipe: Degradation | None,
    ) -> list[dict[str, Any]]:
        """The result entries of one model: hr-hr, then each size's LR modes."""
        ps, modes = self.ps, self.modes
        hr = hr_for(hr_embedder, emb)
        hr_side = (  # (n_images, D) HR embeddings; none when no mode compares with them
            ps.embed(hr, None, self.progress, self.use_cache)
            if "hr-hr" in modes or "hr-lr" in modes
            else np.zeros((0, hr.embedding_size), np.float32)
        )
        entries = []
        if "hr-hr" in modes:
            auto = isinstance(hr_embedder, Mapping)
            entries.append(
                _hr_hr_entry(ps, emb, hr, hr_side, auto, self.fars, self.progress, self.use_cache)
            )
        lr_modes = [m for m in modes if m != "hr-hr"]
        for s in sizes if lr_modes else ():
            entries += self._lr_entries(emb, hr, hr_side, degradation_for(s, recipe), lr_modes)
        return entries

    def _lr_entries(
        self,
        emb: Embedder,
        hr: Embedder,
        hr_side: np.ndarray,
        deg: Degradation,
        lr_modes: list[str],
    ) -> list[dict[str, Any]]:
        """The hr-lr / lr-lr entries of one model at one size (``deg``)."""
        ps = self.ps
        sides = [1, 0] if "lr-lr" in lr_modes else [1]
        lr = ps.embed_lr(emb, deg, self.degrade, sides, self.progress, self.use_cache)
        text = condition_recipe(deg, self.degrade, self.probe_crop)
        hr_name = hr.name if hr is not emb else None
        entries = []
        for mode in lr_modes:
            a = hr_side[ps.ia] if mode == "hr-lr" else lr[0]
            scores = np.einsum("ij,ij->i", a, lr[1], dtype=np.float64)
            rep = _pairs_report(scores, ps.labels, ps.folds, self.fars)
            condition = (self.degrade, self.probe_crop)
            entries.append(_entry(rep, emb.name, hr_name, mode, deg.size, text, condition))
            if self.probe_crop == "given":  # share of probes aligned by found landmarks
                found = ps.given_found[(deg.size, self.degrade, 1)]
                entries[-1]["given_aligned_fraction"] = round(found, 4)
                if (deg.size, self.degrade, 1) in ps.given_paths:
                    entries[-1]["given_paths"] = ps.given_paths[(deg.size, self.degrade, 1)]
        return entries


def lr_needed(modes: Sequence[str]) -> bool:
    """Whether ``modes`` reduce any image (``hr-lr`` / ``lr-lr``)."""
    return any(m != "hr-hr" for m in modes)


def _hr_hr_entry(
    ps: _PairSet,
    emb: Embedder,
    hr: Embedder,
    hr_side: np.ndarray,
    auto: bool,
    fars: Sequence[float],
    progress: bool,
    use_cache: bool,
) -> dict[str, Any]:
    """The hr-hr entry: ``hr_side`` (the HR model's embeddings) against the model's own,
    or with ``auto`` (``--hr-model auto``) the model against itself (student vs student)."""
    if auto:
        a = b = ps.embed(emb, None, progress, use_cache)
    else:
        a = hr_side
        b = a if hr is emb else ps.embed(emb, None, progress, use_cache)
    rep = _pairs_report(_cosine(a, b, ps), ps.labels, ps.folds, fars)
    hr_name = None if auto or hr is emb else hr.name
    return _entry(rep, emb.name, hr_name, "hr-hr", None, "aligned 112x112")


def _cosine(a: np.ndarray, b: np.ndarray, ps: _PairSet) -> np.ndarray:
    """Cosine score of each pair: float64 (n_pairs,)."""
    return np.einsum("ij,ij->i", a[ps.ia], b[ps.ib], dtype=np.float64)


def _official_folds(ps: _PairSet) -> list[int]:
    return sorted({p.fold + 1 for p in ps.pairs})


def _caption(run: _Run, split: str, subset: tuple[int | None, Sequence[int] | None]) -> str:
    """The caption above the table: pairs, folds and (with LR modes) the probe condition;
    ``subset`` = ``(max_pairs_per_fold, pair_indices)``."""
    ps = run.ps
    folds = _official_folds(ps)
    custom = any(x is not None for x in subset)
    what = "subset of " if custom else ""
    text = (
        f"LFW {what}{'pairs' if custom else split + ' split'}: folds {folds[0]}-{folds[-1]}, "
        f"{len(ps.pairs)} pairs; verification accuracy %, mean (std) over "
        f"{len(folds)} cross-validated folds"
    )
    if lr_needed(run.modes):
        text += "; " + condition_caption(run.degrade, run.probe_crop)
    return text


def _describe(
    lfw: LFW,
    run: _Run,
    split: str,
    sizes: Sequence[int],
    recipe: Degradation | None,
    detector: str,
    hr: HrEmbedders,
    subset: tuple[int | None, Sequence[int] | None],
) -> dict[str, Any]:
    """The run's ``description`` for results.json; ``subset`` = ``(max_pairs_per_fold,
    pair_indices)``."""
    ps, condition = run.ps, (run.degrade, run.probe_crop)
    max_pairs_per_fold, pair_indices = subset
    return {
        "dataset": str(lfw.root),
        "pairs_file": str(lfw.pairs_file),
        "split": "custom" if pair_indices is not None else split,
        "official_folds": _official_folds(ps),
        "n_folds": int(ps.folds.max() + 1),
        "n_pairs": len(ps.pairs),
        "n_same": int(ps.labels.sum()),
        "n_diff": int((~ps.labels).sum()),
        "n_images": len(ps.rels),
        "max_pairs_per_fold": max_pairs_per_fold,
        "pair_indices": list(map(int, pair_indices)) if pair_indices is not None else None,
        "modes": {m: MODE_TITLES[m] for m in run.modes},
        "hr_lr_side": "first image of each pair HR, second reduced",
        "hr_model": hr_info(hr),
        "sizes": list(sizes),
        "recipes": {
            str(s): condition_recipe(degradation_for(s, recipe), *condition) for s in sizes
        },
        "condition": condition_info(*condition, detector),
        "alignment": f"{detector} detection (most central face), 5-point ArcFace alignment "
        "to 112x112 (lrface.datasets.facecache.aligned_crops)",
        "alignment_fallbacks": ps.n_fallback,
        "box_fallbacks": ps.n_box_fallback if condition[1] in ("box", "given") else None,
        "score": "cosine similarity of L2-normalised embeddings",
        "threshold": "k-fold cross-validation: each fold's threshold maximises accuracy on "
        "the other folds",
    }


def precompute_given(
    data: str | Path,
    sizes: Sequence[int],
    degrade_kinds: Sequence[str] = ("clean",),
    split: str = "test",
    detector: str = DEFAULT_DETECTOR,
    progress: bool = True,
    max_pairs_per_fold: int | None = None,
) -> dict[str, float]:
    """Find (and cache) the landmarks of the ``--probe-crop given`` hr-lr probes of
    ``split`` without the aligned crops, so a later :func:`evaluate_lfw` with the same
    arguments reads them from the cache.  Returns ``{"<kind>/<size>": fraction found}``."""
    lfw = LFW(data)
    pairs = select_pairs(lfw, split, max_pairs_per_fold)
    ps = _PairSet(lfw, pairs, detector, progress, "given", load_aligned=False)
    out = {}
    for kind in degrade_kinds:
        for s in sizes:
            found = ps.given_inputs(degradation_for(s, None), kind, 1, progress, True)[2]
            out[f"{kind}/{s}"] = float(found.mean())
    return out


def readme_table(result: dict[str, Any]) -> str:
    """Markdown table in the layout of the LFW README: one row per size (112 first, then
    sizes descending), one column per model and mode; cells ``accuracy % (std)``."""
    models = list(dict.fromkeys(r["model"] for r in result["results"]))
    modes = [m for m in MODES if any(r["mode"] == m for r in result["results"])]
    cells: dict[tuple[str, str, int], str] = {}
    for r in result["results"]:
        m = r["metrics"]
        cells[(r["model"], r["mode"], r["size"] or 112)] = (
            f"{100 * m['accuracy_mean']:.2f} ({100 * m['accuracy_std']:.2f})"
        )
    sizes = sorted({k[2] for k in cells}, reverse=True)
    cols = [(mo, md) for mo in models for md in modes]
    hr = (result.get("hr_model") or {}).get("name")

    def title(mo: str, md: str) -> str:
        t = MODE_TITLES[md] + (f" (HR: {hr})" if hr and md != "lr-lr" else "")
        return t if len(models) == 1 else f"{mo}: {t}"

    lines = [
        "| s | " + " | ".join(title(*c) for c in cols) + " |",
        "| --- |" + " --- |" * len(cols),
    ]
    for s in sizes:
        lines.append(f"| {s} | " + " | ".join(cells.get((*c, s), "") for c in cols) + " |")
    return "\n".join(lines)
