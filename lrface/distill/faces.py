"""Training faces: each ``--data`` source as aligned HR crops, and the teacher's targets.

:func:`load_source` turns one source (:mod:`lrface.datasets.sources`: an LFW copy's train
split, a labelled or unlabelled folder, a RecordIO pack) into a :class:`FaceSet` of uint8
BGR (112, 112, 3) aligned crops (images without a detectable face skipped and reported);
:func:`teacher_targets` embeds every crop and its mirror image once with the teacher and
caches them on disk, written in parts (a killed run resumes).  The bottom of
:mod:`lrface.distill`: :mod:`lrface.distill.guard` and :mod:`lrface.distill.data` build on it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from lrface.datasets import recordio
from lrface.datasets.facecache import aligned_crops, cache_file
from lrface.datasets.lfw import LFW, identity_of
from lrface.datasets.recordio import RecordCrops
from lrface.datasets.sources import Source, list_folder
from lrface.errors import DatasetError
from lrface.faces.detect import DEFAULT_DETECTOR, resolve_detector
from lrface.io.cache import NpzCache
from lrface.models.interface import Embedder

if TYPE_CHECKING:
    pass

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


def lfw_or_none(root: Path) -> LFW | None:
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
    root, rels, identities = list_source_images(source, lfw, holdout_folds, banned)
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


def list_source_images(
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
