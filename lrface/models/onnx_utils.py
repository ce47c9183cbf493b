"""Small ONNX graph edits: make a fixed batch-1 model accept any batch size."""

from __future__ import annotations

import os

import numpy as np


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
