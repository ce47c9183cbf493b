""":class:`EmbedderBase`, the one implementation behind the ONNX teacher, ONNX exports and
torch students (what callers may rely on: the protocol
:class:`lrface.models.interface.Embedder`).

An embedder turns aligned face crops into L2-normalised float32 embeddings.  Crops are
uint8 BGR arrays of any size; :func:`lrface.models.preprocess.to_input` resizes each to
the model's square ``input_size`` with :func:`lrface.models.preprocess.resize_crop` (area
when a side shrinks, bicubic otherwise), converts it to the model's colour order and normalises it
with its mean/std.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lrface.models.preprocess import InputFormat, to_input
from lrface.models.registry import ModelSpec


class EmbedderBase:
    """Base class.  Subclasses implement :meth:`_forward` on a normalised NCHW batch.

    Attributes: ``spec`` (registry entry), ``name``, ``input_size`` (square side),
    ``embedding_size``, ``threshold`` (cosine; same person if >=), ``flip`` (the default of
    :meth:`embed_crops`' ``flip``: add the embedding of the mirrored crop before
    normalising).  It implements the protocol :class:`lrface.models.interface.Embedder`.
    """

    def __init__(self, spec: ModelSpec, flip: bool = True, batch_size: int = 64) -> None:
        self.spec = spec
        self.name = spec.name
        self.input_size = int(spec.input_size or 112)
        self.embedding_size = int(spec.embedding_size or 0)
        self.threshold = spec.threshold
        self.flip = flip
        self.batch_size = batch_size

    @property
    def input_format(self) -> InputFormat:
        """The model's input: side ``input_size``, colour order and mean/std of its entry."""
        return InputFormat.of(self.spec, self.input_size)

    @property
    def sha256(self) -> str | None:
        return self.spec.sha256

    def preprocess(self, crops: Sequence[np.ndarray], mirrors: bool = False) -> np.ndarray:
        """uint8 BGR crops (any size) -> float32 (N, 3, S, S) normalised, model colour order.

        ``mirrors``: return (2N, 3, S, S), the crops followed by their horizontal mirrors
        (one buffer for the flip-fused forward).  The conversion of the registry entry:
        :func:`lrface.models.preprocess.to_input`.
        """
        return to_input(crops, self.input_format, mirrors=mirrors)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, 3, S, S) -> float32 (N, D) raw (unnormalised) features."""
        raise NotImplementedError

    def embed_crops(
        self, crops: Sequence[np.ndarray] | np.ndarray, flip: bool | None = None
    ) -> np.ndarray:
        """Embed aligned crops.

        ``crops``: sequence of uint8 BGR (h, w, 3) arrays or one (N, h, w, 3) array.
        ``flip``: add the raw features of each mirrored crop before normalising (default:
        the ``flip`` attribute, as loaded).  Returns float32 (N, D), each row L2-normalised.
        """
        crops = check_crops(crops)
        fuse = self.flip if flip is None else flip
        if not crops:
            return np.zeros((0, self.embedding_size), np.float32)
        out = []
        for i in range(0, len(crops), self.batch_size):
            x = self.preprocess(crops[i : i + self.batch_size], mirrors=fuse)
            f = self._forward(x)
            if fuse:  # one run over the crops and their mirrors (fewer, larger calls)
                f = f[: len(x) // 2] + f[len(x) // 2 :]
            out.append(f)
        feats = np.concatenate(out).astype(np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            emb = l2_normalize(feats)
        if not np.isfinite(emb).all():
            from lrface.errors import ModelFileError

            where = self.spec.card_path or f"registry entry {self.name}"
            raise ModelFileError(
                f"{self.name}: the model gives NaN or infinite embeddings; its preprocessing "
                f"or weights are broken (see {where}): restore the card and weights"
            )
        return emb

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, input={self.input_size}, "
            f"dim={self.embedding_size})"
        )


def check_crops(crops: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    """Validate crops for :meth:`EmbedderBase.embed_crops`: a sequence of uint8 (h, w, 3) BGR
    arrays (h, w >= 4) or one uint8 (N, h, w, 3) array.  Raises :class:`LrfaceError` (one
    line naming the item) for anything else: ``None``, strings (a path is not a crop: use
    :func:`lrface.embed`), other dtypes, shapes or non-contiguous garbage."""
    from lrface.errors import LrfaceError

    if isinstance(crops, str | bytes) or not hasattr(crops, "__len__"):
        raise LrfaceError(
            f"crops: expected a list of uint8 BGR (h, w, 3) arrays, got {type(crops).__name__}; "
            "to embed image files use lrface.embed(paths)"
        )
    out = list(crops)
    for i, c in enumerate(out):
        if not isinstance(c, np.ndarray):
            raise LrfaceError(
                f"crop {i}: expected a uint8 BGR (h, w, 3) numpy array, got {type(c).__name__}; "
                "read images with lrface.io.images.read_image or use lrface.embed(paths)"
            )
        if c.dtype != np.uint8 or c.ndim != 3 or c.shape[2] != 3 or min(c.shape[:2]) < 4:
            raise LrfaceError(
                f"crop {i}: expected uint8 BGR (h, w, 3) with h, w >= 4, got {c.dtype} "
                f"{c.shape}; convert it (lrface.io.images.read_image accepts other layouts)"
            )
    return out


def l2_normalize(x: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    """Row-wise L2 normalisation of a float array (N, D)."""
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)).astype(np.float32)
