"""ONNX recognisers (the ArcFace teacher, insightface's w600k_r50, exported students)."""

from __future__ import annotations

import os

import numpy as np

from ..providers import make_session
from .embedder import Embedder
from .onnx_utils import make_batch_dynamic
from .registry import ModelSpec


class OnnxEmbedder(Embedder):
    """An onnxruntime recogniser with a dynamic batch axis and automatic providers.

    The ONNX file may have a fixed batch of 1 (as the shipped teacher does); it is
    rewritten in memory to accept any batch size.
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
        self.session = make_session(make_batch_dynamic(path), providers)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        if isinstance(inp.shape[2], int):
            self.input_size = int(inp.shape[2])
        if not self.embedding_size:
            probe = np.zeros((1, 3, self.input_size, self.input_size), np.float32)
            self.embedding_size = int(self._forward(probe).shape[1])

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output_name], {self.input_name: batch})[0]
        return out.reshape(len(batch), -1)
