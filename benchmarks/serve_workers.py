"""Which `lrface serve` layout serves /verify fastest here: workers x intra-op threads.

    python benchmarks/serve_workers.py [--configs 1x0,1x1,2x1,2x2] [--rounds 2]
                                       [--requests 48] [--concurrency 16] [--warmup 16]

Each config ``WxT`` is ``lrface serve --workers W`` with ``$LRFACE_THREADS=T`` (onnxruntime
intra-op threads per worker; ``T=0``: unset, onnxruntime's default of one per physical
core).  Per round, every config in turn: start a real server (127.0.0.1, API key on), send
``--warmup`` requests, then ``--requests`` /verify requests (the pair of
``serve_load.py``) from ``--concurrency`` clients, and stop it.  The configs alternate
within each round, so a change in the machine's load hits every config alike; the
median of the rounds' requests/s is reported per config, with errors (non-200, exceptions,
answers differing from in-process ``lrface.verify``) and the load average.  Chooses
nothing by itself: the decision rule is the reader's (written in RESULTS.md before the
run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_load import in_process, load, loadavg


def run_config(workers: int, threads: int, args: argparse.Namespace, want: dict) -> dict:
    """One server of ``workers`` x ``threads``: requests/s and errors of one load."""
    from lrface.serve.process import ServerProcess

    key = secrets.token_urlsafe(32)
    tmp = Path(tempfile.mkdtemp(prefix="serve-workers-"))
    env = {"LRFACE_API_KEY": key}
    if threads:
        env["LRFACE_THREADS"] = str(threads)
    serve_args = ["--workers", str(workers), "--timeout", "300"]
    server = ServerProcess(serve_args, tmp / "server.log", env=env).start(timeout=600)
    try:
        warm = asyncio.run(load(server.url, key, args.warmup, args.concurrency, want))
        run = asyncio.run(load(server.url, key, args.requests, args.concurrency, want))
    finally:
        server.stop()
    lat = sorted(run["latencies"])
    return {
        "requests_per_s": round(args.requests / run["wall_s"], 3),
        "p50_ms": round(1000 * statistics.median(lat), 1),
        "errors": sum(warm["errors"].values()) + sum(run["errors"].values()),
        "loadavg": loadavg(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--configs", default="1x0,1x1,2x1,2x2", help="WORKERSxTHREADS, ...")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=16)
    args = ap.parse_args()
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]

    want, _ = in_process(0)
    runs: dict[str, list[dict]] = {f"{w}x{t}": [] for w, t in configs}
    for r in range(args.rounds):
        for w, t in configs:
            res = run_config(w, t, args, want)
            runs[f"{w}x{t}"].append(res)
            print(f"round {r + 1}: {w}x{t}: {json.dumps(res)}", file=sys.stderr, flush=True)
    summary = {
        name: {
            "median_requests_per_s": round(statistics.median(x["requests_per_s"] for x in rs), 3),
            "requests_per_s": [x["requests_per_s"] for x in rs],
            "p50_ms": [x["p50_ms"] for x in rs],
            "errors": sum(x["errors"] for x in rs),
            "loadavg": [x["loadavg"] for x in rs],
        }
        for name, rs in runs.items()
    }
    print(json.dumps({"args": vars(args), "configs": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
