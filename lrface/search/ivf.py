"""Galleries that do not fit in RAM: FAISS IVF indexes built in parts and merged on disk.

An :class:`IvfGallery` is a directory (``lrface gallery build ... --index ivf-sq8|ivf-pq``)
following the FAISS wiki "Indexes that do not fit in RAM": an IVF index is *trained* on a
sample, every *part* of the gallery is encoded into its own small IVF index, and the parts'
inverted lists are *merged on disk* into one ``.ivfdata`` file that FAISS memory-maps
itself (``faiss.contrib.ondisk.merge_ondisk``).  It is opened with only
``IO_FLAG_ONDISK_SAME_DIR`` (the ``.ivfdata`` is looked up beside the ``.index``, so the
directory can move), not with ``IO_FLAG_MMAP``, which is meant for the parts being merged
and was reported to crash when combined with on-disk lists.

Search: each probe's *shortlist* (``shortlist`` nearest compressed rows, ``nprobe`` lists
visited) is **re-scored exactly** against the stored float32 embeddings (read through a
read-only ``np.memmap``: only the shortlisted rows are paged in), then ranked like
``FlatGallery(aggregate="all")``: an identity's score is the maximum cosine over its images;
ties by row order.  The scores are exact; the *ranking* is approximate (an identity whose
images all miss the shortlist is not found), so its quality is a recall figure, measured
by ``benchmarks/ivf_recall.py`` against the exact search (RESULTS.md), not "same top-k".

Editing as with :class:`lrface.search.gallery.FlatGallery`: :meth:`IvfGallery.add` appends a
new part (searched beside the merged index until :meth:`IvfGallery.merge` folds it in);
:meth:`IvfGallery.remove` marks an identity removed (filtered out of every result; its
rows stay in the part files, so removal is instant and never rewrites the index).

Directory format (``version`` 1):

* ``meta.json``: ``{"format": "lrface-ivf-gallery", "version": 1, "model": {"name",
  "sha256", "embedding_size", "teacher"}, "threshold", "aggregate": "all", "index":
  {"kind", "factory", "nlist", "nprobe", "shortlist", "n_train"}, "labels": [identity
  name per label id], "removed": [label ids], "parts": [{"name", "n", "id0", "files":
  {file: size in bytes}}], "merged": null | {"index", "ivfdata", "parts": [names],
  "ntotal", "files": {file: size}}}``;
* ``trained.index``: the trained, empty IVF index;
* per part ``part-00000.index`` (its IVF lists, FAISS ids = global row ids ``id0 + i``),
  ``part-00000.emb.npy`` (float32 (n, D) L2-normalised), ``part-00000.lab.npy`` (int32
  (n,) label ids), ``part-00000.src.txt`` (source file per row, one per line);
* ``merged-<gen>.index`` + ``merged-<gen>.ivfdata``: the on-disk merged index (a new
  generation is written, then ``meta.json`` is switched atomically, then the old one
  deleted, so a crash never leaves a half-merged index in use).

Nothing is trusted on open: missing files, sizes that differ from ``meta.json``, arrays of
the wrong dtype/shape or an unreadable FAISS file raise :class:`LrfaceError` (one line
naming the file and the fix).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrface.errors import LrfaceError
from lrface.io.fileio import atomic_write, write_json_atomic
from lrface.io.validation import check_embeddings, check_positive_int
from lrface.search.gallery import UNKNOWN, FlatGallery, open_set_decisions
from lrface.search.interface import Gallery

if TYPE_CHECKING:
    from lrface.models.interface import Embedder

log = logging.getLogger("lrface")

__all__ = ["INDEX_KINDS", "IvfGallery", "build_ivf", "is_ivf_gallery", "open_gallery"]

FORMAT = "lrface-ivf-gallery"
VERSION = 1
META = "meta.json"
TRAINED = "trained.index"
#: ``--index`` values and what they store per row.
INDEX_KINDS = ("ivf-sq8", "ivf-pq")
_REBUILD = "rebuild it with `lrface gallery build ... --index ivf-sq8`"


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise LrfaceError(
            "IVF galleries need the faiss-cpu package; install it with `pip install faiss-cpu` "
            '(extra "lrface[faiss]")'
        ) from None
    return faiss


def is_ivf_gallery(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a directory holding an IVF gallery's ``meta.json``."""
    return (Path(path) / META).is_file()


def open_gallery(path: str | os.PathLike[str]) -> Gallery:
    """:class:`IvfGallery` for an IVF gallery directory, else :meth:`FlatGallery.load`
    (.npz): either way a :class:`lrface.search.interface.Gallery`."""
    if is_ivf_gallery(path):
        return IvfGallery.open(path)
    return FlatGallery.load(path)


#: Training rows FAISS's k-means wants per centroid (its ``min_points_per_centroid``;
#: with fewer it prints a warning on stderr and the clustering is poor).
ROWS_PER_CENTROID = 39
#: Rows of the gallery an IVF index is trained on (:func:`build_ivf`'s ``train_size``).
TRAIN_SIZE = 200_000


def default_nlist(n: int) -> int:
    """Inverted lists for ``n`` rows: about 4 sqrt(n), at least 1, at most n / 39."""
    return int(max(1, min(4 * math.sqrt(max(n, 1)), n // ROWS_PER_CENTROID or 1)))


def min_train_rows(kind: str, nlist: int) -> int:
    """Training rows an index of ``kind`` with ``nlist`` lists needs: 39 per list, and for
    ``ivf-pq`` at least 39 per centroid of its smallest (1-bit, 2-centroid) codebooks."""
    need = ROWS_PER_CENTROID * nlist
    return max(need, 2 * ROWS_PER_CENTROID) if kind == "ivf-pq" else need


def plan_nlist(
    kind: str,
    n_train: int,
    nlist: int | None = None,
    nprobe: int | None = None,
    n_rows: int | None = None,
) -> int:
    """The number of inverted lists for ``n_train`` training rows, checked before FAISS
    runs (FAISS would only print a warning on stderr and cluster badly).

    ``nlist=None``: :func:`default_nlist` of ``n_rows`` (the gallery; default
    ``n_train``), at most ``n_train // 39``.  A given ``nlist`` is never changed: one
    that needs more than ``n_train`` rows (39 per list) is refused, as is an ``nprobe``
    above the number of lists and a gallery too small for any IVF index (fewer than
    :func:`min_train_rows` of one list: use the exact index).  Raises
    :class:`LrfaceError` (one line naming the option and the largest value that works).
    """
    if kind not in INDEX_KINDS:
        raise LrfaceError(f"--index {kind!r}: choose one of exact, {', '.join(INDEX_KINDS)}")
    if nlist is not None:
        check_positive_int(nlist, "--nlist")
    if nprobe is not None:
        check_positive_int(nprobe, "--nprobe")
    least = min_train_rows(kind, 1)
    if n_train < least:
        raise LrfaceError(
            f"--index {kind}: {n_train} rows are too few for an IVF index (it trains on at "
            f"least {least}, {ROWS_PER_CENTROID} per centroid); use --index exact, which "
            "suits galleries this small"
        )
    most = n_train // ROWS_PER_CENTROID
    if nlist is None:
        nlist = min(default_nlist(n_rows or n_train), most)
    elif min_train_rows(kind, nlist) > n_train:
        raise LrfaceError(
            f"--nlist {nlist}: needs at least {ROWS_PER_CENTROID * nlist} training rows "
            f"({ROWS_PER_CENTROID} per list), there are {n_train}; pass --nlist {most} or "
            "less, or leave it out"
        )
    if nprobe is not None and nprobe > nlist:
        raise LrfaceError(
            f"--nprobe {nprobe}: more than the {nlist} inverted lists; pass --nprobe {nlist} "
            "or less"
        )
    return int(nlist)


def _factory(kind: str, dim: int, nlist: int, n_train: int) -> str:
    if kind == "ivf-sq8":
        return f"IVF{nlist},SQ8"
    if kind == "ivf-pq":
        m = next(m for m in (dim // 8, dim // 4, dim // 2, dim) if m and dim % m == 0)
        nbits = max(1, min(8, int(math.log2(max(n_train / 39, 2)))))  # 39 points per centroid
        return f"IVF{nlist},PQ{m}x{nbits}"
    raise LrfaceError(f"--index {kind!r}: choose one of exact, {', '.join(INDEX_KINDS)}")


class IvfGallery:
    """An on-disk IVF gallery directory (module docstring); it implements
    :class:`lrface.search.interface.Gallery` (as :class:`lrface.search.gallery.FlatGallery`
    does)."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.meta = meta
        m = meta["model"]
        self.model_name = str(m["name"])
        self.model_sha256 = m.get("sha256")
        self.embedding_size = int(m["embedding_size"])
        self.teacher = m.get("teacher")
        self.threshold = meta.get("threshold")
        self.aggregate = "all"
        self._indexes: list[tuple[Any, str]] | None = None  # (faiss index, its file name)
        self._parts: list[dict[str, Any]] | None = None  # loaded arrays per part

    # ------------------------------------------------------------------ creation

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        train: np.ndarray,
        model: dict[str, Any],
        threshold: float | None,
        kind: str = "ivf-sq8",
        nlist: int | None = None,
        nprobe: int | None = None,
        shortlist: int = 256,
        n_rows: int | None = None,
    ) -> IvfGallery:
        """Train an empty IVF gallery in the new directory ``path``.

        ``train``: float32 (n, D) L2-normalised sample of the rows to come (a few hundred
        thousand suffice for millions of rows).  ``model``: ``{"name", "sha256",
        "embedding_size", "teacher"}``.  ``nlist`` defaults to :func:`default_nlist` of
        ``n_rows`` (else of the sample), at most ``len(train) // 39``; ``nprobe`` to
        ``max(1, nlist // 8)``.  Both are checked by :func:`plan_nlist` before FAISS runs.
        """
        faiss = _faiss()
        dim = int(model["embedding_size"])
        x = check_embeddings(
            train, "training embeddings", allow_empty=True, dim=dim, model=model.get("name")
        )
        if len(x) == 0:
            raise LrfaceError("cannot train an IVF index on zero embeddings")
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise LrfaceError(f"{path}: exists and is not empty; choose a new --out directory")
        nlist = plan_nlist(kind, len(x), nlist, nprobe, n_rows)
        factory = _factory(kind, dim, nlist, len(x))
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        index.train(x)
        path.mkdir(parents=True, exist_ok=True)
        _write_index(index, path / TRAINED)
        index_meta = _index_meta(kind, factory, nlist, nprobe, shortlist, len(x))
        meta = cls._new_meta(model, threshold, index_meta)
        write_json_atomic(path / META, meta)
        log.info("ivf: trained %s on %d rows in %s", factory, len(x), path)
        return cls(path, meta)

    @staticmethod
    def _new_meta(
        model: dict[str, Any],
        threshold: float | None,
        index: dict[str, Any],
    ) -> dict[str, Any]:
        """``meta.json`` of a new, empty gallery (module docstring); ``index``: its
        ``{"kind", "factory", "nlist", "nprobe", "shortlist", "n_train"}`` entry."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": dict(model),
            "threshold": threshold,
            "aggregate": "all",
            "index": index,
            "labels": [],
            "removed": [],
            "parts": [],
            "merged": None,
        }

    def add_part(
        self, labels: Sequence[str], embeddings: np.ndarray, sources: Sequence[str]
    ) -> str:
        """Encode one part (``labels``/``sources``: n strings; ``embeddings`` float (n, D)
        L2-normalised) into its own files; returns the part name.  Searched at once; folded
        into the on-disk index by :meth:`merge`."""
        faiss = _faiss()
        e = self._check_part(labels, embeddings, sources)
        lab = self._label_ids(labels)
        k = len(self.meta["parts"])
        name = f"part-{k:05d}"
        id0 = sum(p["n"] for p in self.meta["parts"])
        index = faiss.read_index(str(self.path / TRAINED))
        if len(e):
            index.add_with_ids(e, np.arange(id0, id0 + len(e), dtype=np.int64))
        _write_index(index, self.path / f"{name}.index")
        sizes = self._write_part_arrays(name, e, lab, sources)
        self.meta["parts"].append({"name": name, "n": len(e), "id0": id0, "files": sizes})
        write_json_atomic(self.path / META, self.meta)
        self._indexes = self._parts = None
        return name

    def _check_part(
        self, labels: Sequence[str], embeddings: np.ndarray, sources: Sequence[str]
    ) -> np.ndarray:
        """float32 (n, D) ``embeddings``, validated (L2-normalised, D = the gallery's), with
        ``labels`` (n identity names, not ``unknown``) and ``sources`` (n names without line
        breaks); anything else raises :class:`LrfaceError`."""
        e = check_embeddings(
            embeddings,
            "embeddings",
            allow_empty=True,
            dim=self.embedding_size,
            model=self.model_name,
        )
        if not (len(labels) == len(sources) == len(e)):
            raise LrfaceError(
                f"add_part: {len(e)} embeddings, {len(labels)} labels, {len(sources)} sources"
            )
        if any(not isinstance(n, str) or not n.strip() or n == UNKNOWN for n in labels):
            raise LrfaceError("identity labels must be non-empty strings other than 'unknown'")
        if any(any(c in str(s) for c in "\n\r") for s in sources):
            raise LrfaceError("a source name contains a line break; rename the file")
        return e

    def _label_ids(self, labels: Sequence[str]) -> np.ndarray:
        """int32 (n,) label id of each name in ``labels``; a name that is not enrolled (or
        was removed) gets a new id, appended to ``meta["labels"]``."""
        live = self._live_labels()
        names = self.meta["labels"]
        lab = np.empty(len(labels), np.int32)
        for i, n in enumerate(labels):
            if n not in live:
                live[n] = len(names)
                names.append(n)
            lab[i] = live[n]
        return lab

    def _write_part_arrays(
        self, name: str, e: np.ndarray, lab: np.ndarray, sources: Sequence[str]
    ) -> dict[str, int]:
        """Write part ``name``'s float32 (n, D) ``e``, int32 (n,) ``lab`` and source list
        atomically beside its ``.index`` (already written); returns the four files' sizes
        in bytes (``.index``, ``.emb.npy``, ``.lab.npy``, ``.src.txt``)."""
        files = {
            f"{name}.index": None,
            f"{name}.emb.npy": e,
            f"{name}.lab.npy": lab,
            f"{name}.src.txt": "".join(f"{s}\n" for s in sources),
        }
        for fname, content in files.items():
            if isinstance(content, np.ndarray):
                with atomic_write(self.path / fname, "wb") as fh:
                    np.save(fh, content, allow_pickle=False)
            elif isinstance(content, str):
                with atomic_write(self.path / fname, "w") as fh:
                    fh.write(content)
        return {f: (self.path / f).stat().st_size for f in files}

    def merge(self) -> None:
        """Merge every part's inverted lists into a new on-disk ``merged-<gen>`` index.

        Memory stays bounded (the parts' lists are memory-mapped while merging); the new
        generation replaces the old one atomically through ``meta.json``.
        """
        faiss = _faiss()
        from faiss.contrib.ondisk import merge_ondisk

        parts = [p["name"] for p in self.meta["parts"]]
        old = self.meta["merged"]
        gen = 0 if old is None else int(old["index"].split("-")[1].split(".")[0]) + 1
        idx_name, data_name = f"merged-{gen:05d}.index", f"merged-{gen:05d}.ivfdata"
        index = faiss.read_index(str(self.path / TRAINED))
        with _quiet_stdout():  # FAISS prints progress with printf
            merge_ondisk(index, [str(self.path / f"{p}.index") for p in parts],
                         str(self.path / data_name))  # fmt: skip
        _write_index(index, self.path / idx_name)
        self.meta["merged"] = {
            "index": idx_name,
            "ivfdata": data_name,
            "parts": parts,
            "ntotal": int(index.ntotal),
            "files": {f: (self.path / f).stat().st_size for f in (idx_name, data_name)},
        }
        write_json_atomic(self.path / META, self.meta)
        if old is not None:
            for f in (old["index"], old["ivfdata"]):
                (self.path / f).unlink(missing_ok=True)
        self._indexes = None

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> IvfGallery:
        """Open and validate an IVF gallery directory (see the module docstring)."""
        path = Path(path)
        try:
            meta = json.loads((path / META).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LrfaceError(f"{path}: no {META}; not an lrface IVF gallery; {_REBUILD}") from None
        except (OSError, ValueError) as exc:
            raise LrfaceError(
                f"{path / META}: unreadable ({' '.join(str(exc).split())}); {_REBUILD}"
            ) from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise LrfaceError(f"{path}: not an lrface IVF gallery (bad {META}); {_REBUILD}")
        if meta.get("version") != VERSION:
            raise LrfaceError(
                f"{path}: IVF gallery version {meta.get('version')!r} is not supported "
                f"(this lrface reads {VERSION}); {_REBUILD}"
            )
        try:
            g = cls(path, meta)
            g._validate()
        except (KeyError, TypeError, ValueError) as exc:
            raise LrfaceError(f"{path / META}: invalid ({exc!r}); {_REBUILD}") from None
        g._load()
        return g

    def _validate(self) -> None:
        """Cheap checks of every file named in meta.json (existence and size)."""
        want: dict[str, int] = {}
        for p in self.meta["parts"]:
            want.update({f: int(s) for f, s in p["files"].items()})
        merged = self.meta["merged"]
        if merged is not None:
            want.update({f: int(s) for f, s in merged["files"].items()})
        if not (self.path / TRAINED).is_file():
            raise LrfaceError(f"{self.path / TRAINED}: missing; {_REBUILD}")
        for f, size in want.items():
            p = self.path / f
            if not p.is_file():
                raise LrfaceError(f"{p}: missing from the IVF gallery; {_REBUILD}")
            if p.stat().st_size != size:
                raise LrfaceError(
                    f"{p}: corrupt IVF gallery part ({p.stat().st_size} bytes, meta.json "
                    f"records {size}); {_REBUILD}"
                )

    def _load(self) -> None:
        """Memory-map each part's arrays and open the FAISS indexes (validated)."""
        faiss = _faiss()
        self._parts = [self._load_part(p) for p in self.meta["parts"]]
        merged = self.meta["merged"]
        covered = set(merged["parts"]) if merged else set()
        indexes: list[tuple[Any, str]] = []
        files = [merged["index"]] if merged else []
        files += [f"{p['name']}.index" for p in self.meta["parts"] if p["name"] not in covered]
        for f in files:
            try:
                with _quiet_stdout():  # it prints the ivfdata path it resolves
                    index = faiss.read_index(str(self.path / f), faiss.IO_FLAG_ONDISK_SAME_DIR)
            except RuntimeError as exc:
                msg = " ".join(str(exc).split())[:160]
                raise LrfaceError(
                    f"{self.path / f}: corrupt IVF gallery index ({msg}); {_REBUILD}"
                ) from None
            if index.d != self.embedding_size:
                raise LrfaceError(f"{self.path / f}: index of dimension {index.d}; {_REBUILD}")
            indexes.append((index, f))
        self._indexes = indexes

    def _load_part(self, p: dict[str, Any]) -> dict[str, Any]:
        """Memory-map one part's arrays (``p``: its ``meta.json`` entry), validated.

        Returns ``{"name", "id0", "n", "emb": read-only float32 (n, D) memmap, "lab":
        int32 (n,) memmap of label ids}``; a corrupt part raises :class:`LrfaceError`.
        """
        name = p["name"]
        try:
            emb = np.load(self.path / f"{name}.emb.npy", mmap_mode="r", allow_pickle=False)
            lab = np.load(self.path / f"{name}.lab.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise LrfaceError(
                f"{self.path / name}: corrupt IVF gallery part ({' '.join(str(exc).split())}"
                f"); {_REBUILD}"
            ) from None
        n = int(p["n"])
        if (
            emb.dtype != np.float32
            or emb.shape != (n, self.embedding_size)
            or lab.dtype != np.int32
            or lab.shape != (n,)
            or (n and (lab.min() < 0 or lab.max() >= len(self.meta["labels"])))
        ):
            raise LrfaceError(
                f"{self.path / name}: corrupt IVF gallery part (arrays {emb.dtype} "
                f"{emb.shape} / {lab.dtype} {lab.shape}, expected {n} rows); {_REBUILD}"
            )
        return {"name": name, "id0": int(p["id0"]), "n": n, "emb": emb, "lab": lab}

    # ------------------------------------------------------------------ contents

    def _live_labels(self) -> dict[str, int]:
        removed = set(self.meta["removed"])
        return {n: i for i, n in enumerate(self.meta["labels"]) if i not in removed}

    @property
    def identities(self) -> list[str]:
        """Enrolled (not removed) identity labels, in enrolment order."""
        return list(self._live_labels())

    def __len__(self) -> int:
        return len(self._live_labels())

    def __contains__(self, identity: object) -> bool:
        return identity in self._live_labels()

    @property
    def n_images(self) -> int:
        """Rows stored, removed identities excluded."""
        removed = np.array(sorted(self.meta["removed"]), np.int32)
        return int(sum(np.count_nonzero(~np.isin(p["lab"], removed)) for p in self._arrays()))

    def image_counts(self) -> dict[str, int]:
        """``{identity: rows stored}`` for the enrolled (not removed) identities, in
        enrolment order."""
        counts = np.zeros(len(self.meta["labels"]), np.int64)
        for p in self._arrays():
            counts += np.bincount(np.asarray(p["lab"]), minlength=len(counts))
        return {n: int(counts[i]) for n, i in self._live_labels().items()}

    @property
    def index_description(self) -> str:
        """One line: what searches this gallery (for ``identify``)."""
        i = self.meta["index"]
        pending = len(self.meta["parts"]) - len((self.meta["merged"] or {}).get("parts", []))
        return (
            f"{i['kind']} ({i['factory']}, nprobe {i['nprobe']}, shortlist {i['shortlist']} "
            f"re-scored exactly; {len(self.meta['parts'])} part(s), {pending} not merged; "
            "approximate: recall vs exact search in RESULTS.md)"
        )

    def __repr__(self) -> str:
        return f"IvfGallery({str(self.path)!r}, {self.meta['index']['factory']}, ids={len(self)})"

    # ------------------------------------------------------------------ editing

    def add(self, identity: str, embeddings: np.ndarray, sources: Sequence[str]) -> None:
        """Enrol images of ``identity`` (appended if enrolled) as a new part."""
        if not isinstance(identity, str) or not identity.strip() or identity == UNKNOWN:
            raise LrfaceError("identity must be a non-empty string other than 'unknown'")
        self.add_part([identity] * len(sources), embeddings, sources)

    def remove(self, identity: str, sources: Sequence[str] | None = None) -> int:
        """Remove ``identity`` (all its images); returns how many images it had."""
        live = self._live_labels()
        if identity not in live:
            raise LrfaceError(f"identity {identity!r} is not enrolled in the gallery")
        if sources is not None:
            raise LrfaceError(
                "an IVF gallery removes whole identities; remove the identity and add it "
                "again with the images to keep"
            )
        label = live[identity]
        n = int(sum(np.count_nonzero(p["lab"] == label) for p in self._arrays()))
        self.meta["removed"].append(label)
        write_json_atomic(self.path / META, self.meta)
        return n

    def _arrays(self) -> list[dict[str, Any]]:
        if self._parts is None:
            self._load()
        return self._parts  # type: ignore[return-value]

    # ------------------------------------------------------------------ matching

    def check_model(self, embedder: Embedder) -> None:
        """As :meth:`lrface.search.gallery.FlatGallery.check_model`."""
        g = FlatGallery(self.model_name, self.model_sha256, self.embedding_size, "all", None,
                    self.teacher)  # fmt: skip
        g.check_model(embedder)

    def search(
        self,
        probe_embeddings: np.ndarray,
        top_k: int = 5,
        threshold: float | None = None,
        backend: str = "auto",
        embedder: Embedder | None = None,
        nprobe: int | None = None,
        shortlist: int | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Best identities per probe: up to ``top_k`` ``(identity, exact cosine)`` pairs.

        ``probe_embeddings``: float (P, D) L2-normalised.  ``nprobe``/``shortlist``
        override the stored defaults.  ``backend`` is accepted for API compatibility.
        """
        if embedder is not None:
            self.check_model(embedder)
        p = np.asarray(probe_embeddings)
        p = check_embeddings(
            p[None] if p.ndim == 1 else p,
            "probe embeddings",
            allow_empty=True,
            dim=self.embedding_size,
            model=self.model_name,
        )
        check_positive_int(top_k, "top_k")
        if self._indexes is None:
            self._load()
        cands = self._shortlists(p, nprobe, shortlist)
        parts = self._arrays()
        id0s = np.array([q["id0"] for q in parts], np.int64)
        removed = set(self.meta["removed"])
        names = self.meta["labels"]
        out = []
        for r in range(len(p)):
            ids = np.unique(np.concatenate([c[r] for c in cands])) if cands else np.zeros(0)
            ids = ids[ids >= 0].astype(np.int64)
            hits = self._rescore(p[r], ids, parts, id0s)
            row = [(names[lab], s) for lab, s in _best_per_label(hits, removed, top_k)]
            if threshold is not None:
                row = [(n, s) for n, s in row if s >= threshold]
            out.append(row)
        return out

    def _shortlists(
        self, p: np.ndarray, nprobe: int | None, shortlist: int | None
    ) -> list[np.ndarray]:
        """Per searched index (the merged one and the unmerged parts, empty ones skipped):
        int64 (P, k) row ids of the ``shortlist`` nearest compressed rows of each float32
        (P, D) probe (-1 where fewer), ``nprobe`` lists visited (defaults: ``meta.json``)."""
        idx_meta = self.meta["index"]
        npr = int(nprobe or idx_meta["nprobe"])
        sl = int(shortlist or idx_meta["shortlist"])
        cands = []
        for index, _ in self._indexes or []:
            if index.ntotal == 0:
                continue
            _ivf(index).nprobe = npr
            cands.append(index.search(p, min(sl, int(index.ntotal)))[1])
        return cands

    @staticmethod
    def _rescore(
        probe: np.ndarray, ids: np.ndarray, parts: list[dict[str, Any]], id0s: np.ndarray
    ) -> list[tuple[int, float]]:
        """``(label, exact score)`` of rows ``ids``, by score descending then row id."""
        if len(ids) == 0:
            return []
        which = np.searchsorted(id0s, ids, side="right") - 1
        vecs = np.empty((len(ids), len(probe)), np.float64)
        labs = np.empty(len(ids), np.int64)
        for k in np.unique(which):
            sel = which == k
            local = ids[sel] - id0s[k]
            vecs[sel] = parts[k]["emb"][local]
            labs[sel] = parts[k]["lab"][local]
        scores = (vecs @ probe.astype(np.float64)).astype(np.float32)
        order = np.lexsort((ids, -scores))
        return [(int(labs[i]), float(scores[i])) for i in order]

    def identify(
        self,
        probe_embeddings: np.ndarray,
        threshold: float | None = None,
        top_k: int = 5,
        backend: str = "auto",
        embedder: Embedder | None = None,
    ) -> list[dict[str, Any]]:
        """Open-set decision per probe, as :meth:`lrface.search.gallery.FlatGallery.identify`."""
        thr = self.threshold if threshold is None else threshold
        hits = self.search(probe_embeddings, top_k, None, backend, embedder)
        return open_set_decisions(hits, thr, self.model_name)


def _index_meta(
    kind: str, factory: str, nlist: int, nprobe: int | None, shortlist: int, n_train: int
) -> dict[str, Any]:
    """``meta.json``'s ``index`` entry; ``nprobe`` defaults to ``max(1, nlist // 8)``."""
    return {
        "kind": kind,
        "factory": factory,
        "nlist": nlist,
        "nprobe": int(nprobe or max(1, nlist // 8)),
        "shortlist": int(shortlist),
        "n_train": n_train,
    }


def _best_per_label(
    hits: list[tuple[int, float]], removed: set[int], top_k: int
) -> list[tuple[int, float]]:
    """Up to ``top_k`` ``(label, score)``: each label's first (best) score in the ranked
    ``hits``, labels in ``removed`` skipped, in order of first appearance."""
    seen: dict[int, float] = {}
    for lab, score in hits:
        if lab in removed or lab in seen:
            continue
        seen[lab] = score
        if len(seen) == top_k:
            break
    return list(seen.items())


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null (FAISS's C++ printf would corrupt ``--json``)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _ivf(index: Any) -> Any:
    return _faiss().extract_index_ivf(index)


def _write_index(index: Any, path: Path) -> None:
    """Write a FAISS index to ``path`` atomically: a temporary file, flushed to disk
    (fsync), then renamed over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    _faiss().write_index(index, str(tmp))
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def build_ivf(
    path: str | os.PathLike[str],
    parts: Iterable[tuple[Sequence[str], np.ndarray, Sequence[str]]],
    model: dict[str, Any],
    threshold: float | None,
    kind: str = "ivf-sq8",
    train_size: int = TRAIN_SIZE,
    nlist: int | None = None,
    nprobe: int | None = None,
    shortlist: int = 256,
    n_rows: int | None = None,
) -> IvfGallery:
    """Build an IVF gallery from ``(labels, float32 (n, D) embeddings, sources)`` parts.

    The index is trained on the first ``train_size`` rows (parts are held in memory only
    until that many have arrived), every part is encoded into its own files, and the parts
    are merged on disk.  Memory: one part plus the training sample.
    """
    it = iter(parts)
    held: list[tuple[Sequence[str], np.ndarray, Sequence[str]]] = []
    n = 0
    for part in it:
        held.append(part)
        n += len(part[1])
        if n >= train_size:
            break
    if n == 0:
        raise LrfaceError("no embeddings to build an IVF gallery from")
    sample = np.concatenate([np.asarray(e, np.float32) for _, e, _ in held])[:train_size]
    g = IvfGallery.create(
        path, sample, model, threshold, kind, nlist, nprobe, shortlist, n_rows or None
    )
    for labels, emb, src in held:
        g.add_part(labels, emb, src)
    held.clear()
    for labels, emb, src in it:
        g.add_part(labels, emb, src)
    g.merge()
    return IvfGallery.open(g.path)


def gallery_parts(
    gallery: FlatGallery, part_size: int
) -> Iterable[tuple[list[str], np.ndarray, list]]:
    """Parts of ``part_size`` rows of an in-memory :class:`lrface.search.gallery.FlatGallery`."""
    labels, embs, srcs = [], [], []
    for name in gallery.identities:
        e = gallery.embeddings_of(name)
        labels.extend([name] * len(e))
        embs.append(e)
        srcs.extend(gallery.sources_of(name))
    emb = np.concatenate(embs) if embs else np.zeros((0, gallery.embedding_size), np.float32)
    for a in range(0, len(emb), part_size):
        yield labels[a : a + part_size], emb[a : a + part_size], srcs[a : a + part_size]


def model_meta(gallery: Gallery) -> dict[str, Any]:
    """The ``model`` entry of an IVF gallery built from an in-memory FlatGallery."""
    return {
        "name": gallery.model_name,
        "sha256": gallery.model_sha256,
        "embedding_size": gallery.embedding_size,
        "teacher": gallery.teacher,
    }
