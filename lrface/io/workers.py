"""Worker processes for batch jobs: the one process pool of lrface.

:class:`WorkerPool` maps a picklable per-item function (a module-level function, or a
:func:`functools.partial` of one) over lists of items, in chunks, and returns the results
in input order; :func:`map_items` is the one-call form for a single list.  Every batched
path uses it: crop preparation (:class:`lrface.faces.pipeline.CropPreparer`, behind the API,
``lrface embed``, galleries, ``identify`` and the evaluation protocols) and the dataset
caches (:func:`lrface.datasets.facecache.aligned_crops`,
:func:`lrface.datasets.boxes.load_box_crops`).

Workers are started with the ``spawn`` method, one OpenCV/onnxruntime thread each
(``LRFACE_THREADS=1`` unless set), and :func:`map_items` starts them only for at least
:data:`POOL_MIN_ITEMS` items -- below that, starting them (imports and model loading,
about a second each) costs more than it saves, so the items are processed in the calling
process.  ``workers=0`` always means "in this process".  Workers die with their parent:
on Linux through ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, everywhere through a watchdog
thread that exits the worker once its parent process is gone, so a killed command leaves
no orphans.  Scripts that use workers need the usual ``if __name__ == "__main__":`` guard.

Stopping: Ctrl-C or SIGTERM goes to the main process only -- workers ignore SIGINT and
SIGTERM (a terminal sends Ctrl-C to the whole process group: no worker tracebacks).  The
main process stops them: :func:`abort_pools` (called by the ``lrface`` CLI's signal
handler) kills the workers of every open pool at once, and a pool left by
``KeyboardInterrupt`` or :class:`~lrface.errors.Terminated` kills its workers instead of
waiting for their chunks; the pool's queues and semaphores are then released normally
(no "leaked semaphore" warning from multiprocessing's resource tracker).

An exception raised by the function on one item is raised again, unchanged, by
:meth:`WorkerPool.result` (and by :func:`map_items` when it reaches that item); functions
that must not stop a batch report failures in their results instead (as
:func:`lrface.faces.pipeline.prepare_crop` does).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from lrface.errors import LrfaceError
from lrface.io.validation import check_resource, is_int

__all__ = [
    "POOL_MIN_ITEMS",
    "PREFETCH",
    "WorkerPool",
    "abort_pools",
    "map_items",
    "progress_bar",
]

#: :func:`map_items` starts worker processes only for at least this many items.
POOL_MIN_ITEMS = 64
#: Groups being processed ahead of the one being consumed (:meth:`WorkerPool.map`).
PREFETCH = 2
#: Largest number of items one worker handles per task.
MAX_CHUNK = 64


def _run_chunk(fn: Callable[[Any], Any], items: list) -> list:
    return [fn(x) for x in items]


def _init_worker(parent_pid: int, initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    """Worker start-up: die with the parent; one thread for onnxruntime and OpenCV; then
    the pool's ``initializer``."""
    _die_with_parent(parent_pid)
    for sig in (signal.SIGINT, signal.SIGTERM):  # the parent stops us (module docstring)
        signal.signal(sig, signal.SIG_IGN)
    os.environ.setdefault("LRFACE_THREADS", "1")
    import cv2

    cv2.setNumThreads(1)
    if initializer is not None:
        initializer(*initargs)


def _die_with_parent(parent_pid: int) -> None:
    """Make this process exit as soon as ``parent_pid`` is gone.

    Linux: ``PR_SET_PDEATHSIG`` = SIGKILL (delivered when the thread that started this
    process exits; the pool's processes are started by the thread that submits work).
    Everywhere: a daemon thread polling ``os.getppid()`` once a second.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - exotic libc
            pass
    if os.getppid() != parent_pid:  # the parent died before we got here
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="lrface-parent-watch", daemon=True
    ).start()


def _watch_parent(parent_pid: int) -> None:  # pragma: no cover - runs in workers
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(1)


class _Inline:
    """A deferred in-process job (``workers=0``): run on :meth:`WorkerPool.result`."""

    def __init__(self, fn: Callable[[Any], Any], items: list) -> None:
        self.fn = fn
        self.items = items


#: Pools with worker processes, for :func:`abort_pools`.
_OPEN_POOLS: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


def abort_pools() -> None:
    """Kill (SIGKILL) the worker processes of every open :class:`WorkerPool` of this
    process now; their pending work fails and the pools close without waiting.  Safe in a
    signal handler of the main thread."""
    for pool in list(_OPEN_POOLS):
        pool.abort()


class WorkerPool:
    """``workers`` worker processes (0: this process) that map functions over items.

    ``initializer(*initargs)`` runs once in each worker as it starts (with ``workers=0``:
    once, here, now), e.g. to load a model before the first item.  Functions, items and
    results travel between processes by pickling.  Use as a context manager, or call
    :meth:`close`.
    """

    def __init__(
        self,
        workers: int = 0,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple = (),
    ) -> None:
        if not is_int(workers) or workers < 0:
            raise LrfaceError(f"workers must be an integer >= 0, got {workers!r}")
        self.workers = int(check_resource("workers", workers))  # the documented cap
        self.pool: ProcessPoolExecutor | None = None
        if self.workers > 0:
            self.pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(os.getpid(), initializer, tuple(initargs)),
            )
            _OPEN_POOLS.add(self)
        elif initializer is not None:
            initializer(*initargs)

    def submit(self, fn: Callable[[Any], Any], items: Sequence) -> list[Future] | _Inline:
        """Start ``fn`` on each of ``items`` (in chunks spread over the workers); pass the
        handle to :meth:`result`.  In process, the work is done by :meth:`result`."""
        items = list(items)
        if self.pool is None:
            return _Inline(fn, items)
        chunk = max(1, min(MAX_CHUNK, math.ceil(len(items) / (4 * self.workers))))
        return [
            self.pool.submit(_run_chunk, fn, items[j : j + chunk])
            for j in range(0, len(items), chunk)
        ]

    def result(self, handle: list[Future] | _Inline) -> list:
        """``fn(item)`` of each submitted item, in order (waits for them)."""
        if isinstance(handle, _Inline):
            return _run_chunk(handle.fn, handle.items)
        return [r for fut in handle for r in fut.result()]

    def map(
        self, fn: Callable[[Any], Any], groups: Iterable[Sequence], prefetch: int = PREFETCH
    ) -> Iterator[list]:
        """Yield the results of each group of items, in order, ``prefetch`` groups ahead."""
        pending: collections.deque = collections.deque()
        for group in groups:
            pending.append(self.submit(fn, group))
            if len(pending) > prefetch:
                yield self.result(pending.popleft())
        while pending:
            yield self.result(pending.popleft())

    def abort(self) -> None:
        """Kill the worker processes now (SIGKILL; they ignore SIGINT/SIGTERM): work in
        flight is lost.  :meth:`close` then returns without waiting for it."""
        if self.pool is not None:
            procs = getattr(self.pool, "_processes", None) or {}
            for proc in list(procs.values()):
                with contextlib.suppress(OSError, ValueError):
                    proc.kill()

    def close(self) -> None:
        """Stop the workers (queued work is cancelled; running chunks finish, unless
        :meth:`abort` killed them)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
            _OPEN_POOLS.discard(self)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None and not issubclass(exc_type, Exception):
            self.abort()  # Ctrl-C, SIGTERM: do not wait for the chunks in flight
        self.close()


def map_items(
    fn: Callable[[Any], Any],
    items: Sequence,
    workers: int = 0,
    *,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple = (),
    progress: bool = False,
    desc: str | None = None,
) -> Iterator:
    """Yield ``fn(item)`` for each of ``items``, in order.

    ``workers`` processes (:class:`WorkerPool`) are started only for at least
    :data:`POOL_MIN_ITEMS` items, else the items are processed here.  ``progress``: a
    tqdm bar (``desc`` its label) on stderr, when tqdm is installed.  The workers are
    stopped when the generator is exhausted or closed.
    """
    items = list(items)
    if not is_int(workers) or workers < 0:
        raise LrfaceError(f"workers must be an integer >= 0, got {workers!r}")
    check_resource("workers", workers)  # the documented cap (lrface.io.validation)
    n_workers = int(workers) if len(items) >= POOL_MIN_ITEMS else 0
    group = max(1, 4 * n_workers * MAX_CHUNK)  # up to 4 chunks per worker and group
    bar = progress_bar(len(items), progress, desc)
    try:
        with WorkerPool(n_workers, initializer, initargs) as pool:
            groups = (items[i : i + group] for i in range(0, len(items), group))
            if n_workers == 0:  # one item at a time: the bar moves per item
                groups = ([x] for x in items)
            for results in pool.map(fn, groups):
                bar.update(len(results))
                yield from results
    finally:
        bar.close()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, enabled: bool, desc: str | None = None) -> Any:
    """A tqdm bar on stderr when ``enabled`` and tqdm is installed, else a no-op."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, leave=False)
