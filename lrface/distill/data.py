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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from lrface.datasets import recordio
from lrface.datasets.facecache import aligned_crops, cache_file
from lrface.datasets.lfw import LFW, identity_of
from lrface.datasets.recordio import RecordCrops
from lrface.datasets.sources import Source, list_folder, parse_sources
from lrface.errors import DatasetError
from lrface.faces.detect import DEFAULT_DETECTOR, resolve_detector
from lrface.io.cache import NpzCache
from lrface.models.embedder import l2_normalize
from lrface.models.interface import Embedder

if TYPE_CHECKING:
    from lrface.distill.config import DistillConfig
    from lrface.distill.guard import Reference
    from lrface.distill.holdout import HeldOut

log = logging.getLogger("lrface")


class FaceSet:
    """Aligned faces to distil on.

    ``crops``: (N, 112, 112, 3) uint8 BGR -- an array, or for a RecordIO pack or several
    sources a lazily indexed sequence of such crops.  ``paths``: where each face came from
    (relative to ``root``; ``#<key>`` for a record of a pack).  ``identities``: the
    identity name of each face, ``""`` for an unlabelled one.  ``labels``: int64 (N,)
    class index per face (identities of different sources never merge), -1 when
    unlabelled (default: numbered from ``identities``).  ``source``: int64 (N,) index of
    each face's ``--data`` source (default: all 0).  ``recipe``: what made the crops
    besides the paths (the crop-cache file of a user folder, which covers the files' sizes
    and times and the detection order; the ``.rec`` file's size and time), part of the
    teacher-targets cache key.
    """

    def __init__(
        self,
        root: Path,
        paths: list[str],
        identities: list[str],
        crops: Any,
        labels: np.ndarray | None = None,
        source: np.ndarray | None = None,
        recipe: str = "",
    ) -> None:
        self.root, self.paths, self.identities, self.crops = root, paths, identities, crops
        self.recipe = recipe
        self.source: np.ndarray = np.zeros(len(paths), np.int64) if source is None else source
        if labels is None:
            keys = [f"{s}\0{i}" if i else "" for s, i in zip(self.source, identities)]
            named = sorted({k for k in keys if k})
            index = {k: c for c, k in enumerate(named)}
            labels = np.array([index.get(k, -1) for k in keys], np.int64)
        self.labels: np.ndarray = labels

    def __len__(self) -> int:
        return len(self.paths)


class ConcatCrops:
    """Several crop sequences seen as one: ``crops[i]`` is a (112, 112, 3) uint8 BGR crop."""

    def __init__(self, parts: Sequence[Any]) -> None:
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> np.ndarray:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return self.parts[k][i - int(self.offsets[k])]


@dataclasses.dataclass
class SourceFaces:
    """The usable faces of one ``--data`` source and what was left out of it (for the
    card): images ``listed``, ``no_face`` (no face detected: skipped, never given the
    centred fallback crop) and ``unreadable`` (paths), and after the test-identity guard
    ``dropped`` (path, nearest LFW test-split identity, cosine) and ``guard_checked``."""

    source: Source
    faces: FaceSet
    listed: int
    no_face: list[str] = dataclasses.field(default_factory=list)
    unreadable: list[str] = dataclasses.field(default_factory=list)
    dropped: list[tuple[str, str, float]] = dataclasses.field(default_factory=list)
    guard_checked: bool = False


def _lfw_or_none(root: Path) -> LFW | None:
    try:
        return LFW(root)
    except DatasetError:
        return None


def load_source(
    source: Source,
    limit: int | None = None,
    detector: str = DEFAULT_DETECTOR,
    holdout_folds: tuple[int, ...] = (),
    banned: frozenset[str] = frozenset(),
    progress: bool = True,
) -> SourceFaces:
    """Detect and align (cached) the faces of one source.

    ``lfw``: the train split minus the identities of ``holdout_folds``; ``labelled``: any
    identity in ``banned`` (LFW test identities) is refused; ``rec``: read as is (already
    aligned).  ``limit`` keeps the first N images of the source.  Images without a
    detectable face, and unreadable files, are skipped and listed in the result.
    """
    if source.kind == "rec":
        return _rec_source(source, limit)
    lfw = LFW(source.path) if source.kind == "lfw" else None
    root, rels, identities = _list_images(source, lfw, holdout_folds, banned)
    if not rels:
        raise DatasetError(f"{source.path}: no images found (expected ROOT/<identity>/<image>.jpg)")
    if limit:
        rels, identities = rels[:limit], identities[:limit]
    got, recipe = _align(source, lfw, root, rels, detector, progress)
    out = _detected_faces(source, root, rels, identities, got, recipe)
    _warn_skipped(out)
    return out


def _rec_source(source: Source, limit: int | None) -> SourceFaces:
    """The faces of a RecordIO pack, read as is (already aligned): crops a lazily decoded
    :class:`RecordCrops` ((112, 112, 3) uint8 BGR each), paths ``#<key>``, identities the
    records' labels as strings, recipe the ``.rec`` file's size and time."""
    pack = recordio.find_pack(source.path)
    if pack is None:  # parse_source checked it; the folder may have changed since
        raise DatasetError(f"--data {source.spec}: no train.rec and train.idx found there")
    crops = RecordCrops(pack, limit=limit)
    paths = [f"#{k}" for k in crops.keys.tolist()]
    st = crops.records.rec_path.stat()
    faces = FaceSet(
        Path(crops.records.rec_path),
        paths,
        [str(x) for x in crops.labels.tolist()],
        crops,
        recipe=f"rec:{st.st_size}:{st.st_mtime_ns}",
    )
    return SourceFaces(source, faces, len(paths))


def _list_images(
    source: Source, lfw: LFW | None, holdout_folds: tuple[int, ...], banned: frozenset[str]
) -> tuple[Path, list[str], list[str]]:
    """The image root, image paths (relative to it) and identity of each image of an
    ``lfw`` (train split minus the ``holdout_folds`` identities) or folder source; a
    folder holding any identity of ``banned`` is refused."""
    if lfw is not None:
        root = lfw.image_dir
        rels = training_images(lfw, holdout_folds)
        return root, rels, [identity_of(r) for r in rels]
    root, rels, identities = list_folder(source)
    leaked = sorted(set(identities) & banned)
    if leaked:
        raise DatasetError(
            f"{source.path}: {len(leaked)} identities of the LFW test split are in the "
            f"training data (e.g. {leaked[:3]}); remove them -- training on test "
            "identities is not allowed"
        )
    return root, rels, identities


def _align(
    source: Source, lfw: LFW | None, root: Path, rels: list[str], detector: str, progress: bool
) -> tuple[dict[str, np.ndarray], str]:
    """Aligned crops of ``rels`` (cached) and the recipe for the teacher-targets key.

    Returns the alignment cache's arrays, one row per path -- ``crops`` (N, 112, 112, 3)
    uint8 BGR, ``fallback`` bool (N,) (no face detected), ``unreadable`` bool (N,) when
    present -- and the crop-cache file name of a folder source (``""`` for LFW)."""
    recipe = ""
    if lfw is not None:  # shares the whole-LFW crop cache with the evaluators
        got = lfw_faces(lfw, rels, detector)
    else:  # user photos may be tight crops: the padded retry comes early
        got = aligned_crops(root, rels, detector, progress=progress, tight_crops=True)
        recipe = cache_file(root, rels, resolve_detector(detector), tight_crops=True).name
    if len(got["crops"]) != len(rels):  # defensive: a row must never shift to another path
        raise DatasetError(f"{source.path}: the alignment cache does not match the image list")
    return got, recipe


def _detected_faces(
    source: Source,
    root: Path,
    rels: list[str],
    identities: list[str],
    got: dict[str, np.ndarray],
    recipe: str,
) -> SourceFaces:
    """The source's faces without the unreadable images and those with no detected face
    (listed in ``unreadable`` and ``no_face``); ``listed`` is ``len(rels)``."""
    bad = got.get("unreadable", np.zeros(len(rels), bool)).astype(bool)
    miss = got["fallback"].astype(bool) & ~bad
    keep = np.flatnonzero(~(bad | miss))
    return SourceFaces(
        source,
        FaceSet(
            root,
            [rels[i] for i in keep],
            [identities[i] for i in keep],
            got["crops"][keep],
            recipe=recipe,
        ),
        len(rels),
        no_face=[rels[i] for i in np.flatnonzero(miss)],
        unreadable=[rels[i] for i in np.flatnonzero(bad)],
    )


def _warn_skipped(out: SourceFaces) -> None:
    """One warning per kind of skipped image (no face, unreadable) of a source, if any."""
    for what, items in (("no face detected in", out.no_face), ("could not read", out.unreadable)):
        if items:
            log.warning(
                "%s: %s %d of %d images, skipped (e.g. %s)",
                out.source.path,
                what,
                len(items),
                out.listed,
                ", ".join(items[:3]),
            )


def combine(parts: Sequence[FaceSet]) -> FaceSet:
    """One :class:`FaceSet` over several sources' faces (in order); a single source is
    returned as it is."""
    if len(parts) == 1:
        return parts[0]
    paths, identities, source = [], [], []
    for k, f in enumerate(parts):
        paths += f.paths
        identities += f.identities
        source.append(np.full(len(f.paths), k, np.int64))
    return FaceSet(
        parts[0].root,
        paths,
        identities,
        ConcatCrops([f.crops for f in parts]),
        source=np.concatenate(source),
    )


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


def holdout_identities(lfw: LFW, folds: tuple[int, ...]) -> frozenset[str]:
    """Identities of the pairs of the official (1-based) ``folds``."""
    return frozenset(identity_of(rel) for p in lfw.pairs_in_folds(folds) for rel in (p.a, p.b))


def training_images(lfw: LFW, holdout_folds: tuple[int, ...] = ()) -> list[str]:
    """The train split's images, minus every identity of the held-out ``holdout_folds``."""
    held = holdout_identities(lfw, holdout_folds)
    return [r for r in lfw.train_images() if identity_of(r) not in held]


def lfw_faces(lfw: LFW, rels: list[str], detector: str = DEFAULT_DETECTOR) -> dict[str, np.ndarray]:
    """:func:`aligned_crops`' result for ``rels``: from the whole-LFW cache (shared with the
    evaluators) when it exists or most of LFW is needed; a small subset is aligned on its
    own.  Rows follow ``rels`` (looked up by path)."""
    whole = cache_file(lfw.image_dir, lfw.all_images, resolve_detector(detector))
    if len(rels) < 2000 and not whole.is_file():
        return aligned_crops(lfw.image_dir, rels, detector)
    allc = aligned_crops(lfw.image_dir, lfw.all_images, detector)
    index = {p: i for i, p in enumerate(allc["paths"].tolist())}
    rows = [index[r] for r in rels]
    out = {k: v[rows] for k, v in allc.items() if k not in ("paths", "version")}
    out["paths"] = np.array(rels)
    return out


def lfw_crops(lfw: LFW, rels: list[str], detector: str = DEFAULT_DETECTOR) -> np.ndarray:
    """Aligned (N, 112, 112, 3) uint8 BGR crops of ``rels`` (see :func:`lfw_faces`)."""
    return lfw_faces(lfw, rels, detector)["crops"]


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
        lfw = _lfw_or_none(c)
        if lfw is not None:
            return lfw
    return None


def _test_identities(test_pairs: str | Path | None) -> frozenset[str]:
    lfw = find_lfw((), test_pairs)
    return lfw.test_identities if lfw is not None else frozenset()


def targets_cache_file(
    teacher_name: str, teacher_sha256: str, root: Path, paths: list[str], recipe: str = ""
) -> Path:
    """Where :func:`teacher_targets` keeps the targets of ``paths`` (relative to ``root``)
    whose crops were made by ``recipe`` (:attr:`FaceSet.recipe`; ``""`` for LFW, so the
    key is the one LFW targets always had)."""
    return _targets_entry(teacher_name, teacher_sha256, root, paths, recipe).path


def _targets_entry(
    teacher_name: str, teacher_sha256: str, root: Path, paths: list[str], recipe: str = ""
) -> NpzCache:
    """The :class:`lrface.io.cache.NpzCache` entry of :func:`targets_cache_file`."""
    parts = (recipe,) if recipe else ()
    return NpzCache.entry(
        "targets", teacher_name, teacher_sha256, Path(root).resolve(), *parts, *paths,
        label=teacher_name,
    )  # fmt: skip


def teacher_targets(
    faces: FaceSet, teacher: Embedder, chunk: int = 512, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Teacher embeddings of every HR crop and of its mirror image, cached on disk per
    (teacher, root, paths): one cache file per source.

    Returns two float32 (N, D) L2-normalised arrays (plain, mirrored).  The teacher is
    run without flip fusion, so each target matches exactly the view the student sees.
    Crops are embedded ``chunk`` at a time (a RecordIO pack is decoded as it goes), and
    every chunk is kept as a part of the cache
    (:meth:`lrface.io.cache.NpzCache.build`): a run killed half-way resumes there.
    """
    if teacher.sha256 is None:  # the cache key must change with the weights
        raise DatasetError(f"{teacher.name}: its card has no sha256; teacher targets need one")
    entry = _targets_entry(teacher.name, teacher.sha256, faces.root, faces.paths, faces.recipe)
    cached = entry.load()
    if cached is not None:
        return cached["plain"], cached["mirror"]
    n = len(faces.paths)
    if not n:
        d = teacher.embedding_size
        return np.zeros((0, d), np.float32), np.zeros((0, d), np.float32)

    def compute(rows: list[int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        bar = tqdm(total=len(rows), desc=f"teacher targets ({n} faces)",
                   disable=not progress or len(rows) <= chunk)  # fmt: skip
        for i in range(0, len(rows), chunk):
            crops = np.stack([faces.crops[j] for j in rows[i : i + chunk]])
            plain = teacher.embed_crops(crops, flip=False)
            mirror = teacher.embed_crops(np.ascontiguousarray(crops[:, :, ::-1]), flip=False)
            bar.update(len(crops))
            yield from zip(plain, mirror)
        bar.close()

    got = entry.build(n, chunk, ("plain", "mirror"), compute, "faces")
    plain_a = got["plain"].astype(np.float32)
    mirror_a = got["mirror"].astype(np.float32)
    entry.save(plain=plain_a, mirror=mirror_a)
    return plain_a, mirror_a


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
        _, rels, _ = _list_images(s, source_lfw, cfg.holdout_folds, banned)
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
    from lrface.distill import guard
    thr = guard.GUARD_THRESHOLD if guard_threshold is None else float(guard_threshold)
    if not -1.0 <= thr <= 1.0:
        raise DatasetError(f"--guard-threshold {thr}: a cosine in [-1, 1]")
    return thr


def _check_guard_possible(needs: list[Source], lfw: LFW | None, test_guard: bool) -> None:
    """Refuse guarded sources (``needs``) when the guard is on but neither the shipped
    templates nor an LFW copy can give it a reference (checked again, with the teacher,
    by :func:`lrface.distill.guard.test_reference`)."""
    from lrface.distill import guard
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
    ref: Reference | None = None
    checked: int = 0
    dropped: int = 0

    def reference(self) -> Reference:
        """The templates (loaded or computed once)."""
        from lrface.distill import guard
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
        from lrface.distill import guard
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
    from lrface.distill import guard
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
