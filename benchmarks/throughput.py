"""CPU throughput (aligned crops per second) of the teacher and the students, one run.

    python benchmarks/throughput.py [--models mobilefacenet-arcface,lrface-mbf,lrface-tiny-16]
                                    [--batch-sizes 1,256] [--onnx] [--seconds 10]

Every model embeds the same real LFW crops (reduced to its input size) without flip
fusion; each (model, batch) is timed for about ``--seconds`` after one warm-up batch.
``--onnx`` also exports each torch student to ONNX (in a temp dir) and times it in
onnxruntime.  Ratios are to the teacher at the same batch size, measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np


def crops_per_second(emb, crops: list[np.ndarray], batch: int, seconds: float) -> float:
    emb.flip = False
    x = [crops[i % len(crops)] for i in range(batch)]
    emb.embed_crops(x)  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        emb.embed_crops(x)
        n += batch
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default="mobilefacenet-arcface,lrface-mbf,lrface-tiny-16")
    ap.add_argument("--batch-sizes", default="1,256")
    ap.add_argument("--onnx", action="store_true", help="also time ONNX exports of torch students")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", default=None, help="write the rows here")
    args = ap.parse_args()

    from lrface.datasets.lfw import LFW
    from lrface.faces.pipeline import prepare_face
    from lrface.models.export import export_onnx
    from lrface.models.loader import load_embedder

    lfw = LFW(os.path.join(os.environ.get("LRFACE_HOME", "../shared"), "data", "lfw"))
    crops = [prepare_face(lfw.path(p)).crop for p in lfw.all_images[:64]]
    batches = [int(b) for b in args.batch_sizes.split(",")]
    rows = []
    tmp = tempfile.mkdtemp()
    for name in args.models.split(","):
        variants = [(name, load_embedder(name, flip=False))]
        if args.onnx and variants[0][1].spec.runtime == "torch":
            out = os.path.join(tmp, f"{name}.onnx")
            export_onnx(name, out)
            variants.append(
                (f"{name} (onnx)", load_embedder(out.replace(".onnx", ".json"), flip=False))
            )
        for label, emb in variants:
            for b in batches:
                emb.batch_size = b
                rate = crops_per_second(emb, crops, b, args.seconds)
                rows.append(
                    {
                        "model": label,
                        "runtime": type(emb).__name__,
                        "input": emb.input_size,
                        "batch": b,
                        "crops_per_s": round(rate, 1),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    teacher = {r["batch"]: r["crops_per_s"] for r in rows if r["model"] == "mobilefacenet-arcface"}
    print(
        f"\nCPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        "crops are aligned 112x112 LFW faces resized to each model's input; no flip fusion.\n"
    )
    print("| model | runtime | input | batch | crops/s | x teacher |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ratio = r["crops_per_s"] / teacher[r["batch"]] if r["batch"] in teacher else float("nan")
        r["ratio_to_teacher"] = round(ratio, 2)
        print(
            f"| {r['model']} | {r['runtime']} | {r['input']} | {r['batch']} "
            f"| {r['crops_per_s']:.0f} | {ratio:.2f} |"
        )
    if args.json:
        from lrface.io.fileio import write_json_atomic

        write_json_atomic(args.json, rows)


if __name__ == "__main__":
    main()
