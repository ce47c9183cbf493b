"""int8 models: a real static quantization (benchmarks/quantize.py on real faces), the
``--precision`` routing, a missing copy and a tampered file."""

import argparse
import json
import shutil
import sys

import numpy as np
import pytest
from conftest import PHOTOS, REPO

from lrface.cli.main import main
from lrface.errors import ModelFileError
from lrface.faces.pipeline import prepare_face
from lrface.models.loader import load_embedder

sys.path.insert(0, str(REPO / "benchmarks"))
import quantize

FACES = sorted(PHOTOS.glob("*_000*.jpg"))


@pytest.fixture(scope="module")
def crops():
    return [prepare_face(p, detector="yunet").crop for p in FACES]


def copy_model(name: str, out) -> None:
    """The shipped lrface-tiny-16 (card and ONNX) copied into ``out`` as model ``name``."""
    card = json.loads((REPO / "weights" / "lrface-tiny-16.json").read_text())
    card["name"] = name
    (out / f"{name}.json").write_text(json.dumps(card))
    shutil.copy(REPO / "weights" / card["weights_file"], out)


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory, crops):
    """A model directory with ``tiny-copy`` (lrface-tiny-16 under another name, so that no
    shipped int8 file answers for it) and ``tiny-copy-int8``, quantized by
    benchmarks/quantize.py and calibrated on the committed photos."""
    out = tmp_path_factory.mktemp("int8")
    copy_model("tiny-copy", out)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LRFACE_MODEL_DIR", str(out))
        args = argparse.Namespace(seed=0, method="minmax", out_dir=str(out))
        quantize.quantize("tiny-copy", crops, [p.name for p in FACES], args)
    return out


@pytest.fixture
def model_dir(int8_dir, monkeypatch):
    monkeypatch.setenv("LRFACE_MODEL_DIR", str(int8_dir))
    return int8_dir


def test_int8_copy_loads_and_agrees_with_fp32(model_dir, crops):
    card = json.loads((model_dir / "tiny-copy-int8.json").read_text())
    assert card["precision"] == "int8" and card["quantization"]["from"] == "tiny-copy"
    fp32 = load_embedder("tiny-copy")
    int8 = load_embedder("tiny-copy", precision="int8")
    assert (int8.name, int8.spec.precision) == ("tiny-copy-int8", "int8")
    assert int8.sha256 == card["sha256"] != fp32.sha256
    cos = (fp32.embed_crops(crops) * int8.embed_crops(crops)).sum(1)
    assert cos.min() > 0.95, cos
    assert load_embedder("tiny-copy-int8", precision="fp32").name == "tiny-copy"
    assert load_embedder("tiny-copy-int8").name == "tiny-copy-int8"  # as named


def test_precision_flag_routes_verify_and_embed(model_dir, tmp_path, capsys):
    a, b = str(FACES[0]), str(FACES[1])
    main(["verify", a, b, "--model", "tiny-copy", "--precision", "int8", "--json"])
    assert json.loads(capsys.readouterr().out)["models"] == ["tiny-copy-int8"] * 2
    main(["verify", a, b, "--model", "tiny-copy", "--json"])
    assert json.loads(capsys.readouterr().out)["models"] == ["tiny-copy"] * 2
    out = tmp_path / "e.npz"
    argv = ["embed", a, b, "--model", "tiny-copy", "--workers", "0", "--quiet"]
    assert main([*argv, "--precision", "int8", "--out", str(out)]) == 0
    with np.load(out, allow_pickle=False) as z:
        assert "tiny-copy-int8" in str(z["meta"]) and z["embeddings"].shape == (2, 128)


def test_missing_int8_copy_is_one_line(tmp_path, monkeypatch, capsys):
    copy_model("lone-copy", tmp_path)
    monkeypatch.setenv("LRFACE_MODEL_DIR", str(tmp_path))
    argv = ["verify", str(FACES[0]), str(FACES[1]), "--model", "lone-copy", "--precision", "int8"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lone-copy-int8.json" in err[0] and "quantize.py" in err[0], err


def test_tampered_int8_file_never_loads(int8_dir, tmp_path):
    for f in int8_dir.iterdir():
        shutil.copy(f, tmp_path)
    with open(tmp_path / "tiny-copy-int8.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelFileError, match="sha256 mismatch"):
        load_embedder(tmp_path / "tiny-copy-int8.json")


def test_keep_float_leaves_stem_and_head_unquantized(tmp_path, crops, monkeypatch):
    """``--keep-float first,head`` (percentile calibration): the first weighted node and
    those after the last Add keep float32 weights (no DequantizeLinear feeds them), every
    other Conv is quantized, the card names them, and the model still agrees with fp32."""
    import onnx

    copy_model("keep-copy", tmp_path)
    monkeypatch.setenv("LRFACE_MODEL_DIR", str(tmp_path))
    args = argparse.Namespace(
        seed=0, method="percentile", percentile=99.99, keep_float="first,head", format="qdq",
        out_dir=str(tmp_path),
    )  # fmt: skip
    card = quantize.quantize("keep-copy", crops, [p.name for p in FACES], args)
    kept = card["quantization"]["float_nodes"]
    assert "calibration percentile 99.99" in card["quantization"]["method"]
    graph = onnx.load(str(tmp_path / "keep-copy-int8.onnx")).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    inits = {i.name for i in graph.initializer}
    weighted = [n for n in graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    float_w = {n.name for n in weighted if n.input[1] in inits and n.input[1] not in dequantized}
    assert len(kept) >= 2 and weighted[0].name == kept[0] and weighted[-1].name in kept
    assert float_w == set(kept), (float_w, kept)
    fp32 = load_embedder("keep-copy")
    int8 = load_embedder("keep-copy", precision="int8")
    assert (fp32.embed_crops(crops) * int8.embed_crops(crops)).sum(1).min() > 0.95


def test_keep_float_unknown_part_is_refused(tmp_path):
    import onnx

    model = onnx.load(str(REPO / "weights" / "lrface-tiny-16.onnx"))
    with pytest.raises(SystemExit, match="--keep-float tail: choose from"):
        quantize.float_nodes(model, ("tail",))


def test_chunked_minmax_ranges_equal_onnxruntime_one_pass(tmp_path, crops):
    """MinMax ranges collected two faces at a time (benchmarks/chunked_calibration.py) are
    exactly onnxruntime's own one-pass MinMax over the same inputs, tensor for tensor;
    Percentile through the chunks stays inside them."""
    import chunked_calibration as cc
    import onnx
    from onnxruntime.quantization import CalibrationMethod, quantize_static
    from onnxruntime.quantization.calibrate import load_tensors_data

    from lrface.models.registry import get_spec, locate

    spec = get_spec("lrface-tiny-16")
    pre = quantize.prepare(locate(spec), tmp_path)
    views = quantize.calibration_views(crops, 0)
    x = np.concatenate(list(quantize.calibration_inputs(views, spec, len(views))))
    name = onnx.load(str(pre)).graph.input[0].name
    cache = tmp_path / "one-pass.json"
    quantize_static(
        str(pre), str(tmp_path / "q.onnx"), cc.ArrayReader(x, name),
        calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(cache),
        extra_options={"CalibTensorRangeSymmetric": False},
    )  # fmt: skip
    one_pass = cc.range_pairs(load_tensors_data(cache))
    chunks = quantize.calibration_inputs(views, spec, 2)
    chunked = cc.range_pairs(cc.chunked_ranges(pre, chunks, name, "minmax"))
    assert len(one_pass) > 20 and one_pass.keys() == chunked.keys()
    for t, (lo, hi) in one_pass.items():
        assert np.array_equal(lo, chunked[t][0]) and np.array_equal(hi, chunked[t][1]), t
    pct = cc.range_pairs(
        cc.chunked_ranges(
            pre, quantize.calibration_inputs(views, spec, 2), name, "percentile", 99.9
        )
    )
    assert pct.keys() == one_pass.keys()
    for t, (lo, hi) in pct.items():
        assert one_pass[t][0] <= lo <= hi <= one_pass[t][1], t


def test_shipped_lrface_mbf_int8_loads_routes_and_is_sha_checked(tmp_path, crops, capsys):
    """weights/lrface-mbf-int8 (int8 round 2, benchmarks/RESULTS.md): its card names the
    shipped fp32 file it was quantized from, ``--precision int8`` loads it with its own
    sha256, it agrees with fp32 on real faces, and a copy with one byte changed never loads."""
    from lrface.io.fileio import sha256_file

    card = json.loads((REPO / "weights" / "lrface-mbf-int8.json").read_text())
    q = card["quantization"]
    assert card["precision"] == "int8" and q["from"] == "lrface-mbf"
    assert q["float_nodes"] == ["/conv2/Conv", "/gdconv/Conv", "/linear/Conv"]
    assert "percentile 99.99" in q["method"] and q["calibration"]["images"] == 1024
    fp32 = load_embedder("lrface-mbf")
    int8 = load_embedder("lrface-mbf", precision="int8")
    assert q["from_sha256"] == fp32.sha256
    assert (int8.name, int8.spec.precision) == ("lrface-mbf-int8", "int8")
    assert int8.sha256 == card["sha256"] == sha256_file(REPO / "weights" / card["weights_file"])
    cos = (fp32.embed_crops(crops) * int8.embed_crops(crops)).sum(1)
    assert cos.min() > 0.98, cos
    a, b = str(FACES[0]), str(FACES[1])
    main(["verify", a, b, "--model", "lrface-mbf", "--precision", "int8", "--json"])
    assert json.loads(capsys.readouterr().out)["models"] == ["lrface-mbf-int8"] * 2
    shutil.copy(REPO / "weights" / "lrface-mbf-int8.json", tmp_path)
    data = bytearray((REPO / "weights" / card["weights_file"]).read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / card["weights_file"]).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256 mismatch"):
        load_embedder(tmp_path / "lrface-mbf-int8.json")
