"""``lrface export``: a torch student to ONNX (dynamic batch) plus its JSON card.

The exported pair loads as a named model through the registry
(``lrface verify --model OUT.onnx``) and runs in onnxruntime with automatic providers.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrface.errors import LrfaceError
from lrface.io.fileio import atomic_write, sha256_file, write_json_atomic
from lrface.models import registry
from lrface.models.onnx_utils import rewrite_prelu
from lrface.models.torch_embedder import load_student_module


def export_onnx(
    model: str,
    onnx_path: str | Path,
    opset: int = 17,
    check_crops: np.ndarray | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Export student ``model`` (name, card or weights path) to ``onnx_path``.

    Writes ``onnx_path`` and the card ``onnx_path.with_suffix('.json')`` (``runtime:
    onnx``, same preprocessing, threshold and provenance as the torch card, the ONNX
    file's sha256, and ``torch_weights``: the source ``.pt`` and its sha256, named
    relative to the card when it lies beside it).  Per-channel ``PRelu`` nodes are written
    as an exactly equivalent ``Conv``/``Relu``/``Add`` form that onnxruntime runs faster
    (:func:`lrface.models.onnx_utils.rewrite_prelu`; their count is recorded under
    ``export.prelu_rewritten``).  The card's model name is ``name``
    (default: the source's name + ``-onnx``).  Returns the new card.  The max abs
    difference between torch and onnxruntime outputs on ``check_crops`` (float32
    N,3,S,S; random when None) is recorded in the card under ``export``.
    """
    spec = registry.get_spec(model)
    if spec.kind != "student":
        raise LrfaceError(f"{model}: only students can be exported (this is a {spec.kind})")
    pt_path = registry.torch_weights(spec)
    net = load_student_module(spec, pt_path).eval()
    s = int(spec.input_size or 112)
    data, n_prelu = _onnx_bytes(net, s, opset)
    onnx_path = Path(onnx_path)
    pt_sha = sha256_file(pt_path)
    with atomic_write(onnx_path, "wb") as fh:
        fh.write(data)
    x = (
        check_crops
        if check_crops is not None
        else np.random.default_rng(0).normal(size=(4, 3, s, s)).astype(np.float32)
    )
    diff = max_abs_diff(net, data, x)
    card = _onnx_card(spec, pt_path, pt_sha, onnx_path, name, opset, diff, n_prelu)
    write_json_atomic(onnx_path.with_suffix(".json"), card)
    return card


def _onnx_bytes(net: torch.nn.Module, size: int, opset: int) -> tuple[bytes, int]:
    """``(model, n)``: ``net`` exported to ONNX at ``opset`` (input ``input`` float32
    (batch, 3, size, size), output ``embedding`` (batch, D), dynamic batch axis), with its
    ``n`` per-channel ``PRelu`` nodes rewritten by :func:`rewrite_prelu`."""
    dummy = torch.zeros(1, 3, size, size)
    with tempfile.TemporaryDirectory(prefix="lrface-export-") as tmp:
        tmp_onnx = Path(tmp) / "model.onnx"
        torch.onnx.export(
            net,
            (dummy,),
            tmp_onnx,
            input_names=["input"],
            output_names=["embedding"],
            dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
        # per-channel PRelu -> Conv/Relu/Add (exact): onnxruntime keeps that fused in its
        # NCHWc layout, ~2.5x faster for the tiny students on CPU
        return rewrite_prelu(tmp_onnx.read_bytes())


def _onnx_card(
    spec: registry.ModelSpec,
    pt_path: Path,
    pt_sha: str,
    onnx_path: Path,
    name: str | None,
    opset: int,
    diff: float,
    n_prelu: int,
) -> dict[str, Any]:
    """The card of the ONNX file ``onnx_path`` exported from ``spec`` (see :func:`export_onnx`).

    A copy of the torch card with the new ``name`` (default: the source's + ``-onnx``),
    ``runtime``, ``weights_file``, ``sha256`` and ``export`` provenance; ``torch_weights``
    (``pt_path``'s name and ``pt_sha``) only when the ``.pt`` lies beside ``onnx_path``.
    """
    card = copy.deepcopy(spec.card or {})
    base = card.get("name", spec.name)
    beside = pt_path.resolve().parent == onnx_path.resolve().parent
    card.update(
        {
            "name": name or (base if base.endswith("-onnx") else base + "-onnx"),
            "runtime": "onnx",
            "weights_file": onnx_path.name,
            "sha256": sha256_file(onnx_path),
            "export": {
                "from": spec.name,
                "from_sha256": pt_sha,
                "opset": opset,
                "max_abs_diff": float(diff),
                "prelu_rewritten": n_prelu,
                "torch": torch.__version__,
            },
        }
    )
    card.pop("torch_weights", None)
    if beside:  # the card can serve fine-tuning and re-export too
        card["torch_weights"] = {"file": pt_path.name, "sha256": pt_sha}
    return card


def max_abs_diff(net: torch.nn.Module, onnx_bytes: bytes, x: np.ndarray) -> float:
    """Largest |torch - onnxruntime| over the outputs for input ``x`` (N,3,S,S float32)."""
    from lrface.models.providers import make_session

    sess = make_session(onnx_bytes)
    with torch.inference_mode():
        ref = net(torch.from_numpy(x)).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return float(np.abs(ref - got).max())
