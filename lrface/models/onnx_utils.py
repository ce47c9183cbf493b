"""Small ONNX graph edits: make a fixed batch-1 model accept any batch size; rewrite
per-channel ``PRelu`` into ops that onnxruntime's CPU layout optimiser keeps fused."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onnx import GraphProto, NodeProto, TensorProto


def make_batch_dynamic(path: str | os.PathLike[str]) -> bytes:
    """Return the serialised model at ``path`` with a symbolic batch axis.

    The graph inputs' and outputs' first dimension becomes ``"batch"``, stale intermediate
    shape annotations are dropped, and every ``Reshape`` whose target shape is a constant
    starting with ``1`` (e.g. the teacher's final ``Reshape`` to ``[1, -1]``) gets ``0``
    there instead, which ONNX reads as "copy this dimension from the input".
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) > 0:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    del graph.value_info[:]

    constants = {}
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = node
    inits = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        shape_name = node.input[1]
        if shape_name in constants:
            attr = next(a for a in constants[shape_name].attribute if a.name == "value")
            shape = numpy_helper.to_array(attr.t).copy()
            if shape.ndim == 1 and shape.size > 0 and shape[0] == 1:
                shape[0] = 0
                attr.t.CopyFrom(numpy_helper.from_array(shape.astype(np.int64), attr.t.name))
        elif shape_name in inits:
            shape = numpy_helper.to_array(inits[shape_name]).copy()
            if shape.ndim == 1 and shape.size > 0 and shape[0] == 1:
                shape[0] = 0
                inits[shape_name].CopyFrom(numpy_helper.from_array(shape, shape_name))
    return model.SerializeToString()


def rewrite_prelu(model_bytes: bytes) -> tuple[bytes, int]:
    """Return ``(model, n)``: the serialised model with ``n`` per-channel ``PRelu`` nodes
    replaced by an exactly equivalent ``Conv``/``Relu``/``Add`` form.

    onnxruntime's CPU execution provider runs convolutions in its blocked NCHWc layout, but
    has no NCHWc ``PRelu``: every ``PRelu`` costs a reorder out of and back into that layout
    plus a slow broadcasting kernel (in ``lrface-tiny-16``: ~3/4 of the run time).  With
    ``a < 1`` per channel, ``PRelu(z) = z + Relu(-(1 - a) * z)``, so for ``z = Conv(x)`` (a
    convolution used only by the ``PRelu``)::

        t = Relu(Conv'(x))    # Conv' = the same conv, weights and bias scaled by -(1 - a)
        y = Conv(x) + t

    which onnxruntime fuses into two NCHWc convolutions (the first with its ``Relu``, the
    second accumulating ``t``): no reorders, no elementwise pass.  A ``PRelu`` fed by anything
    else gets a 1x1 depthwise ``Conv'`` on ``z`` instead.  Slopes must have the shape
    ``(C, 1, 1)`` (one per channel of a 4-D input) and be < 1; other ``PRelu`` nodes are kept.
    Outputs match the original to float32 rounding (~1e-6).
    """
    import onnx

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    uses = _use_counts(graph)
    nodes: list[NodeProto] = []
    new_inits: list[TensorProto] = []
    n = 0
    for node in graph.node:
        scale = _prelu_scale(node, inits)
        if scale is None:
            nodes.append(node)
            continue
        conv = producer.get(node.input[0])
        nodes.extend(_prelu_as_conv(node, scale, conv, inits, uses, new_inits))
        n += 1
    if not n:
        return model_bytes, 0
    _replace_nodes(graph, nodes, new_inits)
    return model.SerializeToString(), n


def _use_counts(graph: GraphProto) -> dict[str, int]:
    """How many times each tensor name is read: as a node input or as a graph output."""
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    for out in graph.output:
        uses[out.name] = uses.get(out.name, 0) + 1
    return uses


def _prelu_scale(node: NodeProto, inits: dict[str, TensorProto]) -> np.ndarray | None:
    """float64 (C,) ``-(1 - a)`` for a rewritable ``PRelu`` node, else None.

    Rewritable: a ``PRelu`` whose slope ``a`` is an initializer of shape ``(C, 1, 1)`` with
    every value < 1.
    """
    from onnx import numpy_helper

    slope_name = node.input[1] if node.op_type == "PRelu" and len(node.input) > 1 else ""
    if slope_name not in inits:
        return None
    slope = numpy_helper.to_array(inits[slope_name]).astype(np.float64)
    if slope.ndim != 3 or slope.shape[1:] != (1, 1) or not (slope < 1).all():
        return None
    return -(1.0 - slope.reshape(-1))


def _prelu_as_conv(
    node: NodeProto,
    scale: np.ndarray,
    conv: NodeProto | None,
    inits: dict[str, TensorProto],
    uses: dict[str, int],
    new_inits: list[TensorProto],
) -> list[NodeProto]:
    """The ``Conv'``/``Relu``/``Add`` nodes that replace the ``PRelu`` ``node``.

    ``scale``: float64 (C,) ``-(1 - a)`` (:func:`_prelu_scale`); ``conv``: the node that
    produces the ``PRelu`` input ``z`` (None for a graph input).  ``Conv'`` duplicates
    ``conv`` with scaled weights when ``conv`` is a ``Conv`` with constant weights (and
    bias), C output channels and no other reader of ``z``; otherwise it is a 1x1 depthwise
    ``Conv`` on ``z``.  Its float32 weights (and bias) are appended to ``new_inits``.
    """
    from onnx import helper, numpy_helper

    z, y = node.input[0], node.output[0]
    prefix = f"{y}_prelu"
    duplicate = (
        conv is not None
        and conv.op_type == "Conv"
        and uses.get(z, 0) == 1
        and conv.input[1] in inits
        and (len(conv.input) < 3 or not conv.input[2] or conv.input[2] in inits)
        and numpy_helper.to_array(inits[conv.input[1]]).shape[0] == scale.size
    )
    if duplicate and conv is not None:
        scaled = _scaled_conv(conv, scale, prefix, inits, new_inits)
    else:
        scaled = _depthwise_scale(z, scale, prefix, new_inits)
    relu = helper.make_node("Relu", [f"{prefix}_u"], [f"{prefix}_t"], name=f"{prefix}_relu")
    add = helper.make_node("Add", [z, f"{prefix}_t"], [y], name=f"{prefix}_add")
    return [scaled, relu, add]


def _scaled_conv(
    conv: NodeProto,
    scale: np.ndarray,
    prefix: str,
    inits: dict[str, TensorProto],
    new_inits: list[TensorProto],
) -> NodeProto:
    """A copy of ``conv`` (same input and attributes) with its (C_out, C_in/g, kh, kw)
    weights and (C_out,) bias multiplied by the float64 (C_out,) ``scale`` per output
    channel (in float64, stored as float32 ``{prefix}_W`` / ``{prefix}_B`` in
    ``new_inits``); output ``{prefix}_u``."""
    from onnx import helper, numpy_helper

    w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
    w = w * scale.reshape(-1, 1, 1, 1)
    new_inits.append(numpy_helper.from_array(w.astype(np.float32), f"{prefix}_W"))
    inputs = [conv.input[0], f"{prefix}_W"]
    if len(conv.input) > 2 and conv.input[2]:
        bias = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) * scale
        new_inits.append(numpy_helper.from_array(bias.astype(np.float32), f"{prefix}_B"))
        inputs.append(f"{prefix}_B")
    scaled = helper.make_node("Conv", inputs, [f"{prefix}_u"], name=f"{prefix}_conv")
    scaled.attribute.extend(conv.attribute)
    return scaled


def _depthwise_scale(
    z: str, scale: np.ndarray, prefix: str, new_inits: list[TensorProto]
) -> NodeProto:
    """A 1x1 depthwise ``Conv`` multiplying channel c of the 4-D tensor ``z`` by the
    float64 (C,) ``scale[c]`` (weights float32 (C, 1, 1, 1) ``{prefix}_W``, appended to
    ``new_inits``); output ``{prefix}_u``."""
    from onnx import helper, numpy_helper

    channels = scale.size
    w = scale.reshape(channels, 1, 1, 1).astype(np.float32)
    new_inits.append(numpy_helper.from_array(w, f"{prefix}_W"))
    return helper.make_node(
        "Conv",
        [z, f"{prefix}_W"],
        [f"{prefix}_u"],
        name=f"{prefix}_conv",
        group=channels,
        kernel_shape=[1, 1],
    )


def _replace_nodes(graph: GraphProto, nodes: list[NodeProto], new_inits: list[TensorProto]) -> None:
    """Give ``graph`` the node list ``nodes``, add ``new_inits`` and drop every initializer
    no node reads any more (the replaced ``PRelu`` slopes and duplicated convs' weights)."""
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
