"""A gallery of enrolled identities and open-set identification against it.

A :class:`Gallery` stores, per identity, the L2-normalised float32 embeddings of its
enrolment images and their source files, plus the model that produced them (name,
sha256, embedding size, and for a distilled student the teacher whose embedding space it
shares).  Two matching modes:

* ``aggregate="mean"``: one template per identity, the re-normalised mean of its image
  embeddings.  The per-image embeddings are kept, so adding or removing images only
  recomputes that identity's template; nothing is re-embedded.
* ``aggregate="all"``: every image is matched; an identity's score is the maximum over
  its images.

Model check (:meth:`Gallery.check_model`): probes must come from a model in the same
embedding space -- the gallery's model itself, or a student whose card names it (or
the gallery model's teacher) as ``teacher``, e.g. LR probes embedded by a student searched
in a gallery the teacher built from HR photos.  Anything else raises :class:`LrfaceError`.

Ranking: identities by score descending; equal scores are broken by enrolment order
(the order of :attr:`Gallery.identities`, then image order within an identity).

File format (:meth:`Gallery.save`, one ``.npz`` written atomically, loadable with
``np.load(path, allow_pickle=False)``):

* ``embeddings``: float32 (N, D), per-image embeddings, rows grouped by identity in
  enrolment order;
* ``labels``: unicode (N,), the identity of each row;
* ``sources``: unicode (N,), the source file of each row;
* ``meta``: 0-d unicode array holding JSON: ``{"format": "lrface-gallery", "version": 1,
  "model": {"name", "sha256", "embedding_size", "teacher"}, "aggregate", "threshold",
  "identities": [...], "n_images"}``.

Mean templates are not stored; they are recomputed on load (deterministically).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetError, LrfaceError
from .fileio import save_npz_atomic
from .search import search as _search

log = logging.getLogger("lrface")

__all__ = ["AGGREGATES", "UNKNOWN", "Gallery", "build_gallery"]

#: Label returned by :meth:`Gallery.identify` for a probe below the threshold.
UNKNOWN = "unknown"
#: Accepted values of ``aggregate``.
AGGREGATES = ("mean", "all")
FORMAT = "lrface-gallery"
VERSION = 1
_NORM_TOL = 1e-2


class Gallery:
    """Enrolled identities with their embeddings; see the module docstring.

    ``len(gallery)`` is the number of identities; :attr:`n_images` the number of stored
    image embeddings.
    """

    def __init__(
        self,
        model_name: str,
        model_sha256: str | None,
        embedding_size: int,
        aggregate: str = "mean",
        threshold: float | None = None,
        teacher: dict[str, Any] | None = None,
    ) -> None:
        if aggregate not in AGGREGATES:
            raise LrfaceError(f"unknown aggregate {aggregate!r}; choose 'mean' or 'all'")
        self.model_name = str(model_name)
        self.model_sha256 = model_sha256
        self.embedding_size = int(embedding_size)
        self.aggregate = aggregate
        #: Default decision threshold (cosine; known if score >= threshold).
        self.threshold = threshold
        #: ``{"name", "sha256"}`` of the teacher a student model was distilled from, else None.
        self.teacher = dict(teacher) if teacher else None
        self._emb: dict[str, np.ndarray] = {}  # identity -> float32 (n_i, D)
        self._src: dict[str, list[str]] = {}  # identity -> n_i source files
        self._cache: tuple[np.ndarray, np.ndarray] | None = None  # (matrix, owner ids)

    @classmethod
    def for_embedder(cls, embedder: Any, aggregate: str = "mean") -> Gallery:
        """An empty gallery for the model of ``embedder`` (name, sha256, size, threshold)."""
        return cls(
            embedder.name,
            embedder.sha256,
            embedder.embedding_size,
            aggregate,
            embedder.threshold,
            _teacher_of(embedder),
        )

    # ------------------------------------------------------------------ contents

    @property
    def identities(self) -> list[str]:
        """Enrolled identity labels in enrolment order."""
        return list(self._emb)

    def __len__(self) -> int:
        return len(self._emb)

    def __contains__(self, identity: object) -> bool:
        return identity in self._emb

    @property
    def n_images(self) -> int:
        """Number of stored per-image embeddings."""
        return sum(len(e) for e in self._emb.values())

    def embeddings_of(self, identity: str) -> np.ndarray:
        """float32 (n_i, D) image embeddings of ``identity`` (a read-only view)."""
        e = self._emb[self._require(identity)].view()
        e.flags.writeable = False
        return e

    def sources_of(self, identity: str) -> list[str]:
        """Source files of ``identity``'s images, in the order of :meth:`embeddings_of`."""
        return list(self._src[self._require(identity)])

    def template(self, identity: str) -> np.ndarray:
        """float32 (D,) mean template of ``identity`` (L2-normalised)."""
        return _mean_template(self._emb[self._require(identity)])

    def __repr__(self) -> str:
        return (
            f"Gallery({self.model_name!r}, aggregate={self.aggregate!r}, "
            f"identities={len(self)}, images={self.n_images})"
        )

    # ------------------------------------------------------------------ editing

    def add(self, identity: str, embeddings: np.ndarray, sources: Sequence[str]) -> None:
        """Enrol images of ``identity`` (appended if it already exists).

        ``embeddings``: float (n, D) L2-normalised, D = :attr:`embedding_size`;
        ``sources``: n source names (files).  Only this identity's template changes.
        """
        if not isinstance(identity, str) or not identity.strip():
            raise LrfaceError(f"identity must be a non-empty string, got {identity!r}")
        if identity == UNKNOWN:
            raise LrfaceError(f"identity label {UNKNOWN!r} is reserved for rejected probes")
        e = self._check_embeddings(embeddings, f"embeddings of {identity!r}")
        src = [str(s) for s in sources]
        if len(src) != len(e):
            raise LrfaceError(f"{identity}: {len(e)} embeddings but {len(src)} sources")
        if len(e) == 0:
            return
        if identity in self._emb:
            self._emb[identity] = np.concatenate([self._emb[identity], e])
            self._src[identity] = self._src[identity] + src
        else:
            self._emb[identity] = e.copy()
            self._src[identity] = src
        self._cache = None

    def remove(self, identity: str, sources: Sequence[str] | None = None) -> int:
        """Remove ``identity`` entirely, or only its images from ``sources``.

        An identity left without images is removed.  Returns the number of images
        removed; raises :class:`LrfaceError` if the identity is not enrolled.
        """
        self._require(identity)
        if sources is None:
            n = len(self._emb.pop(identity))
            del self._src[identity]
        else:
            drop = {str(s) for s in sources}
            keep = [i for i, s in enumerate(self._src[identity]) if s not in drop]
            n = len(self._src[identity]) - len(keep)
            if not keep:
                del self._emb[identity], self._src[identity]
            else:
                self._emb[identity] = self._emb[identity][keep]
                self._src[identity] = [self._src[identity][i] for i in keep]
        self._cache = None
        return n

    # ------------------------------------------------------------------ matching

    def check_model(self, embedder: Any) -> None:
        """Raise :class:`LrfaceError` unless ``embedder`` embeds into the gallery's space.

        Accepted: the same model (name equal, sha256 equal when both are known) or a model
        sharing its embedding space (a student whose card names the gallery model, or the
        gallery model's teacher, as ``teacher``); the embedding size must match.
        """
        name = getattr(embedder, "name", str(embedder))
        sha = getattr(embedder, "sha256", None)
        dim = getattr(embedder, "embedding_size", self.embedding_size)
        ours = {"name": self.model_name, "sha256": self.model_sha256}
        theirs = {"name": name, "sha256": sha}
        spaces_ours = [ours] + ([self.teacher] if self.teacher else [])
        spaces_theirs = [theirs] + ([t] if (t := _teacher_of(embedder)) else [])
        same_space = any(_same_model(a, b) for a in spaces_ours for b in spaces_theirs)
        if not (same_space and int(dim) == self.embedding_size):
            ours = _describe(self.model_name, self.model_sha256, self.embedding_size)
            raise LrfaceError(
                f"gallery was built with model {ours} "
                f"but the probes use {_describe(name, sha, int(dim))}; embeddings of different "
                f"models are not comparable: use --model {self.model_name} or rebuild the gallery"
            )

    def search(
        self,
        probe_embeddings: np.ndarray,
        top_k: int = 5,
        threshold: float | None = None,
        backend: str = "auto",
        embedder: Any = None,
    ) -> list[list[tuple[str, float]]]:
        """Best identities for each probe.

        ``probe_embeddings``: float (P, D) L2-normalised (a single (D,) vector is taken as
        P = 1).  Returns P lists of up to ``top_k`` ``(identity, score)`` pairs, best
        first (identity score: cosine to the mean template, or max over its images in
        ``"all"`` mode); with ``threshold``, pairs scoring below it are dropped.  Pass
        ``embedder`` to check it is the gallery's model first.
        """
        if embedder is not None:
            self.check_model(embedder)
        p = self._check_probes(probe_embeddings)
        if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
            raise LrfaceError(f"top_k must be a positive integer, got {top_k!r}")
        if not self._emb:
            return [[] for _ in range(len(p))]
        matrix, owner = self._matrix()
        names = self.identities
        if self.aggregate == "mean":
            scores, idx = _search(p, matrix, int(top_k), backend=backend)
            ranked = [
                list(zip(row_i.tolist(), row_s.tolist())) for row_i, row_s in zip(idx, scores)
            ]
        else:
            ranked = _rank_identities_all(p, matrix, owner, int(top_k), backend)
        out = []
        for row in ranked:
            hits = [(names[i], float(s)) for i, s in row]
            if threshold is not None:
                hits = [(n, s) for n, s in hits if s >= threshold]
            out.append(hits)
        return out

    def identify(
        self,
        probe_embeddings: np.ndarray,
        threshold: float | None = None,
        top_k: int = 5,
        backend: str = "auto",
        embedder: Any = None,
    ) -> list[dict[str, Any]]:
        """Open-set decision per probe.

        Returns one dict per probe: ``{"identity": best identity, or "unknown" when its
        score < threshold (or the gallery is empty), "score": best score (float, NaN if
        empty), "candidates": [{"identity", "score"}, ...] (top_k, best first,
        unthresholded)}``.  ``threshold`` defaults to :attr:`threshold` (the model's).
        """
        thr = self.threshold if threshold is None else threshold
        if thr is None:
            raise LrfaceError(
                f"no decision threshold: model {self.model_name} has none; pass --threshold"
            )
        results = []
        for hits in self.search(probe_embeddings, top_k, None, backend, embedder):
            best, score = hits[0] if hits else (UNKNOWN, float("nan"))
            results.append(
                {
                    "identity": best if hits and score >= thr else UNKNOWN,
                    "score": score,
                    "candidates": [{"identity": n, "score": s} for n, s in hits],
                }
            )
        return results

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the gallery to ``path`` atomically (format: see the module docstring)."""
        names = self.identities
        emb = (
            np.concatenate([self._emb[n] for n in names])
            if names
            else np.zeros((0, self.embedding_size), np.float32)
        )
        labels = np.array([n for n in names for _ in self._src[n]], dtype=str)
        sources = np.array([s for n in names for s in self._src[n]], dtype=str)
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "model": {
                "name": self.model_name,
                "sha256": self.model_sha256,
                "embedding_size": self.embedding_size,
                "teacher": self.teacher,
            },
            "aggregate": self.aggregate,
            "threshold": self.threshold,
            "identities": names,
            "n_images": len(emb),
        }
        save_npz_atomic(
            path,
            embeddings=emb,
            labels=labels.reshape(-1),
            sources=sources.reshape(-1),
            meta=np.array(json.dumps(meta)),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Gallery:
        """Read a gallery written by :meth:`save`; :class:`LrfaceError` if it is not one."""
        path = Path(path)
        if not path.is_file():
            raise LrfaceError(
                f"{path}: no such gallery file; build one with `lrface gallery build`"
            )
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                emb, labels, sources = z["embeddings"], z["labels"], z["sources"]
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise LrfaceError(f"{path}: not an lrface gallery file ({exc}); rebuild it") from None
        if meta.get("format") != FORMAT:
            raise LrfaceError(f"{path}: not an lrface gallery file; rebuild it")
        if meta.get("version") != VERSION:
            raise LrfaceError(
                f"{path}: gallery format version {meta.get('version')} is not supported "
                f"(this lrface reads version {VERSION}); rebuild the gallery"
            )
        m = meta["model"]
        g = cls(
            m["name"],
            m["sha256"],
            m["embedding_size"],
            meta["aggregate"],
            meta["threshold"],
            m.get("teacher"),
        )
        if not len(emb) == len(labels) == len(sources):
            raise LrfaceError(f"{path}: gallery arrays differ in length; the file is corrupt")
        rows: dict[str, list[int]] = {}
        for i, lab in enumerate(labels.tolist()):
            rows.setdefault(lab, []).append(i)
        sources = sources.tolist()
        for name in meta["identities"]:
            r = rows.get(name, [])
            g.add(name, emb[r], [sources[i] for i in r])
        return g

    # ------------------------------------------------------------------ internals

    def _require(self, identity: str) -> str:
        if identity not in self._emb:
            raise LrfaceError(f"identity {identity!r} is not enrolled in the gallery")
        return identity

    def _check_embeddings(self, x: np.ndarray, what: str) -> np.ndarray:
        """Validate float (n, D) L2-normalised rows; return float32 C-contiguous."""
        a = np.asarray(x)
        if a.ndim != 2 or a.dtype.kind != "f":
            raise LrfaceError(f"{what} must be a float (n, D) array, got {a.dtype} {a.shape}")
        if a.shape[1] != self.embedding_size:
            raise LrfaceError(
                f"{what} have dimension {a.shape[1]}, but gallery model {self.model_name} "
                f"gives {self.embedding_size}; embed with {self.model_name}"
            )
        a = np.ascontiguousarray(a, dtype=np.float32)
        norms = np.linalg.norm(a.astype(np.float64), axis=1)
        if not np.all(np.abs(norms - 1.0) <= _NORM_TOL):
            raise LrfaceError(f"{what} are not L2-normalised; normalise them first")
        return a

    def _check_probes(self, x: np.ndarray) -> np.ndarray:
        a = np.asarray(x)
        if a.ndim == 1:
            a = a[None]
        return self._check_embeddings(a, "probe embeddings")

    def _matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """Search matrix and the identity index (into :attr:`identities`) of each row.

        ``"mean"``: float32 (n_ids, D) templates; ``"all"``: float32 (N, D) images.
        """
        if self._cache is None:
            names = self.identities
            if self.aggregate == "mean":
                mat = np.stack([_mean_template(self._emb[n]) for n in names])
                owner = np.arange(len(names), dtype=np.int64)
            else:
                mat = np.concatenate([self._emb[n] for n in names])
                owner = np.repeat(np.arange(len(names)), [len(self._emb[n]) for n in names])
            self._cache = (mat, owner.astype(np.int64))
        return self._cache


def _teacher_of(embedder: Any) -> dict[str, Any] | None:
    """``{"name", "sha256"}`` of the teacher named in a student's card, else None."""
    card = getattr(getattr(embedder, "spec", None), "card", None) or {}
    t = card.get("teacher")
    if isinstance(t, dict) and t.get("name"):
        return {"name": str(t["name"]), "sha256": t.get("sha256")}
    return None


def _same_model(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same name, and same sha256 unless one of them is unknown."""
    return a["name"] == b["name"] and (
        not a["sha256"] or not b["sha256"] or a["sha256"] == b["sha256"]
    )


def _describe(name: str, sha: str | None, dim: int) -> str:
    return f"{name} (sha256 {sha[:12] if sha else 'unknown'}, dim {dim})"


def _mean_template(emb: np.ndarray) -> np.ndarray:
    """float32 (D,): mean of (n, D) embeddings (float64 accumulation), L2-normalised."""
    m = emb.astype(np.float64).mean(axis=0)
    return (m / max(np.linalg.norm(m), 1e-12)).astype(np.float32)


def _rank_identities_all(
    p: np.ndarray, images: np.ndarray, owner: np.ndarray, top_k: int, backend: str
) -> list[list[tuple[int, float]]]:
    """Per probe, up to ``top_k`` (identity index, max image score), best first.

    The identity ranking by max score is the order of first appearance of each identity
    in the image ranking, so image neighbours are fetched with a growing k until every
    probe has ``top_k`` distinct identities (or all images are ranked).
    """
    n_ids = int(owner.max()) + 1
    want = min(top_k, n_ids)
    k = min(len(images), max(4 * want, want + 16))
    while True:
        scores, idx = _search(p, images, k, backend=backend)
        ranked = [_first_per_identity(owner[i], s, want) for i, s in zip(idx, scores)]
        if k == len(images) or all(len(r) == want for r in ranked):
            return ranked
        k = min(len(images), 4 * k)


def _first_per_identity(
    owners: np.ndarray, scores: np.ndarray, want: int
) -> list[tuple[int, float]]:
    seen: dict[int, float] = {}
    for o, s in zip(owners.tolist(), scores.tolist()):
        if o not in seen:
            seen[o] = s
            if len(seen) == want:
                break
    return list(seen.items())


# ---------------------------------------------------------------------- building


def build_gallery(
    root: str | os.PathLike[str],
    embedder: Any,
    detect: bool = True,
    aggregate: str = "mean",
    progress: bool = True,
) -> tuple[Gallery, list[tuple[str, str]]]:
    """Enrol every ``ROOT/<identity>/<images>`` (images found recursively per identity).

    Each image is read, detected and aligned (``detect=False``: pre-cut crops, resized)
    to ``embedder.input_size`` and embedded with ``embedder``.  An image that fails is
    skipped and reported; an identity without any usable image is not enrolled.

    Returns ``(gallery, failures)`` with ``failures`` a list of ``(path, message)``.
    Raises :class:`DatasetError` if ``root`` is not a directory or holds no identity
    directory with images.
    """
    from .io import list_images

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory; pass ROOT with one folder per identity")
    people = [(d.name, list_images(d)) for d in sorted(root.iterdir()) if d.is_dir()]
    people = [(name, imgs) for name, imgs in people if imgs]
    if not people:
        raise DatasetError(
            f"{root}: no identity folders with images; expected ROOT/<identity>/<image files>"
        )
    loose = [p for p in root.iterdir() if p.is_file()]
    if loose:
        log.warning(
            "gallery: %d file(s) directly in %s ignored (not in an identity folder)",
            len(loose),
            root,
        )
    gallery = Gallery.for_embedder(embedder, aggregate)
    failures: list[tuple[str, str]] = []
    bar = _progress(sum(len(imgs) for _, imgs in people), progress)
    try:
        for name, imgs in people:
            crops, sources = [], []
            for path in imgs:
                crop, err = prepare_crop(str(path), detect, embedder.input_size)
                bar.update(1)
                if crop is None:
                    failures.append((str(path), err))
                else:
                    crops.append(crop)
                    sources.append(str(path))
            if crops:
                gallery.add(name, embedder.embed_crops(crops), sources)
    finally:
        bar.close()
    log.info(
        "gallery: %d identities, %d images enrolled, %d failed",
        len(gallery),
        gallery.n_images,
        len(failures),
    )
    return gallery, failures


def prepare_crop(path: str, detect: bool, size: int) -> tuple[np.ndarray | None, str]:
    """``(crop, "")`` or ``(None, one-line error)`` for one image; never raises.

    ``crop``: uint8 BGR (size, size, 3).  Expected problems (:class:`LrfaceError`) give
    their message; anything else (a bug or a pathological file) is logged with its
    traceback and reported as ``internal error: ...``.
    """
    from .pipeline import prepare_face

    try:
        return prepare_face(path, detect=detect, size=size).crop, ""
    except LrfaceError as exc:
        return None, _one_line(str(exc))
    except Exception as exc:
        log.debug("unexpected error on %s", path, exc_info=True)
        return None, _one_line(f"internal error: {type(exc).__name__}: {exc}")


def _one_line(msg: str) -> str:
    return " ".join(msg.split())


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool) -> Any:
    """A tqdm bar on stderr when ``enabled`` and tqdm is installed, else a no-op."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit="img", dynamic_ncols=True, leave=False)
