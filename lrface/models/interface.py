"""What every embedder offers: the :class:`Embedder` protocol (for type annotations).

:func:`lrface.models.loader.load_embedder` returns ONNX recognisers
(:class:`~lrface.models.onnx_embedder.OnnxEmbedder`) and torch students
(:class:`~lrface.models.torch_embedder.TorchEmbedder`), both built on the base class
:class:`lrface.models.embedder.EmbedderBase`; code that only *uses* an embedder should annotate
with this protocol, which any object with these members satisfies (a wrapper, a remote
model, a test double), without importing a runtime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:
    import numpy as np

    from lrface.models.registry import ModelSpec

__all__ = ["Embedder", "HrEmbedders"]


class Embedder(Protocol):
    """A face recogniser: aligned uint8 BGR crops in, L2-normalised embeddings out.

    Attributes: ``spec`` (the registry entry or card: file, sha256, colour order,
    mean/std, threshold), ``name``, ``input_size`` (square side the crops are resized
    to), ``embedding_size`` (D), ``threshold`` (cosine; same person if >=, ``None`` when
    unknown), ``flip`` (the default of :meth:`embed_crops`' mirrored-crop fusion),
    ``batch_size`` (crops per forward pass).
    """

    spec: ModelSpec
    name: str
    input_size: int
    embedding_size: int
    threshold: float | None
    flip: bool
    batch_size: int

    @property
    def sha256(self) -> str | None:
        """sha256 of the weights (from the registry entry or card), ``None`` if unknown."""
        ...

    def embed_crops(
        self, crops: Sequence[np.ndarray] | np.ndarray, flip: bool | None = None
    ) -> np.ndarray:
        """uint8 BGR (h, w, 3) crops of any size (a sequence, or one (N, h, w, 3) array)
        -> float32 (N, D), rows L2-normalised.  ``flip`` (default: the ``flip``
        attribute) adds the embedding of each mirrored crop before normalising."""
        ...


#: The HR-side model of a protocol run: ``None`` (each model embeds its own HR side), one
#: embedder for every model, or ``{probe model name: HR embedder}`` (``--hr-model auto``).
HrEmbedders: TypeAlias = "Embedder | Mapping[str, Embedder] | None"
