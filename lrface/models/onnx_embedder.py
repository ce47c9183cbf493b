"""ONNX recognisers in onnxruntime: the teacher, the shipped students, insightface's, exports."""

from __future__ import annotations

import os

import numpy as np

from lrface.errors import ModelFileError, first_line
from lrface.models.embedder import EmbedderBase
from lrface.models.providers import make_session
from lrface.models.registry import ModelSpec

#: Batches up to this size run row by row on a fixed batch-1 model (no graph rewrite).
_ROW_BY_ROW_MAX = 8

#: Input pixels per onnxruntime call, summed over its rows (rows x side x side): 64 rows
#: at 112x112.  onnxruntime's activation memory grows with the rows of a call, so every
#: batch runs in calls of at most this many pixels: peak memory is bounded for any batch
#: size, and outputs are bit-identical to one call per crop.  Chosen by measurement
#: (``benchmarks/memory.py``, RESULTS.md "Memory").
FORWARD_PIXELS = 64 * 112 * 112


class OnnxEmbedder(EmbedderBase):
    """An onnxruntime recogniser with automatic providers.

    A file with a fixed batch of 1 (as the shipped teacher, kept byte-identical to its
    upstream export) runs small batches row by row; the first larger batch loads a copy
    rewritten in memory with a dynamic batch axis (:func:`make_batch_dynamic`, which
    needs the ``onnx`` package).  Either way the verified file is the one that runs.
    Batches run in calls of at most :attr:`forward_rows` rows (:data:`FORWARD_PIXELS`),
    and ``batch_size`` (crops preprocessed together) is capped at :attr:`forward_rows`,
    so memory does not grow with the batch size asked for.
    """

    def __init__(
        self,
        spec: ModelSpec,
        path: str | os.PathLike[str],
        flip: bool = True,
        batch_size: int = 64,
        providers: list[str] | None = None,
    ) -> None:
        super().__init__(spec, flip=flip, batch_size=batch_size)
        self.path = str(path)
        self._providers = providers
        try:
            self.session = make_session(self.path, providers)
        except Exception as exc:  # onnxruntime's own types for a file it cannot load
            where = spec.card_path or f"registry entry {spec.name}"
            raise ModelFileError(
                f"{self.path}: onnxruntime cannot load it ({first_line(exc)}), but {where} "
                "names it with runtime onnx; fix weights_file/runtime there, or restore the file"
            ) from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        self.fixed_batch = isinstance(inp.shape[0], int) and inp.shape[0] == 1
        # crops preprocessed together: the float32 buffer stays within 2 calls' worth
        self.batch_size = max(1, min(batch_size, self.forward_rows))

    def file_shapes(self) -> tuple[int | None, int]:
        """``(input side, embedding size)`` as the ONNX file gives them: the side from the
        static (N, 3, S, S) input shape (None when dynamic), the size from the static
        output shape, else from one forward pass at the input side.  Raises ValueError
        for an input that is not (N, 3, S, S), onnxruntime's error for a failed pass."""
        shape = self.session.get_inputs()[0].shape
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise ValueError(f"its input has shape {shape}, not (N, 3, S, S) crops")
        side = shape[2] if isinstance(shape[2], int) else None
        out = self.session.get_outputs()[0].shape
        if len(out) == 2 and isinstance(out[1], int):
            return side, int(out[1])
        s = side or self.input_size
        return side, int(self._forward(np.zeros((1, 3, s, s), np.float32)).shape[1])

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    @property
    def forward_rows(self) -> int:
        """Most rows per onnxruntime call: :data:`FORWARD_PIXELS` / ``input_size`` squared,
        at least 1 (64 at 112 px, 3,136 at 16 px)."""
        return max(1, FORWARD_PIXELS // (self.input_size * self.input_size))

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, 3, S, S) -> float32 (N, D), in calls of at most :attr:`forward_rows`."""
        step = self.forward_rows
        if len(batch) > step:
            parts = [self._forward_call(batch[i : i + step]) for i in range(0, len(batch), step)]
            return np.concatenate(parts)
        return self._forward_call(batch)

    def _forward_call(self, batch: np.ndarray) -> np.ndarray:
        """One call's worth (at most :attr:`forward_rows` rows) of :meth:`_forward`."""
        n = len(batch)
        if self.fixed_batch and n > 1:
            if n <= _ROW_BY_ROW_MAX:
                return np.concatenate([self._run(batch[i : i + 1]) for i in range(n)])
            self._make_dynamic()
        return self._run(batch)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output_name], {self.input_name: batch})[0]
        return out.reshape(len(batch), -1)

    def _make_dynamic(self) -> None:
        from lrface.models.onnx_utils import make_batch_dynamic

        self.session = make_session(make_batch_dynamic(self.path), self._providers)
        self.fixed_batch = False
