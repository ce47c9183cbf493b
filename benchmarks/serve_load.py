"""Load test of `lrface serve`: a real server, N concurrent HTTP clients, POST /verify.

    python benchmarks/serve_load.py [--requests 10000] [--concurrency 16] [--workers W]
                                    [--threads T] [--warmup 200] [--inprocess 100]
                                    [--inprocess-concurrent 160] [--server-timeout 120]
                                    [--json FILE]

One run: start `lrface serve` (a real uvicorn process on 127.0.0.1, API key on;
``--workers``/``--threads``: its ``--workers`` and ``$LRFACE_THREADS``, default: the
server's defaults), send ``--warmup`` requests, read the server's RSS (the server and
its workers, /proc), send ``--requests`` /verify requests from ``--concurrency``
concurrent httpx clients (asyncio, one connection each), read the RSS again, stop the
server; then, the server stopped, the two in-process baselines on the same pair:
``lrface.verify`` called one at a time (``--inprocess`` calls) and called by
``--concurrency`` threads at once (``--inprocess-concurrent`` calls in all, default 10 x
``--concurrency``).  The pair is tests/data/George_W_Bush_0001.jpg and _0002.jpg (250x250
JPEGs, one face each; default models: the teacher for both faces).

Reported: requests/s, latency p50/p90/p99/max (ms, per request, client side), errors
(non-200 answers, exceptions, and answers that differ from the in-process verdict or
similarity), RSS after warm-up and at the end (growth in %), both baselines (median or
p50, p99, calls/s; answers of the threaded one checked too), and p50 over each baseline.
The issue's floors: 0 errors, RSS growth <= 10 %, p50 <= 1.5x the in-process verify
time of the same pair.  With C clients every request waits for the others (Little's law:
p50 ~ C / throughput), in the server and in the threaded baseline alike; so
``p50_over_inprocess_concurrent`` compares like with like (the same concurrency: the cost
of HTTP, multipart and JSON, and of the server's scheduling), while
``p50_over_inprocess_single`` compares a queued request with an unqueued call, which
only as many cores as clients could meet.  The server runs with ``--timeout``
``--server-timeout`` (default 120 s, not the server's 30 s): this measures throughput and
latency, and 16 queued clients on a slow, busy machine can wait longer than 30 s (they
would get 503 answers, counted as errors).  Exit status 1 when there were errors.
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
import threading
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
    """``(verdict, seconds per call)`` of ``lrface.verify`` on the pair, one call at a
    time, after 3 warm-ups."""
    import lrface

    for _ in range(3):
        res = lrface.verify(*PAIR)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        res = lrface.verify(*PAIR)
        times.append(time.perf_counter() - t0)
    return {"same": res.same, "similarity": res.similarity}, times


def in_process_concurrent(calls: int, threads: int, want: dict) -> dict:
    """``lrface.verify`` on the pair called by ``threads`` concurrent threads of this
    process, ``calls`` calls in all (the server's concurrency without HTTP): seconds per
    call, wall time and answers that differ from ``want``."""
    import lrface

    left = calls
    lock = threading.Lock()
    times: list[float] = []
    wrong = 0

    def worker() -> None:
        nonlocal left, wrong
        while True:
            with lock:
                if left <= 0:
                    return
                left -= 1
            t0 = time.perf_counter()
            res = lrface.verify(*PAIR)
            dt = time.perf_counter() - t0
            with lock:
                times.append(dt)
                wrong += (res.same, res.similarity) != (want["same"], want["similarity"])

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return {"wall_s": time.perf_counter() - t0, "times": times, "wrong": wrong}


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
    ap.add_argument("--workers", type=int, default=None,
                    help="lrface serve --workers (default: the server's default)")  # fmt: skip
    ap.add_argument("--threads", type=int, default=None,
                    help="$LRFACE_THREADS of the server (intra-op threads per worker; "
                         "default: the server's default)")  # fmt: skip
    ap.add_argument("--warmup", type=int, default=200, help="requests before the first RSS")
    ap.add_argument("--inprocess", type=int, default=100,
                    help="in-process verify calls, one at a time")  # fmt: skip
    ap.add_argument("--inprocess-concurrent", type=int, default=None,
                    help="in-process verify calls from --concurrency threads "
                         "(default 10 x --concurrency)")  # fmt: skip
    ap.add_argument("--server-timeout", type=float, default=120.0, help="lrface serve --timeout")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    n_concurrent = args.inprocess_concurrent or 10 * args.concurrency

    from lrface.serve.process import ServerProcess

    # the verdict every answer must match, from the library in this process
    want, _ = in_process(0)
    key = secrets.token_urlsafe(32)
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    load_before = loadavg()
    serve_args = ["--timeout", str(args.server_timeout)]
    if args.workers is not None:
        serve_args += ["--workers", str(args.workers)]
    env = {"LRFACE_API_KEY": key}
    if args.threads is not None:
        env["LRFACE_THREADS"] = str(args.threads)
    server = ServerProcess(serve_args, tmp / "server.log", env=env).start()
    print(f"server up at {server.url} (log {tmp / 'server.log'}): {' '.join(serve_args)}",
          file=sys.stderr)  # fmt: skip
    try:
        warm = asyncio.run(load(server.url, key, args.warmup, args.concurrency, want))
        rss_warm = server.rss_bytes()
        run = asyncio.run(load(server.url, key, args.requests, args.concurrency, want))
        rss_end = server.rss_bytes()
        workers = server.log.read_text(errors="replace").count("ready, models loaded")
    finally:
        server.stop()
    load_after = loadavg()
    # the baselines, the server stopped: one call at a time, then --concurrency threads
    _, times = in_process(args.inprocess)
    conc = in_process_concurrent(n_concurrent, args.concurrency, want)

    lat = [x * 1000 for x in run["latencies"]]
    p50 = percentile(lat, 50)
    single_ms = statistics.median(times) * 1000
    conc_ms = [t * 1000 for t in conc["times"]]
    conc_p50 = percentile(conc_ms, 50)
    n_err = sum(run["errors"].values()) + sum(warm["errors"].values())
    figures = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "workers": workers,
        "threads_per_worker": args.threads,
        "server_timeout_s": args.server_timeout,
        "requests_per_s": round(args.requests / run["wall_s"], 2),
        "wall_s": round(run["wall_s"], 1),
        "latency_ms": {
            "p50": round(p50, 1),
            "p90": round(percentile(lat, 90), 1),
            "p99": round(percentile(lat, 99), 1),
            "max": round(max(lat), 1),
        },
        "errors": n_err,
        "error_kinds": {**warm["errors"], **run["errors"]},
        "rss_mb_after_warmup": round(rss_warm / 2**20, 1),
        "rss_mb_end": round(rss_end / 2**20, 1),
        "rss_growth_pct": round(100 * (rss_end - rss_warm) / rss_warm, 2),
        "inprocess_single": {
            "calls": args.inprocess,
            "median_ms": round(single_ms, 1),
            "p99_ms": round(percentile([t * 1000 for t in times], 99), 1),
            "calls_per_s": round(len(times) / sum(times), 2),
        },
        "inprocess_concurrent": {
            "threads": args.concurrency,
            "calls": n_concurrent,
            "p50_ms": round(conc_p50, 1),
            "p99_ms": round(percentile(conc_ms, 99), 1),
            "calls_per_s": round(n_concurrent / conc["wall_s"], 2),
            "wrong_answers": conc["wrong"],
        },
        # the floor: p50 <= 1.5x the in-process verify time of the same pair
        "p50_over_inprocess_concurrent": round(p50 / conc_p50, 2),
        "p50_over_inprocess_single": round(p50 / single_ms, 2),
        "verdict": want,
        "cpus": os.cpu_count(),
        "loadavg_before_after": [load_before, load_after],
        "python": platform.python_version(),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if n_err == 0 and conc["wrong"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
