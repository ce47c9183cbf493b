"""ONNX export of students: torch and onnxruntime agree on real faces; the pair loads by path."""

import json

import numpy as np
import pytest
from conftest import LFW_ROOT

from lrface.export import export_onnx
from lrface.fileio import sha256_file
from lrface.models.loader import load_embedder
from lrface.models.registry import PACKAGE_WEIGHTS, student_cards

SHIPPED = sorted(student_cards().keys())


def _real_crops(size):
    from lrface.degrade import Degradation, degrade
    from lrface.pipeline import prepare_face

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
