"""A gallery of enrolled identities and open-set identification against it.

A :class:`FlatGallery` stores, per identity, the L2-normalised float32 embeddings of its
enrolment images and their source files, plus the model that produced them (name,
sha256, embedding size, and for a distilled student the teacher whose embedding space it
shares).  Two matching modes:

* ``aggregate="mean"``: one template per identity, the re-normalised mean of its image
  embeddings.  The per-image embeddings are kept, so adding or removing images only
  recomputes that identity's template; nothing is re-embedded.
* ``aggregate="all"``: every image is matched; an identity's score is the maximum over
  its images.

Model check (:meth:`FlatGallery.check_model`): probes must come from a model in the same
embedding space -- the gallery's model itself, or a student whose card names it (or
the gallery model's teacher) as ``teacher``, e.g. LR probes embedded by a student searched
in a gallery the teacher built from HR photos.  Anything else raises :class:`LrfaceError`.

Ranking: identities by score descending; equal scores are broken by enrolment order
(the order of :attr:`FlatGallery.identities`, then image order within an identity).

File format (:meth:`FlatGallery.save`, one ``.npz`` written atomically, loadable with
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
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrface.errors import DatasetError, LrfaceError
from lrface.faces.pipeline import CropOptions, options_for, prepare_many, progress_bar
from lrface.faces.routing import crop_for
from lrface.io.fileio import NpzError, read_npz_arrays, save_npz_atomic
from lrface.io.outputs import check_output
from lrface.io.validation import NORM_TOL, check_embeddings, check_positive_int
from lrface.search.exact import search as _search

if TYPE_CHECKING:
    from lrface.models.interface import Embedder

log = logging.getLogger("lrface")

__all__ = ["AGGREGATES", "UNKNOWN", "FlatGallery", "build_gallery"]

#: Label returned by :meth:`FlatGallery.identify` for a probe below the threshold.
UNKNOWN = "unknown"
#: Accepted values of ``aggregate``.
AGGREGATES = ("mean", "all")
FORMAT = "lrface-gallery"
VERSION = 1


class FlatGallery:
    """Enrolled identities with their embeddings; see the module docstring.  It
    implements :class:`lrface.search.interface.Gallery` (as the IVF gallery does).

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
    def for_embedder(cls, embedder: Embedder, aggregate: str = "mean") -> FlatGallery:
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

    def image_counts(self) -> dict[str, int]:
        """``{identity: number of enrolled images}``, in enrolment order."""
        return {n: len(e) for n, e in self._emb.items()}

    def embeddings_of(self, identity: str) -> np.ndarray:
        """float32 (n_i, D) image embeddings of ``identity`` (a read-only view)."""
        e = self._emb[self._require(identity)].view()
        e.flags.writeable = False
        return e

    def sources_of(self, identity: str) -> list[str]:
        """Source files of ``identity``'s images, in the order of :meth:`embeddings_of`."""
        return list(self._src[self._require(identity)])

    @property
    def index_description(self) -> str | None:
        """None: exact search (:class:`lrface.search.interface.Gallery`)."""
        return None

    def template(self, identity: str) -> np.ndarray:
        """float32 (D,) mean template of ``identity`` (L2-normalised)."""
        return _mean_template(self._emb[self._require(identity)])

    def __repr__(self) -> str:
        return (
            f"FlatGallery({self.model_name!r}, aggregate={self.aggregate!r}, "
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
        e = check_embeddings(
            embeddings,
            f"embeddings of {identity!r}",
            allow_empty=True,
            dim=self.embedding_size,
            model=self.model_name,
        )
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

    def check_model(self, embedder: Embedder) -> None:
        """Raise :class:`LrfaceError` unless ``embedder`` embeds into the gallery's space.

        Accepted: the same model (name equal, sha256 equal when both are known) or a model
        sharing its embedding space (a student whose card names the gallery model, or the
        gallery model's teacher, as ``teacher``; an int8 copy of either, by its card's
        ``quantization.from``); the embedding size must match.
        """
        name = getattr(embedder, "name", str(embedder))
        sha = getattr(embedder, "sha256", None)
        dim = getattr(embedder, "embedding_size", self.embedding_size)
        ours = {"name": self.model_name, "sha256": self.model_sha256}
        theirs = {"name": name, "sha256": sha}
        spaces_ours = [ours] + ([self.teacher] if self.teacher else [])
        spaces_theirs = [theirs] + ([t] if (t := _teacher_of(embedder)) else [])
        spaces_theirs += [q] if (q := _quantized_from(embedder)) else []
        same_space = any(_same_model(a, b) for a in spaces_ours for b in spaces_theirs)
        if not (same_space and int(dim) == self.embedding_size):
            built = _describe(self.model_name, self.model_sha256, self.embedding_size)
            raise LrfaceError(
                f"gallery was built with model {built} "
                f"but the probes use {_describe(name, sha, int(dim))}; embeddings of different "
                f"models are not comparable: use --model {self.model_name} or rebuild the gallery"
            )

    def search(
        self,
        probe_embeddings: np.ndarray,
        top_k: int = 5,
        threshold: float | None = None,
        backend: str = "auto",
        embedder: Embedder | None = None,
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
        check_positive_int(top_k, "top_k")
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
        embedder: Embedder | None = None,
    ) -> list[dict[str, Any]]:
        """Open-set decision per probe.

        Returns one dict per probe: ``{"identity": best identity, or "unknown" when its
        score < threshold (or the gallery is empty), "score": best score (float, NaN if
        empty), "candidates": [{"identity", "score"}, ...] (top_k, best first,
        unthresholded)}``.  ``threshold`` defaults to :attr:`threshold` (the model's).
        """
        thr = self.threshold if threshold is None else threshold
        hits = self.search(probe_embeddings, top_k, None, backend, embedder)
        return open_set_decisions(hits, thr, self.model_name)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the gallery to ``path`` atomically (format: see the module docstring); an
        existing ``path`` is replaced only when it is a gallery too
        (:func:`lrface.io.outputs.check_output`)."""
        check_output(path, "gallery", "output")
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
    def load(cls, path: str | os.PathLike[str]) -> FlatGallery:
        """Read a gallery written by :meth:`save`.

        Nothing in the file is trusted: a missing, empty, truncated or bit-flipped file, a
        zip bomb, a ``meta`` of the wrong type or missing fields, arrays of the wrong
        dtype or shape, non-finite or non-normalised embeddings, or labels that disagree
        with ``meta["identities"]`` raise :class:`LrfaceError` (one line naming the file
        and the fix).
        """
        path = Path(path)
        rebuild = "rebuild it with `lrface gallery build`"
        if not path.is_file():
            raise LrfaceError(
                f"{path}: no such gallery file; build one with `lrface gallery build`"
            )
        try:
            z = read_npz_arrays(path, ("meta", "embeddings", "labels", "sources"))
        except NpzError as exc:
            raise LrfaceError(f"{path}: not an lrface gallery file ({exc}); {rebuild}") from None
        try:
            meta = _parse_meta(z["meta"])
            if meta.get("format") != FORMAT:
                raise _Corrupt(f"format is {meta.get('format')!r}, not {FORMAT!r}")
        except _Corrupt as exc:
            raise LrfaceError(f"{path}: not an lrface gallery file ({exc}); {rebuild}") from None
        if meta.get("version") != VERSION or isinstance(meta.get("version"), bool):
            raise LrfaceError(
                f"{path}: gallery format version {meta.get('version')!r} is not supported "
                f"(this lrface reads version {VERSION}); {rebuild}"
            )
        try:
            g = _gallery_from(cls, meta, z["embeddings"], z["labels"], z["sources"])
        except _Corrupt as exc:
            raise LrfaceError(f"{path}: corrupt lrface gallery file ({exc}); {rebuild}") from None
        return g

    # ------------------------------------------------------------------ internals

    def _require(self, identity: str) -> str:
        if identity not in self._emb:
            raise LrfaceError(f"identity {identity!r} is not enrolled in the gallery")
        return identity

    def _check_probes(self, x: np.ndarray) -> np.ndarray:
        """One (D,) or many (P, D) probe embeddings -> float32 (P, D), validated."""
        a = np.asarray(x)
        if a.ndim == 1:
            a = a[None]
        return check_embeddings(
            a, "probe embeddings", allow_empty=True, dim=self.embedding_size, model=self.model_name
        )

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


class _Corrupt(Exception):
    """A gallery file's content is invalid (the message says what)."""


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _parse_meta(arr: np.ndarray) -> dict[str, Any]:
    """The JSON object held by the 0-d unicode ``meta`` array."""
    if arr.dtype.kind != "U" or arr.ndim != 0:
        raise _Corrupt(f"'meta' is a {arr.dtype} array of shape {arr.shape}, not a JSON string")
    try:
        meta = json.loads(str(arr))
    except (ValueError, RecursionError) as exc:
        raise _Corrupt(f"'meta' is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise _Corrupt(f"'meta' is a JSON {type(meta).__name__}, not an object")
    return meta


def _field(d: dict[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise _Corrupt(f"{where} has no {key!r}")
    v = d[key]
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise _Corrupt(f"{where}[{key!r}] is {v!r}")
    if not isinstance(v, types):
        raise _Corrupt(f"{where}[{key!r}] is {type(v).__name__} {_short(v)}")
    return v


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _model_ref(d: Any, where: str) -> dict[str, Any]:
    """Validate ``{"name": str, "sha256": hex64 | None}``."""
    if not isinstance(d, dict):
        raise _Corrupt(f"{where} is {type(d).__name__}, not an object")
    name = _field(d, "name", str, where)
    sha = _field(d, "sha256", (str, type(None)), where)
    if not name.strip():
        raise _Corrupt(f"{where}['name'] is empty")
    if sha is not None and not _SHA256.fullmatch(sha):
        raise _Corrupt(f"{where}['sha256'] is not 64 hex digits")
    return {"name": name, "sha256": sha}


def _gallery_from(
    cls: type[FlatGallery],
    meta: dict[str, Any],
    emb: np.ndarray,
    labels: np.ndarray,
    src: np.ndarray,
) -> FlatGallery:
    """Validate every field of a loaded gallery and build it (raises :class:`_Corrupt`).

    ``meta``: the parsed ``meta`` JSON object; ``emb``: float32 (N, D) embeddings;
    ``labels`` / ``src``: unicode (N,) identity and source file per row (module docstring).
    """
    m, dim, teacher, aggregate, thr, names, n_images = _gallery_meta(meta)
    _check_gallery_arrays(emb, labels, src, dim, n_images)
    lab = labels.tolist()
    if set(lab) != set(names):
        extra = sorted(set(lab) - set(names))[:3] or sorted(set(names) - set(lab))[:3]
        raise _Corrupt(
            f"labels and meta['identities'] disagree (e.g. {', '.join(map(repr, extra))})"
        )
    g = cls(m["name"], m["sha256"], dim, aggregate, thr, teacher)
    rows: dict[str, list[int]] = {}
    for i, name in enumerate(lab):
        rows.setdefault(name, []).append(i)
    sources = src.tolist()
    for name in names:
        r = rows[name]
        g.add(name, emb[r], [sources[i] for i in r])
    return g


def _gallery_meta(
    meta: dict[str, Any],
) -> tuple[dict[str, Any], int, dict[str, Any] | None, str, Any, list[str], int]:
    """Validate a loaded gallery's ``meta`` fields (raises :class:`_Corrupt`).

    Returns ``(model, embedding_size, teacher, aggregate, threshold, identities,
    n_images)``: ``model`` and ``teacher`` as ``{"name", "sha256"}`` (teacher None when
    absent), ``threshold`` a cosine in [-1, 1] or None.
    """
    m = _model_ref(_field(meta, "model", dict, "meta"), "meta['model']")
    model = meta["model"]
    dim = _field(model, "embedding_size", int, "meta['model']")
    if not 1 <= dim <= 65536:
        raise _Corrupt(f"meta['model']['embedding_size'] is {dim}")
    teacher = model.get("teacher")
    if teacher is not None:
        teacher = _model_ref(teacher, "meta['model']['teacher']")
    aggregate = _field(meta, "aggregate", str, "meta")
    if aggregate not in AGGREGATES:
        raise _Corrupt(f"meta['aggregate'] is {_short(aggregate)}, not 'mean' or 'all'")
    thr = _field(meta, "threshold", (int, float, type(None)), "meta")
    if thr is not None and not (math.isfinite(thr) and -1.0 <= thr <= 1.0):
        raise _Corrupt(f"meta['threshold'] is {thr}, not a cosine similarity in [-1, 1]")
    names = _field(meta, "identities", list, "meta")
    if not all(isinstance(n, str) and n.strip() and n != UNKNOWN for n in names):
        raise _Corrupt("meta['identities'] holds an empty, reserved or non-string label")
    if len(set(names)) != len(names):
        raise _Corrupt("meta['identities'] lists an identity twice")
    n_images = _field(meta, "n_images", int, "meta")
    return m, dim, teacher, aggregate, thr, names, n_images


def _check_gallery_arrays(
    emb: np.ndarray, labels: np.ndarray, src: np.ndarray, dim: int, n_images: int
) -> None:
    """Raise :class:`_Corrupt` unless ``emb`` is float32 (N, ``dim``), finite and
    L2-normalised, ``labels`` and ``src`` are unicode (N,), and N == ``n_images``."""
    if emb.dtype != np.float32 or emb.ndim != 2 or emb.shape[1] != dim:
        raise _Corrupt(f"'embeddings' is {emb.dtype} {emb.shape}, expected float32 (N, {dim})")
    for key, arr in (("labels", labels), ("sources", src)):
        if arr.dtype.kind != "U" or arr.ndim != 1 or len(arr) != len(emb):
            raise _Corrupt(
                f"{key!r} is {arr.dtype} {arr.shape}, expected {len(emb)} strings "
                "(one per embedding)"
            )
    if n_images != len(emb):
        raise _Corrupt(f"meta['n_images'] is {n_images} but the file holds {len(emb)} embeddings")
    if not np.all(np.isfinite(emb)):
        raise _Corrupt("embeddings contain NaN or infinite values")
    norms = np.linalg.norm(emb.astype(np.float64), axis=1)
    if not np.all(np.abs(norms - 1.0) <= NORM_TOL):
        raise _Corrupt("embeddings are not L2-normalised")


def open_set_decisions(
    hits_per_probe: Sequence[Sequence[tuple[str, float]]],
    threshold: float | None,
    model_name: str,
) -> list[dict[str, Any]]:
    """Open-set answers from ranked ``(identity, score)`` hits per probe (best first):
    ``{"identity": best, or "unknown" below ``threshold``, "score", "candidates"}``;
    shared by exact and IVF galleries."""
    if threshold is None:
        raise LrfaceError(f"no decision threshold: model {model_name} has none; pass --threshold")
    results = []
    for hits in hits_per_probe:
        best, score = hits[0] if hits else (UNKNOWN, float("nan"))
        results.append(
            {
                "identity": best if hits and score >= threshold else UNKNOWN,
                "score": score,
                "candidates": [{"identity": n, "score": s} for n, s in hits],
            }
        )
    return results


def _teacher_of(embedder: Embedder) -> dict[str, Any] | None:
    """``{"name", "sha256"}`` of the teacher named in a student's card, else None."""
    card = getattr(getattr(embedder, "spec", None), "card", None) or {}
    t = card.get("teacher")
    if isinstance(t, dict) and t.get("name"):
        return {"name": str(t["name"]), "sha256": t.get("sha256")}
    return None


def _quantized_from(embedder: Embedder) -> dict[str, Any] | None:
    """``{"name", "sha256"}`` of the fp32 model an int8 copy was quantized from, else None."""
    card = getattr(getattr(embedder, "spec", None), "card", None) or {}
    q = card.get("quantization") if card.get("precision") == "int8" else None
    if isinstance(q, dict) and q.get("from"):
        return {"name": str(q["from"]), "sha256": q.get("from_sha256")}
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
    embedder: Embedder,
    detect: bool = True,
    aggregate: str = "mean",
    progress: bool = True,
    options: CropOptions | None = None,
    workers: int = 0,
    chunk_size: int = 256,
) -> tuple[FlatGallery, list[tuple[str, str]]]:
    """Enrol every ``ROOT/<identity>/<images>`` (images found recursively per identity).

    Each image is read, detected and aligned as ``options`` say (default:
    ``CropOptions(detect=detect)``; the crop size is always ``embedder.input_size``) and
    embedded with ``embedder``, ``chunk_size`` images at a time; images are prepared by
    :class:`lrface.faces.pipeline.CropPreparer` (``workers`` processes for large galleries).
    An image that fails is skipped and reported; an identity without any usable image
    is not enrolled.

    Returns ``(gallery, failures)`` with ``failures`` a list of ``(path, message)``.
    Raises :class:`DatasetError` if ``root`` is not a directory or holds no identity
    directory with images.
    """
    options = options_for(options, detect, int(embedder.input_size))
    items = _gallery_items(Path(root))
    gallery = FlatGallery.for_embedder(embedder, aggregate)
    bar = progress_bar(len(items), progress)
    try:
        failures = _enrol_items(gallery, embedder, items, options, workers, chunk_size, bar)
    finally:
        bar.close()
    log.info(
        "gallery: %d identities, %d images enrolled, %d failed",
        len(gallery),
        gallery.n_images,
        len(failures),
    )
    return gallery, failures


def count_gallery_images(root: str | os.PathLike[str]) -> int:
    """The number of images :func:`build_gallery` would try to enrol from ``root`` (an
    upper bound on the rows it gives; a listing, no decoding).  Raises
    :class:`DatasetError` as :func:`build_gallery` does for a bad ``root``."""
    return len(_gallery_items(Path(root)))


def _gallery_items(root: Path) -> list[tuple[str, str]]:
    """``(identity, image path)`` for every image of ``root/<identity>/`` (found recursively,
    identities in sorted order); files directly in ``root`` are ignored with a warning.

    Raises :class:`DatasetError` if ``root`` is not a directory or holds no identity
    directory with images.
    """
    from lrface.io.images import list_images

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
    return [(name, str(path)) for name, imgs in people for path in imgs]


def _enrol_items(
    gallery: FlatGallery,
    embedder: Embedder,
    items: list[tuple[str, str]],
    options: CropOptions,
    workers: int,
    chunk_size: int,
    bar: Any,
) -> list[tuple[str, str]]:
    """Prepare, embed and enrol ``(identity, path)`` items into ``gallery`` in order.

    Images are prepared (uint8 BGR crops of ``options.size``) ``chunk_size`` at a time by
    :func:`lrface.faces.pipeline.prepare_many` and each chunk's crops embedded in one call;
    ``bar`` advances per chunk.  Returns ``(path, message)`` for each image that failed.
    """
    failures: list[tuple[str, str]] = []
    done = 0
    paths = [p for _, p in items]
    for results in prepare_many(paths, options, workers, chunk_size):
        chunk = items[done : done + len(results)]
        done += len(results)
        ok = [(name, p, r.crop) for (name, p), r in zip(chunk, results) if r.crop is not None]
        failures.extend((p, r.error) for (_, p), r in zip(chunk, results) if r.crop is None)
        if ok:
            emb = embedder.embed_crops([crop_for(embedder, c) for _, _, c in ok])
            for name in dict.fromkeys(n for n, _, _ in ok):  # identities in order
                rows = [i for i, (n, _, _) in enumerate(ok) if n == name]
                gallery.add(name, emb[rows], [ok[i][1] for i in rows])
        bar.update(len(results))
    return failures
