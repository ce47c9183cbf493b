"""Exact cosine top-k search of probe embeddings in a gallery: numpy or FAISS backend.

Both backends are *exact* (no approximation) and return the same result:

* ``numpy``: block-wise matrix products (:func:`cosine_topk`), so
  memory stays bounded (about ``block_size**2 * 16`` bytes) whatever the gallery size.
* ``faiss``: ``faiss.IndexFlatIP`` (exact inner product, multi-threaded BLAS); needs the
  optional ``faiss-cpu`` package (``pip install faiss-cpu``), imported only when used.

Ranking rule (both backends): score descending, then gallery row index ascending.  To make
the two backends agree to the last bit, each one only proposes ``k + RESCORE_MARGIN``
candidates; these are re-scored with one shared float64 dot product (rounded to float32)
and sorted by the rule above.  Float32 BLAS kernels may differ by an ulp between
libraries, which would otherwise reorder near-ties; the margin absorbs that.

Inputs must be L2-normalised float arrays (row norms within 1 % of 1), so the inner
product is the cosine similarity.
"""

from __future__ import annotations

import logging

import numpy as np

from lrface.errors import LrfaceError
from lrface.io.validation import check_embeddings, check_positive_int

log = logging.getLogger("lrface")


def _block_topk(sc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-min(k, m) of each row of ``sc`` (n, m): (values, column indices), unsorted.

    Exact under the tie rule "equal scores -> smaller index first": rows where the
    k-th value is tied beyond the cut are redone with a stable sort.
    """
    n, m = sc.shape
    kk = min(k, m)
    if kk == m:
        return sc, np.broadcast_to(np.arange(m, dtype=np.int64), (n, m))
    part = np.argpartition(sc, m - kk, axis=1)[:, m - kk :].astype(np.int64)
    vals = np.take_along_axis(sc, part, axis=1)
    kth = vals.min(axis=1)
    tied = np.flatnonzero(np.count_nonzero(sc >= kth[:, None], axis=1) > kk)
    if tied.size:
        order = np.argsort(-sc[tied], axis=1, kind="stable")[:, :kk]
        part[tied] = order
        vals[tied] = np.take_along_axis(sc[tied], order, axis=1)
    return vals, part


def _merge_topk(
    s_a: np.ndarray, i_a: np.ndarray, s_b: np.ndarray, i_b: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge two candidate sets row-wise; keep the k best sorted (score desc, index asc)."""
    s = np.concatenate([s_a, s_b], axis=1)
    i = np.concatenate([i_a, i_b], axis=1)
    order = np.lexsort((i, -s), axis=-1)[:, :k]
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)


def cosine_topk(
    probes: np.ndarray, gallery: np.ndarray, k: int, block_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k cosine neighbours of each probe in the gallery, block by block.

    Args:
        probes: (P, D) float L2-normalised embeddings (row norms within ~0.5% of 1).
        gallery: (G, D) float L2-normalised embeddings.
        k: neighbours per probe, 1 <= k <= G.
        block_size: rows per probe block and per gallery block.  Peak extra memory is
            about ``block_size**2 * 16`` bytes (scores + partition indices; 256 MiB at
            the default) plus the (P, k) outputs; the P x G matrix is never built.

    Returns:
        ``(scores, indices)``: (P, k) float32 cosine similarities in [-1, 1] and (P, k)
        int64 gallery row indices, sorted by decreasing score; equal scores are ordered
        by increasing gallery index, so the result does not depend on ``block_size``.
    """
    p = check_embeddings(probes, "probes")
    g = check_embeddings(gallery, "gallery")
    if p.shape[1] != g.shape[1]:
        raise LrfaceError(f"probes have dimension {p.shape[1]}, gallery {g.shape[1]}")
    k = check_positive_int(k, "k")
    if k > g.shape[0]:
        raise LrfaceError(f"k={k} exceeds the gallery size {g.shape[0]}")
    bs = check_positive_int(block_size, "block_size")
    n_p, n_g = p.shape[0], g.shape[0]
    out_s = np.empty((n_p, k), dtype=np.float32)
    out_i = np.empty((n_p, k), dtype=np.int64)
    for p0 in range(0, n_p, bs):
        pb = p[p0 : p0 + bs]
        best_s = np.empty((pb.shape[0], 0), dtype=np.float32)
        best_i = np.empty((pb.shape[0], 0), dtype=np.int64)
        for g0 in range(0, n_g, bs):
            vals, idx = _block_topk(pb @ g[g0 : g0 + bs].T, k)
            best_s, best_i = _merge_topk(best_s, best_i, vals, idx + g0, k)
        out_s[p0 : p0 + bs] = best_s
        out_i[p0 : p0 + bs] = best_i
    return out_s, out_i

__all__ = ["BACKENDS", "RESCORE_MARGIN", "faiss_available", "search"]

#: Accepted values of ``backend``.
BACKENDS = ("auto", "numpy", "faiss")
#: Extra candidates fetched from a backend before the shared exact re-scoring.
RESCORE_MARGIN = 8
#: Probes re-scored at once (bounds the (rows, k, D) float64 gather).
_RESCORE_ROWS = 1024


def faiss_available() -> bool:
    """True when ``import faiss`` works (the optional ``faiss-cpu`` package)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def search(
    probes: np.ndarray,
    gallery: np.ndarray,
    k: int,
    backend: str = "auto",
    faiss_threshold: int = 50_000,
    block_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k cosine neighbours of each probe among the gallery rows.

    Args:
        probes: (P, D) float, L2-normalised rows.
        gallery: (G, D) float, L2-normalised rows.
        k: neighbours per probe (>= 1); clipped to G.
        backend: ``"numpy"``, ``"faiss"`` or ``"auto"`` (FAISS when G > ``faiss_threshold``
            and faiss is importable, else numpy; the choice is logged at INFO).
        faiss_threshold: gallery size above which ``"auto"`` uses FAISS.
        block_size: probe/gallery block size of the numpy backend.

    Returns:
        ``(scores, indices)``: float32 (P, min(k, G)) cosine similarities and int64
        (P, min(k, G)) gallery row indices, sorted by score descending then index
        ascending.  An empty gallery gives (P, 0) arrays.

    Raises:
        LrfaceError: bad shapes, dimension mismatch, rows not L2-normalised, unknown
            backend, or ``backend="faiss"`` without faiss installed.
    """
    p = check_embeddings(probes, "probes", allow_empty=True)
    g = check_embeddings(gallery, "gallery", allow_empty=True)
    if p.shape[1] != g.shape[1]:
        raise LrfaceError(
            f"probe embeddings have dimension {p.shape[1]} but the gallery has {g.shape[1]}; "
            "embed probes and gallery with the same model"
        )
    check_positive_int(k, "k")
    chosen = choose_backend(backend, g.shape[0], faiss_threshold)
    kk = min(int(k), g.shape[0])
    if kk == 0 or p.shape[0] == 0:
        return np.zeros((p.shape[0], kk), np.float32), np.zeros((p.shape[0], kk), np.int64)
    kc = min(kk + RESCORE_MARGIN, g.shape[0])
    if chosen == "faiss":
        cand = _faiss_candidates(p, g, kc)
    else:
        cand = _numpy_candidates(p, g, kc, block_size)
    return _rescore(p, g, cand, kk)


def choose_backend(backend: str, n_gallery: int, faiss_threshold: int = 50_000) -> str:
    """Resolve ``backend`` (``auto``/``numpy``/``faiss``) to ``numpy`` or ``faiss``; logs it."""
    if backend not in BACKENDS:
        raise LrfaceError(
            f"unknown search backend {backend!r}; choose one of {', '.join(BACKENDS)}"
        )
    if backend == "faiss" and not faiss_available():
        raise LrfaceError(
            "search backend 'faiss' needs the faiss-cpu package; "
            "install it with `pip install faiss-cpu` (extra [faiss]) or use --backend numpy"
        )
    if backend == "auto":
        big = n_gallery > faiss_threshold
        backend = "faiss" if big and faiss_available() else "numpy"
        why = f"gallery {n_gallery} rows {'>' if big else '<='} {faiss_threshold}"
        if big and backend == "numpy":
            why += ", faiss not installed"
        log.info("search: %s backend (%s)", backend, why)
    return backend


def _numpy_candidates(p: np.ndarray, g: np.ndarray, k: int, block_size: int) -> np.ndarray:
    """int64 (P, k) candidate indices from the block-wise numpy search."""
    return cosine_topk(p, g, k, block_size=block_size)[1]


def _faiss_candidates(p: np.ndarray, g: np.ndarray, k: int) -> np.ndarray:
    """int64 (P, k) candidate indices from an exact ``IndexFlatIP``."""
    import faiss

    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g)
    _, idx = index.search(p, k)
    return idx.astype(np.int64, copy=False)


def _rescore(
    p: np.ndarray, g: np.ndarray, cand: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Re-score candidates exactly (float64 dot, rounded to float32) and keep the k best.

    ``cand``: int64 (P, C) with C >= k.  Returns float32 (P, k) scores and int64 (P, k)
    indices ordered by score descending, index ascending.
    """
    n = p.shape[0]
    out_s = np.empty((n, k), np.float32)
    out_i = np.empty((n, k), np.int64)
    for r0 in range(0, n, _RESCORE_ROWS):
        c = cand[r0 : r0 + _RESCORE_ROWS]
        rows = p[r0 : r0 + _RESCORE_ROWS].astype(np.float64)
        s = np.einsum("pkd,pd->pk", g[c].astype(np.float64), rows).astype(np.float32)
        order = np.lexsort((c, -s), axis=-1)[:, :k]
        out_s[r0 : r0 + _RESCORE_ROWS] = np.take_along_axis(s, order, axis=1)
        out_i[r0 : r0 + _RESCORE_ROWS] = np.take_along_axis(c, order, axis=1)
    return out_s, out_i
