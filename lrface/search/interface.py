"""What every gallery offers: the :class:`Gallery` protocol.

Two galleries implement it: :class:`lrface.search.gallery.FlatGallery` (one ``.npz``,
exact search, in memory) and :class:`lrface.search.ivf.IvfGallery` (an on-disk FAISS IVF
directory, approximate shortlists re-scored exactly).
:func:`lrface.search.ivf.open_gallery` opens either; code that searches or edits a
gallery (``identify``, ``watch``, ``serve``) annotates with this protocol and never asks
which one it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from lrface.models.interface import Embedder

__all__ = ["Gallery"]


@runtime_checkable
class Gallery(Protocol):
    """Enrolled identities, searched with probe embeddings of the gallery's model.

    Attributes: ``model_name``, ``model_sha256``, ``embedding_size`` (D), ``teacher``
    (``{"name", "sha256"}`` of a student's teacher, else None), ``threshold`` (the
    model's cosine threshold, None when unknown), ``aggregate`` (``"mean"``: one
    template per identity; ``"all"``: an identity scores its best image).
    ``index_description``: one line on what searches an approximate index, None for
    exact search.  ``len(gallery)``: identities; ``identity in gallery``.
    """

    model_name: str
    model_sha256: str | None
    embedding_size: int
    teacher: dict[str, Any] | None
    threshold: float | None
    aggregate: str

    @property
    def identities(self) -> list[str]:
        """Enrolled identity labels, in enrolment order."""
        ...

    @property
    def n_images(self) -> int:
        """Stored image embeddings."""
        ...

    @property
    def index_description(self) -> str | None:
        """What searches this gallery, in one line (None: exact search)."""
        ...

    def __len__(self) -> int: ...

    def __contains__(self, identity: object) -> bool: ...

    def image_counts(self) -> dict[str, int]:
        """``{identity: enrolled images}``, in enrolment order."""
        ...

    def add(self, identity: str, embeddings: np.ndarray, sources: Sequence[str]) -> None:
        """Enrol float32 (n, D) L2-normalised ``embeddings`` of ``identity`` (appended if
        enrolled) with their ``sources`` (n file names)."""
        ...

    def remove(self, identity: str, sources: Sequence[str] | None = None) -> int:
        """Remove ``identity`` (or only its images from ``sources``); returns how many."""
        ...

    def check_model(self, embedder: Embedder) -> None:
        """Raise :class:`lrface.errors.LrfaceError` unless ``embedder`` embeds into this
        gallery's space (the same model, or a student of the gallery's teacher)."""
        ...

    def search(
        self,
        probe_embeddings: np.ndarray,
        top_k: int = 5,
        threshold: float | None = None,
        backend: str = "auto",
        embedder: Embedder | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Per probe of float (P, D) L2-normalised embeddings: up to ``top_k``
        ``(identity, cosine)`` pairs, best first (those below ``threshold`` dropped)."""
        ...

    def identify(
        self,
        probe_embeddings: np.ndarray,
        threshold: float | None = None,
        top_k: int = 5,
        backend: str = "auto",
        embedder: Embedder | None = None,
    ) -> list[dict[str, Any]]:
        """Open-set decision per probe: ``{"identity" (or "unknown"), "score",
        "candidates"}`` (:func:`lrface.search.gallery.open_set_decisions`)."""
        ...
