"""``load_embedder``: one entry point for every recogniser (timm's ``create_model`` idea)."""

from __future__ import annotations

import os
from functools import lru_cache

from lrface.errors import ModelFileError, first_line
from lrface.models.embedder import EmbedderBase
from lrface.models.registry import ModelSpec, get_spec, locate, with_precision

TRAIN_EXTRA = 'pip install "lrface[train]"'


def load_embedder(
    name_or_path: str | os.PathLike[str],
    flip: bool = True,
    model_dir: str | os.PathLike[str] | None = None,
    providers: list[str] | None = None,
    batch_size: int = 64,
    precision: str | None = None,
) -> EmbedderBase:
    """Load a recogniser by registry name, card path or weights path (cached per arguments).

    ``precision``: None (the model as named), ``"int8"`` (its statically quantized copy,
    card ``<name>-int8``; a missing one raises :class:`ModelFileError`) or ``"fp32"``
    (the float model; for an int8 card, the one it was quantized from).

    ONNX models (the teacher, the shipped students, insightface recognisers, exports) run
    in onnxruntime; torch students (``.pt`` cards written by ``lrface distill``) need the
    ``train`` extra.  Every weights file is sha256-checked against its card or registry
    entry first.  The result embeds uint8 BGR crops of any size into L2-normalised
    float32 (N, D) arrays (see :class:`EmbedderBase`).  Treat it as read-only: it is shared.
    """
    # resolved now: the cache is keyed by what it names
    spec = with_precision(get_spec(name_or_path), precision)
    return _load(
        spec,
        flip,
        str(model_dir) if model_dir else None,
        tuple(providers) if providers else None,
        batch_size,
    )


@lru_cache(maxsize=16)
def _load(
    spec: ModelSpec,
    flip: bool,
    model_dir: str | None,
    providers: tuple[str, ...] | None,
    batch_size: int,
) -> EmbedderBase:
    name = spec.name
    if spec.kind == "detector":
        raise ModelFileError(f"{name}: is a face detector, not a recogniser; pass a recogniser")
    path = locate(spec, model_dir)
    if spec.runtime == "torch":
        return _torch_embedder(spec, path, flip, batch_size)
    from lrface.models.onnx_embedder import OnnxEmbedder

    emb = OnnxEmbedder(
        spec,
        path,
        flip=flip,
        batch_size=batch_size,
        providers=list(providers) if providers else None,
    )
    return check_against_file(emb, path)


def check_against_file(emb: EmbedderBase, path: os.PathLike[str]) -> EmbedderBase:
    """Compare the card's ``input_size`` and ``embedding_size`` with what the loaded
    model file gives (``emb.file_shapes()``) -- the one place every recogniser passes.

    A field the card leaves out (registry entries with a dynamic input) is taken from
    the file; a field that differs raises :class:`ModelFileError`, one line naming the
    card (or registry entry), the field, both values and the fix.  Returns ``emb``.
    """
    spec = emb.spec
    try:
        side, dim = emb.file_shapes()  # type: ignore[attr-defined]
    except Exception as exc:  # a side the network cannot take, not a crop recogniser
        need = f"an error for {spec.input_size}-px crops ({first_line(exc)})"
        raise _mismatch(spec, path, "input_size", spec.input_size, need) from None
    if side is not None:
        if spec.input_size is not None and side != spec.input_size:
            raise _mismatch(spec, path, "input_size", spec.input_size, f"{side}x{side} input")
        emb.input_size = side
    if spec.embedding_size is not None and dim != spec.embedding_size:
        raise _mismatch(spec, path, "embedding_size", spec.embedding_size, f"{dim}-d embeddings")
    emb.embedding_size = dim
    return emb


def _mismatch(
    spec: ModelSpec, path: os.PathLike[str], field: str, claimed: object, actual: str
) -> ModelFileError:
    """The error of :func:`check_against_file`: card ``field`` says ``claimed``, the file
    at ``path`` gives ``actual``."""
    from lrface.models.registry import is_shipped_card

    if spec.card_path is None:
        where, fix = f"registry entry {spec.name}", "pass the model's own weights"
    elif is_shipped_card(spec.card_path):
        where, fix = f"model card {spec.card_path}", "restore it (git checkout weights/)"
    else:
        where = f"model card {spec.card_path}"
        fix = f"fix {field} in the card, or write it again (`lrface export`, `lrface distill`)"
    return ModelFileError(
        f"{where}: field {field!r} says {claimed}, but the model file {path} gives {actual}; {fix}"
    )


def _torch_embedder(
    spec: ModelSpec, path: os.PathLike[str], flip: bool, batch: int
) -> EmbedderBase:
    """A ``.pt`` student through torch; one line naming the extra when torch is missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ModelFileError(
            f"{path}: {spec.name} is a torch student and torch is not installed; install the "
            f"training extra ({TRAIN_EXTRA}) or export it to ONNX on a machine with torch "
            "(`lrface export`)"
        ) from None
    from lrface.models.torch_embedder import TorchEmbedder, load_student_module

    emb = TorchEmbedder(
        spec, load_student_module(spec, path), flip=flip, batch_size=max(batch, 128)
    )
    return check_against_file(emb, path)
