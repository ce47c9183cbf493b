"""Activation ranges for onnxruntime static quantization, collected chunk by chunk.

    python benchmarks/chunked_calibration.py [--model lrface-mbf] [--images 256]
                                             [--chunk-faces 16]   # the MinMax check

onnxruntime's own calibration (``quantize_static(..., calibration_data_reader)``) runs
every calibration batch through the model augmented to output every activation and, for
the histogram methods (Percentile, Entropy), keeps every intermediate output of every
batch before building any histogram: about 14 MB per 112x112 image for lrface-mbf, so
512 calibration images peaked at 7.3 GB and were OOM-killed.

Here the calibration inputs are fed in chunks: onnxruntime's calibrator (the same class,
options and augmented model ``quantize_static`` would make) collects one chunk, reduces
it (MinMax: the chunk's per-tensor min/max, merged by min of mins / max of maxes;
Percentile/Entropy: the chunk's values added to per-tensor histograms, widened and merged
by onnxruntime's ``HistogramCollector.merge_histogram``) and drops it before the next, so
peak memory is one chunk's activations.  The ranges (an onnxruntime ``TensorsData``) go
to ``quantize_static`` through its calibration cache (``calibration_cache_path``), which
skips its own calibration.

MinMax ranges are identical to onnxruntime's one-pass calibration over the same inputs
(min and max are exact under any grouping; ``tests/test_precision.py`` checks it).
Histogram ranges are those of the merged histograms: the first chunk sets a tensor's bin
width and later chunks widen the range in whole bins, as onnxruntime itself merges
histograms across ``collect_data`` calls.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

#: Calibration inputs per onnxruntime ``session.run`` (rows of one batch).
RUN_BATCH = 32


class ArrayReader:
    """onnxruntime CalibrationDataReader over one float32 (N, C, H, W) array, in batches
    of :data:`RUN_BATCH` rows fed to input ``input_name``."""

    def __init__(self, x: np.ndarray, input_name: str) -> None:
        self.batches = [x[i : i + RUN_BATCH] for i in range(0, len(x), RUN_BATCH)]
        self.input_name = input_name
        self._it: Iterator[np.ndarray] = iter(self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:
        self._it = iter(self.batches)


def calibrator_options(method: str, percentile: float, symmetric: bool) -> dict:
    """The ``extra_options`` ``quantize_static`` hands ``create_calibrator`` for
    ``extra_options={"CalibTensorRangeSymmetric": symmetric, "CalibPercentile": p}``."""
    opts: dict = {"symmetric": symmetric}
    if method == "percentile":
        opts["percentile"] = percentile
    return opts


def ort_method(method: str):
    """onnxruntime's CalibrationMethod for ``minmax`` / ``percentile`` / ``entropy``."""
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[method]


def op_types_to_quantize() -> list[str]:
    """The op types ``quantize_static`` calibrates and quantizes when given none."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return list(set(list(QLinearOpsRegistry.keys()) + list(QDQRegistry.keys())))


def chunked_ranges(
    model_path: str | Path,
    chunks: Iterable[np.ndarray],
    input_name: str,
    method: str,
    percentile: float = 99.999,
    symmetric: bool = False,
):
    """onnxruntime ``TensorsData`` (per-tensor ranges) of ``model_path`` (a pre-processed
    float ONNX file) calibrated on ``chunks``: float32 (N, C, H, W) model inputs, one chunk
    in memory at a time (each consumed and dropped before the next is drawn)."""
    from onnxruntime.quantization.calibrate import create_calibrator

    with tempfile.TemporaryDirectory(prefix="lrface-calib-") as tmp:
        calibrator = create_calibrator(
            Path(model_path),
            op_types_to_quantize(),
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=ort_method(method),
            extra_options=calibrator_options(method, percentile, symmetric),
        )
        n = 0
        for x in chunks:
            calibrator.collect_data(ArrayReader(x, input_name))
            n += len(x)
        if n == 0:
            raise ValueError("chunked_ranges: no calibration inputs")
        ranges = calibrator.compute_data()
        del calibrator
    return ranges


def save_ranges(ranges, path: str | Path) -> None:
    """Write ``ranges`` as an onnxruntime calibration cache (``calibration_cache_path``)."""
    from onnxruntime.quantization.calibrate import save_tensors_data

    save_tensors_data(ranges, path)


def range_pairs(ranges) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{tensor: (lowest, highest)}`` of a ``TensorsData``, as float32 arrays."""
    out = {}
    for name, td in ranges.items():
        lo, hi = td.range_value
        out[name] = (np.asarray(lo, np.float32), np.asarray(hi, np.float32))
    return out


def main() -> None:
    """Print how the chunked MinMax ranges of a model compare with onnxruntime's own
    one-pass MinMax on the same calibration faces (quantize.py's, from CALIB_SKIP on)."""
    import argparse
    import json
    import resource
    import sys

    import onnx
    from onnxruntime.quantization import CalibrationMethod, quantize_static
    from onnxruntime.quantization.calibrate import load_tensors_data

    from lrface.models.registry import get_spec, locate

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import quantize

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--model", default="lrface-mbf")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--chunk-faces", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lfw", default=str(quantize.REPO.parent / "shared" / "data" / "lfw"))
    args = ap.parse_args()
    spec = get_spec(args.model)
    crops, _ = quantize.calibration_crops(args.lfw, args.images, args.seed, quantize.CALIB_SKIP)
    views = quantize.calibration_views(crops, args.seed)
    with tempfile.TemporaryDirectory(prefix="lrface-calib-check-") as tmp:
        pre = quantize.prepare(locate(spec), Path(tmp))
        name = onnx.load(str(pre)).graph.input[0].name
        x = np.concatenate(list(quantize.calibration_inputs(views, spec, len(views))))
        cache = Path(tmp) / "one-pass.json"
        quantize_static(
            str(pre), str(Path(tmp) / "q.onnx"), ArrayReader(x, name),
            calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(cache),
            extra_options={"CalibTensorRangeSymmetric": False},
        )  # fmt: skip
        del x
        one = range_pairs(load_tensors_data(cache))
        chunks = quantize.calibration_inputs(views, spec, args.chunk_faces)
        chunked = range_pairs(chunked_ranges(pre, chunks, name, "minmax"))
    diff = [
        t for t in one
        if t not in chunked or not (
            np.array_equal(one[t][0], chunked[t][0]) and np.array_equal(one[t][1], chunked[t][1])
        )
    ]  # fmt: skip
    row = {
        "model": args.model,
        "faces": len(crops),
        "inputs": 2 * len(crops),
        "chunk_faces": args.chunk_faces,
        "tensors": len(one),
        "tensors_chunked": len(chunked),
        "tensors_differing": len(diff),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
