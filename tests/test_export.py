"""ONNX export of students: torch and onnxruntime agree on real faces; the pair loads by path."""

import json

import numpy as np
import pytest
from conftest import LFW_ROOT

from lrface.io.fileio import sha256_file
from lrface.models.export import export_onnx
from lrface.models.loader import load_embedder
from lrface.models.registry import PACKAGE_WEIGHTS, student_cards

#: Shipped students with torch weights (an int8 copy is ONNX only: tests/test_precision.py).
SHIPPED = sorted(n for n, s in student_cards().items() if not s.quantized_from)


def _real_crops(size):
    from lrface.faces.degrade import Degradation, degrade
    from lrface.faces.pipeline import prepare_face

    imgs = sorted((LFW_ROOT / "lfw-deepfunneled" / "George_W_Bush").glob("*.jpg"))[:4]
    crops = [prepare_face(p).crop for p in imgs]
    return [degrade(c, Degradation(size=16)) for c in crops] + crops


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_student_exports_and_matches_torch(tmp_path, name):
    torch_emb = load_embedder(name)
    crops = _real_crops(torch_emb.input_size)
    x = torch_emb.preprocess(crops)
    out = tmp_path / f"{name}.onnx"
    card = export_onnx(name, out, check_crops=x)
    assert card["export"]["max_abs_diff"] < 1e-4
    assert json.loads(out.with_suffix(".json").read_text())["runtime"] == "onnx"
    onnx_emb = load_embedder(str(out.with_suffix(".json")))
    assert type(onnx_emb).__name__ == "OnnxEmbedder"
    a, b = torch_emb.embed_crops(crops), onnx_emb.embed_crops(crops)
    assert np.abs(a - b).max() < 1e-4
    assert onnx_emb.threshold == torch_emb.threshold


def test_shipped_students_are_present():
    """weights/ ships lrface-mbf and lrface-tiny-16/24/32 with their cards and matching hashes."""
    shipped = ("lrface-mbf", "lrface-tiny-16", "lrface-tiny-24", "lrface-tiny-32")
    assert set(shipped) <= set(SHIPPED), SHIPPED
    for name in shipped:
        card = json.loads((PACKAGE_WEIGHTS / f"{name}.json").read_text())
        assert card["threshold"] is not None and card["teacher"]["name"] == "mobilefacenet-arcface"
        assert "train split" in card["data"]["split"]
        assert sha256_file(PACKAGE_WEIGHTS / card["weights_file"]) == card["sha256"], name


def test_shipped_tiny_students_run_without_prelu():
    """The shipped tiny ONNX files carry PRelu as Conv/Relu/Add (rewrite_prelu), recorded in
    the card, and still agree with their torch weights on real faces."""
    import onnx

    for name in ("lrface-tiny-16", "lrface-tiny-24", "lrface-tiny-32"):
        card = json.loads((PACKAGE_WEIGHTS / f"{name}.json").read_text())
        ops = {n.op_type for n in onnx.load(str(PACKAGE_WEIGHTS / card["weights_file"])).graph.node}
        assert "PRelu" not in ops and {"Conv", "Relu", "Add"} <= ops, (name, ops)
        assert card["export"]["prelu_rewritten"] == 15
    torch_emb = load_embedder(str(PACKAGE_WEIGHTS / "lrface-tiny-16.pt"))
    onnx_emb = load_embedder("lrface-tiny-16")
    crops = _real_crops(16)
    assert np.abs(torch_emb.embed_crops(crops) - onnx_emb.embed_crops(crops)).max() < 1e-5


def test_rewrite_prelu_matches_prelu_on_every_path():
    """rewrite_prelu is exact whether the PRelu follows a single-use Conv (duplicated), a
    Conv whose output is used twice or a graph input (1x1 depthwise scaling); a PRelu with a
    slope >= 1 is kept."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from lrface.models.onnx_utils import rewrite_prelu

    rng = np.random.default_rng(0)
    c = 16

    def init(name, a):
        return numpy_helper.from_array(np.asarray(a, np.float32), name)

    slopes = [rng.uniform(-0.2, 0.9, (c, 1, 1)) for _ in range(3)] + [np.full((c, 1, 1), 1.5)]
    inits = [init(f"a{i}", s) for i, s in enumerate(slopes)]
    inits += [init("w0", rng.normal(size=(c, 3, 3, 3))), init("b0", rng.normal(size=c))]
    inits += [init("w1", rng.normal(size=(c, 1, 3, 3)))]
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["z0"], pads=[1, 1, 1, 1]),
        helper.make_node("PRelu", ["z0", "a0"], ["y0"]),  # single-use conv: duplicated
        helper.make_node("Conv", ["y0", "w1"], ["z1"], group=c, pads=[1, 1, 1, 1]),
        helper.make_node("PRelu", ["z1", "a1"], ["y1"]),  # z1 used twice: 1x1 scaling
        helper.make_node("Add", ["y1", "z1"], ["s"]),
        helper.make_node("PRelu", ["s", "a2"], ["y2"]),  # fed by Add: 1x1 scaling
        helper.make_node("PRelu", ["y2", "a3"], ["out"]),  # slope 1.5: kept
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", c, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    before = model.SerializeToString()
    after, n = rewrite_prelu(before)
    assert n == 3
    rewritten = onnx.load_from_string(after)
    onnx.checker.check_model(rewritten)
    assert [nd.op_type for nd in rewritten.graph.node].count("PRelu") == 1
    assert rewrite_prelu(after) == (after, 0)
    x = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    run = [
        ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        for m in (before, after)
    ]
    scale = np.abs(run[0]).max()
    assert scale > 1 and np.abs(run[0] - run[1]).max() < 1e-6 * scale  # float32 rounding
