"""ONNX recognisers in onnxruntime: the teacher, the shipped students, insightface's, exports."""

from __future__ import annotations

import os

import numpy as np

from ..errors import ModelFileError, first_line
from ..providers import make_session
from .embedder import Embedder
from .registry import ModelSpec

#: Batches up to this size run row by row on a fixed batch-1 model (no graph rewrite).
_ROW_BY_ROW_MAX = 8


class OnnxEmbedder(Embedder):
    """An onnxruntime recogniser with automatic providers.

    A file with a fixed batch of 1 (as the shipped teacher, kept byte-identical to its
    upstream export) runs small batches row by row; the first larger batch loads a copy
    rewritten in memory with a dynamic batch axis (:func:`make_batch_dynamic`, which
    needs the ``onnx`` package).  Either way the verified file is the one that runs.
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

    def _forward(self, batch: np.ndarray) -> np.ndarray:
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
        from .onnx_utils import make_batch_dynamic

        self.session = make_session(make_batch_dynamic(self.path), self._providers)
        self.fixed_batch = False
