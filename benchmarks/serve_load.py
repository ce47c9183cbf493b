"""Load test of `lrface serve`: a real server, N concurrent HTTP clients, POST /verify.

    python benchmarks/serve_load.py [--requests 10000] [--concurrency 16] [--workers 1]
                                    [--warmup 200] [--inprocess 100] [--server-timeout 120]
                                    [--json FILE]

One run: start `lrface serve` (a real uvicorn process on 127.0.0.1, API key on), send
``--warmup`` requests, read the server's RSS (the server and its workers, /proc), send
``--requests`` /verify requests from ``--concurrency`` concurrent httpx clients (asyncio,
one connection each), read the RSS again, stop the server; then time in-process
``lrface.verify`` on the same pair (``--inprocess`` calls, one at a time, the server
stopped).  The pair is tests/data/George_W_Bush_0001.jpg and _0002.jpg (250x250 JPEGs, one
face each; default models: the teacher for both faces).

Reported: requests/s, latency p50/p90/p99/max (ms, per request, client side), errors
(non-200 answers, exceptions, and answers that differ from the in-process verdict or
similarity), RSS after warm-up and at the end (growth in %), in-process verify median
and p99, and p50 / in-process median.  The issue's floors: 0 errors, RSS growth <= 10 %,
p50 <= 1.5x in-process.  Queueing: with C clients and W workers each request waits for
about C / W others, so p50 is near (C / W) x the service time unless there are enough
cores for the workers; the CPU count and load are printed with the figures.  The server
runs with ``--timeout`` ``--server-timeout`` (default 120 s, not the server's 30 s): this
measures throughput and latency, and 16 queued clients on one slow worker wait longer
than 30 s (they would get 503 answers, counted as errors).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAIR = (REPO / "tests/data/George_W_Bush_0001.jpg", REPO / "tests/data/George_W_Bush_0002.jpg")


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` (nearest rank)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


async def load(url: str, key: str, n: int, concurrency: int, want: dict) -> dict:
    """Send ``n`` /verify requests from ``concurrency`` clients; latencies and errors."""
    import httpx

    fields = ("image1", "image2")
    files = [(f, (p.name, p.read_bytes(), "image/jpeg")) for f, p in zip(fields, PAIR)]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    left = n

    def error(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1

    async def client() -> None:
        nonlocal left
        async with httpx.AsyncClient(
            base_url=url, headers={"X-API-Key": key}, timeout=300,
            limits=httpx.Limits(max_connections=1),
        ) as c:  # fmt: skip
            while left > 0:
                left -= 1
                t0 = time.perf_counter()
                try:
                    r = await c.post("/verify", files=files)
                except httpx.HTTPError as exc:
                    error(type(exc).__name__)
                    continue
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    error(f"HTTP {r.status_code}")
                    continue
                got = r.json()
                if (got["same"], got["similarity"]) != (want["same"], want["similarity"]):
                    error("answer differs from in-process verify")

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "latencies": latencies, "errors": errors}


def in_process(calls: int) -> tuple[dict, list[float]]:
    """``(verdict, seconds per call)`` of ``lrface.verify`` on the pair, after 3 warm-ups."""
    import lrface

    for _ in range(3):
        res = lrface.verify(*PAIR)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        res = lrface.verify(*PAIR)
        times.append(time.perf_counter() - t0)
    return {"same": res.same, "similarity": res.similarity}, times


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1, help="lrface serve --workers")
    ap.add_argument("--warmup", type=int, default=200, help="requests before the first RSS")
    ap.add_argument("--inprocess", type=int, default=100, help="in-process verify calls")
    ap.add_argument("--server-timeout", type=float, default=120.0, help="lrface serve --timeout")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()

    from lrface.serve.process import ServerProcess

    # the verdict every answer must match, from the library in this process
    want, _ = in_process(0)
    key = secrets.token_urlsafe(32)
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    load_before = loadavg()
    serve_args = ["--workers", str(args.workers), "--timeout", str(args.server_timeout)]
    server = ServerProcess(serve_args, tmp / "server.log",
                           env={"LRFACE_API_KEY": key}).start()  # fmt: skip
    print(f"server up at {server.url} (log {tmp / 'server.log'}), {args.workers} worker(s)",
          file=sys.stderr)  # fmt: skip
    try:
        warm = asyncio.run(load(server.url, key, args.warmup, args.concurrency, want))
        rss_warm = server.rss_bytes()
        run = asyncio.run(load(server.url, key, args.requests, args.concurrency, want))
        rss_end = server.rss_bytes()
    finally:
        server.stop()
    load_after = loadavg()
    _, times = in_process(args.inprocess)

    lat = [x * 1000 for x in run["latencies"]]
    inproc_ms = statistics.median(times) * 1000
    n_err = sum(run["errors"].values()) + sum(warm["errors"].values())
    figures = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "server_timeout_s": args.server_timeout,
        "requests_per_s": round(args.requests / run["wall_s"], 2),
        "wall_s": round(run["wall_s"], 1),
        "latency_ms": {
            "p50": round(percentile(lat, 50), 1),
            "p90": round(percentile(lat, 90), 1),
            "p99": round(percentile(lat, 99), 1),
            "max": round(max(lat), 1),
        },
        "errors": n_err,
        "error_kinds": {**warm["errors"], **run["errors"]},
        "rss_mb_after_warmup": round(rss_warm / 2**20, 1),
        "rss_mb_end": round(rss_end / 2**20, 1),
        "rss_growth_pct": round(100 * (rss_end - rss_warm) / rss_warm, 2),
        "inprocess_verify_ms": {
            "median": round(inproc_ms, 1),
            "p99": round(percentile([t * 1000 for t in times], 99), 1),
            "calls": args.inprocess,
        },
        "p50_over_inprocess": round(percentile(lat, 50) / inproc_ms, 2),
        "verdict": want,
        "cpus": os.cpu_count(),
        "loadavg_before_after": [load_before, load_after],
        "python": platform.python_version(),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if n_err == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
