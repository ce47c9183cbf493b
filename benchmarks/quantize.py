"""Statically quantized int8 copies of lrface's ONNX recognisers, with their cards.

    python benchmarks/quantize.py --model lrface-mbf[,NAME...] [--images 256] [--seed 0]
                                  [--method minmax|percentile|entropy] [--percentile 99.999]
                                  [--keep-float first,head,dw] [--format qdq|qoperator]
                                  [--chunk-faces 16] [--out-dir weights]

Writes ``OUT_DIR/NAME-int8.onnx`` and its card ``OUT_DIR/NAME-int8.json`` (own sha256,
``"precision": "int8"``, the fp32 source and its sha256, the quantization settings and
the calibration data), which ``--precision int8`` resolves to.

Why a script and not ``lrface export --int8``: quantization needs calibration data (LFW
train-split faces) and onnxruntime's quantization tools, like training needs its data
and recipes (``benchmarks/train_*.sh``); a user runs the shipped int8 files, never this.
``lrface export`` exports torch students only, while the teacher is quantized too.

Recipe (onnxruntime.quantization.quantize_static): the fp32 file with a dynamic batch
axis (the teacher's fixed batch 1 rewritten as lrface does at run time) and at least
opset 13 (the teacher's opset 11 converted: per-channel DequantizeLinear), onnxruntime's
quantization pre-processing (graph optimisation + shape inference), then QDQ format,
per-channel int8 weights (symmetric), uint8 activations (U8S8: the kernels onnxruntime
runs fastest on x86 CPUs, VNNI or not), calibrated on ``--images`` aligned faces of the
LFW **train** split (identities disjoint from the test folds 6-10 and, so that recipes are
chosen on faces they were not calibrated on, from the validation folds 1-5; seeded
choice from position ``CALIB_SKIP``), each
face seen as the models see it at test time: one seeded view per face among HR (112 px)
and area reductions to 8, 12, 16 and 24 px (resized back to the model's input by
lrface's preprocessing), plus its mirror (flip fusion).

Recipe options (chosen by ``benchmarks/int8_select.py`` on the LFW train split and the
validation folds 1-5, never the test split): ``--method`` the calibration (MinMax,
Percentile at ``--percentile``, Entropy); ``--keep-float`` convolutions left in float32:
``first`` (the stem convolution, which sees the raw pixels) and/or ``head`` (the
convolutions after the last residual block: ``conv2``, the global depthwise ``gdconv``
and the ``linear`` embedding layer, so that the embedding itself is never rounded to 256
levels) and/or ``dw`` (every depthwise convolution); ``--format`` QDQ (default) or
QOperator.  Calibration runs ``--chunk-faces`` faces at a time
(``benchmarks/chunked_calibration.py``: memory bounded by one chunk's activations, also
for the histogram methods).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import chunked_calibration  # noqa: E402

VIEW_SIZES = (0, 8, 12, 16, 24)  # 0 = HR (the aligned 112 px crop)
#: Calibration faces whose activations are in memory at once (each with its mirror).
CHUNK_FACES = 16
MIN_OPSET = 13
KEEP_FLOAT = ("first", "head", "dw")
#: The first faces of :func:`calibration_pool` are held out (``int8_select.py``'s fidelity
#: faces); calibration takes its faces from this position on.
CALIB_SKIP = 400


def _opset(model) -> int:
    """The default-domain opset of an ONNX model."""
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _group(node) -> int:
    """The ``group`` attribute of an ONNX Conv node (1 when absent)."""
    return next((int(a.i) for a in node.attribute if a.name == "group"), 1)


def calibration_pool(lfw_root: str, seed: int) -> tuple[list[str], object]:
    """The seeded order of the LFW train-split images usable for calibration -- none of an
    identity in the validation pairs (folds 1-5), so that a recipe chosen there is chosen
    on faces it was not calibrated on -- and the :class:`LFW` they belong to."""
    from lrface.datasets.lfw import LFW, identity_of

    lfw = LFW(lfw_root)
    val = {identity_of(r) for p in lfw.split_pairs("val") for r in (p.a, p.b)}
    train = [r for r in lfw.train_images() if identity_of(r) not in val]
    order = np.random.default_rng(seed).permutation(len(train))
    return [train[int(i)] for i in order], lfw


def calibration_crops(
    lfw_root: str, n: int, seed: int, skip: int = 0
) -> tuple[list[np.ndarray], list[str]]:
    """``n`` aligned 112x112 uint8 BGR crops of :func:`calibration_pool`'s images from
    position ``skip`` on, and their relative paths: the crops lrface's LFW evaluators use
    (SCRFD-2.5g when installed, else YuNet; the shared aligned-crop cache); images where
    no face was detected are passed over."""
    from lrface.distill.faces import lfw_faces

    rels, lfw = calibration_pool(lfw_root, seed)
    rels = rels[skip : skip + 2 * n]
    faces = lfw_faces(lfw, rels)  # type: ignore[arg-type]
    keep = [i for i in range(len(rels)) if not faces["fallback"][i]][:n]
    return [faces["crops"][i] for i in keep], [rels[i] for i in keep]


def calibration_views(crops: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """One seeded view per crop (HR or area-reduced to 8/12/16/24 px), uint8 BGR."""
    from lrface.faces.degrade import Degradation, degrade

    rng = np.random.default_rng(seed + 1)
    sizes = rng.choice(VIEW_SIZES, size=len(crops))
    return [c if s == 0 else degrade(c, Degradation(int(s))) for c, s in zip(crops, sizes)]


def float_nodes(model, keep: tuple[str, ...]) -> list[str]:
    """Names of the weighted nodes (Conv, MatMul, Gemm) of ``model`` (an ONNX ModelProto,
    topologically sorted) that ``keep`` (items of :data:`KEEP_FLOAT`) leaves in float32:
    ``first`` = the first one; ``head`` = every one after the last Add (the residual
    blocks' end: the embedding layers); ``dw`` = every grouped (depthwise) convolution."""
    nodes = list(model.graph.node)
    convs = [i for i, n in enumerate(nodes) if n.op_type in ("Conv", "MatMul", "Gemm")]
    names: list[str] = []
    if "first" in keep and convs:
        names.append(nodes[convs[0]].name)
    if "head" in keep:
        adds = [i for i, n in enumerate(nodes) if n.op_type == "Add"]
        last_add = adds[-1] if adds else -1
        names += [nodes[i].name for i in convs if i > last_add]
    if "dw" in keep:
        names += [nodes[i].name for i in convs if _group(nodes[i]) > 1]
    unknown = set(keep) - set(KEEP_FLOAT)
    if unknown:
        raise SystemExit(f"--keep-float {','.join(sorted(unknown))}: choose from {KEEP_FLOAT}")
    return list(dict.fromkeys(names))


def calibration_inputs(views: list[np.ndarray], spec, chunk_faces: int) -> Iterator[np.ndarray]:
    """float32 (2n, 3, S, S) model inputs of ``views``, ``chunk_faces`` views (n) at a time:
    each view preprocessed for the model (its side, colour order, mean/std) and its mirror
    (flip fusion), built only when the calibrator asks for the chunk."""
    from lrface.models.preprocess import InputFormat, to_input

    fmt = InputFormat.of(spec)
    for i in range(0, len(views), chunk_faces):
        yield to_input(views[i : i + chunk_faces], fmt, mirrors=True)


def prepare(src: Path, tmp: Path) -> Path:
    """``tmp/pre.onnx``: the fp32 file ``src`` with a dynamic batch axis, at least opset
    :data:`MIN_OPSET`, after onnxruntime's quantization pre-processing."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from lrface.models.onnx_utils import make_batch_dynamic

    dyn = tmp / "dynamic.onnx"
    model = onnx.load_from_string(make_batch_dynamic(src))
    if _opset(model) < MIN_OPSET:  # per-channel DequantizeLinear (axis) needs opset 13
        from onnx import version_converter

        model = version_converter.convert_version(model, MIN_OPSET)
    onnx.save(model, str(dyn))
    pre = tmp / "pre.onnx"
    quant_pre_process(str(dyn), str(pre), skip_symbolic_shape=False)
    return pre


def quantize(name: str, crops: list[np.ndarray], used: list[str], args) -> dict:
    """Quantize model ``name``; write the int8 file and card; return the card."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from lrface.io.fileio import sha256_file
    from lrface.models.registry import get_spec, locate

    spec = get_spec(name)
    if spec.runtime != "onnx" or spec.kind == "detector":
        raise SystemExit(f"{name}: not an ONNX recogniser; quantize the ONNX export")
    src = locate(spec)
    method = getattr(args, "method", "minmax")
    chunk = int(getattr(args, "chunk_faces", CHUNK_FACES))
    tmp = Path(tempfile.mkdtemp(prefix="lrface-q-"))
    try:
        pre = prepare(src, tmp)
        pre_model = onnx.load(str(pre))
        input_name = pre_model.graph.input[0].name
        keep = tuple(k for k in getattr(args, "keep_float", "").split(",") if k)
        excluded = float_nodes(pre_model, keep)
        fmt = getattr(args, "format", "qdq")
        percentile = float(getattr(args, "percentile", 99.999))
        views = calibration_views(crops, args.seed)
        out_dir = Path(args.out_dir)
        out = out_dir / f"{spec.name}-int8.onnx"
        tmp_out = tmp / out.name
        t0 = time.perf_counter()
        ranges = chunked_calibration.chunked_ranges(
            pre, calibration_inputs(views, spec, chunk), input_name, method, percentile
        )
        cache = tmp / "ranges.json"
        chunked_calibration.save_ranges(ranges, cache)
        quantize_static(
            str(pre),
            str(tmp_out),
            None,  # the ranges come from the cache: calibration ran above, chunk by chunk
            quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=chunked_calibration.ort_method(method),
            nodes_to_exclude=excluded,
            extra_options={"CalibTensorRangeSymmetric": False, "CalibPercentile": percentile},
            calibration_cache_path=str(cache),
        )
        seconds = time.perf_counter() - t0
        shutil.move(tmp_out, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    card = int8_card(spec, src, out, sha256_file(out), sha256_file(src))
    calib = method + (f" {percentile}" if method == "percentile" else "")
    card["quantization"].update(
        {
            "method": f"onnxruntime.quantization.quantize_static, calibration {calib}, "
            f"ranges collected {chunk} faces at a time (benchmarks/chunked_calibration.py)",
            "format": fmt.upper().replace("QOPERATOR", "QOperator"),
            "float_nodes": excluded,
            "seconds": round(seconds, 1),
            "onnxruntime": onnxruntime.__version__,
            "calibration": {
                "data": "LFW train split (identities disjoint from pairs folds 6-10), no "
                "identity of the validation pairs (folds 1-5); aligned crops of the "
                "shared cache (SCRFD-2.5g)",
                "skipped": CALIB_SKIP,
                "images": len(used),
                "seed": args.seed,
                "chunk_faces": chunk,
                "views": "one per face: HR or area-down to 8/12/16/24 px (seeded), + mirror",
                "first_images": used[:5],
                "images_sha256": _list_sha256(used),
            },
        }
    )
    card_path = out.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card


def int8_card(spec, src: Path, out: Path, sha: str, src_sha: str) -> dict:
    """The card of the int8 copy: the fp32 card's recogniser fields, its own file and
    sha256, ``precision`` and what it was quantized from."""
    base = dict(spec.card or {})
    keep = (
        "kind", "runtime", "arch", "arch_kwargs", "input_size", "embedding_size",
        "preprocessing", "threshold", "threshold_vs_teacher", "teacher", "license", "url",
    )  # fmt: skip
    card = {k: base[k] for k in keep if k in base}
    card.update(
        {
            "name": f"{spec.name}-int8",
            "kind": base.get("kind", spec.kind),
            "runtime": "onnx",
            "weights_file": out.name,
            "sha256": sha,
            "precision": "int8",
            "description": f"{spec.name}, statically quantized to int8 (QDQ) for CPUs",
            "threshold_note": f"the fp32 {spec.name}'s threshold (not recalibrated)",
            "quantization": {
                "from": spec.name,
                "from_file": src.name,
                "from_sha256": src_sha,
                "format": "QDQ",
                "weights": "int8, per channel, symmetric",
                "activations": "uint8, per tensor, asymmetric",
            },
        }
    )
    return card


def _list_sha256(items: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(items).encode()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", required=True, help="comma-separated ONNX recognisers")
    ap.add_argument("--images", type=int, default=256, help="calibration faces (default 256)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", default="minmax", choices=("minmax", "percentile", "entropy"))
    ap.add_argument("--percentile", type=float, default=99.999, help="for --method percentile")
    ap.add_argument(
        "--keep-float", default="", help=f"convolutions left float32: {','.join(KEEP_FLOAT)}"
    )
    ap.add_argument("--format", default="qdq", choices=("qdq", "qoperator"))
    ap.add_argument(
        "--chunk-faces", type=int, default=CHUNK_FACES,
        help=f"calibration faces in memory at once (default {CHUNK_FACES})",
    )  # fmt: skip
    ap.add_argument("--lfw", default=str(REPO.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--out-dir", default=str(REPO / "weights"))
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    crops, used = calibration_crops(args.lfw, args.images, args.seed, CALIB_SKIP)
    for name in args.model.split(","):
        card = quantize(name, crops, used, args)
        print(json.dumps({"model": card["name"], "sha256": card["sha256"]}), flush=True)


if __name__ == "__main__":
    main()
