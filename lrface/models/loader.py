"""``load_embedder``: one entry point for every recogniser (timm's ``create_model`` idea)."""

from __future__ import annotations

import os
from functools import lru_cache

from .embedder import Embedder
from .registry import get_spec, locate


def load_embedder(
    name_or_path: str | os.PathLike[str],
    flip: bool = True,
    model_dir: str | os.PathLike[str] | None = None,
    providers: list[str] | None = None,
    batch_size: int = 64,
) -> Embedder:
    """Load a recogniser by registry name, card path or weights path.

    ONNX models (the teacher, insightface recognisers, exported students) run in
    onnxruntime; torch students in torch.  The result embeds aligned uint8 BGR crops of
    any size into L2-normalised float32 (N, D) arrays (see :class:`Embedder`).
    """
    return _load(
        str(name_or_path),
        flip,
        str(model_dir) if model_dir else None,
        tuple(providers) if providers else None,
        batch_size,
    )


@lru_cache(maxsize=16)
def _load(
    name: str, flip: bool, model_dir: str | None, providers: tuple[str, ...] | None, batch_size: int
) -> Embedder:
    spec = get_spec(name)
    if spec.kind == "detector":
        from ..errors import ModelFileError

        raise ModelFileError(f"{name}: is a face detector, not a recogniser; pass a recogniser")
    path = locate(spec, model_dir)
    if spec.runtime == "torch":
        from .torch_embedder import TorchEmbedder, load_student_state

        return TorchEmbedder(
            spec, load_student_state(spec, path), flip=flip, batch_size=max(batch_size, 128)
        )
    from .teacher import OnnxEmbedder

    return OnnxEmbedder(
        spec,
        path,
        flip=flip,
        batch_size=batch_size,
        providers=list(providers) if providers else None,
    )
