"""The one worker pool (lrface.io.workers): order, in-process == worker processes, failures.

Worker processes are forced on small inputs by lowering ``POOL_MIN_ITEMS`` (read in the
calling process only).  The helpers below are module-level so that spawned workers can
import them.
"""

from __future__ import annotations

import functools
import multiprocessing
import os

import numpy as np
import pytest
from conftest import PHOTOS, needs_shared

from lrface.errors import LrfaceError
from lrface.io import workers
from lrface.io.workers import WorkerPool, map_items

_STATE: list[str] = []


def _tag(x: int) -> tuple[int, int, int]:
    return x, x * x, os.getpid()


def _fail_on_7(x: int) -> int:
    if x == 7:
        raise ValueError(f"item {x} is bad")
    return x


def _remember(word: str) -> None:
    _STATE.append(word)


def _state_and_threads(x: int) -> tuple[int, tuple[str, ...], str | None]:
    return x, tuple(_STATE), os.environ.get("LRFACE_THREADS")


@pytest.fixture
def force_pool(monkeypatch):
    monkeypatch.setattr(workers, "POOL_MIN_ITEMS", 0)


def _no_children_left() -> bool:
    return not multiprocessing.active_children()


def test_map_items_keeps_order_in_and_out_of_process(force_pool):
    items = list(range(150))
    here = list(map_items(_tag, items, workers=0))
    there = list(map_items(_tag, items, workers=2))
    assert [r[:2] for r in here] == [r[:2] for r in there] == [(x, x * x) for x in items]
    assert {r[2] for r in here} == {os.getpid()}
    pids = {r[2] for r in there}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert _no_children_left()


def test_few_items_stay_in_process():
    n = workers.POOL_MIN_ITEMS - 1
    assert {r[2] for r in map_items(_tag, range(n), workers=2)} == {os.getpid()}


def test_pool_map_groups_in_order():
    groups = [[1, 2, 3], [], [4], list(range(5, 40)), [40, 41]]
    expect = [[_tag(x)[:2] for x in g] for g in groups]
    for n in (0, 2):
        with WorkerPool(n) as pool:
            got = [[r[:2] for r in res] for res in pool.map(_tag, groups, prefetch=1)]
            handle = pool.submit(_tag, range(10))
            assert [r[0] for r in pool.result(handle)] == list(range(10))
        assert got == expect
    assert _no_children_left()


def test_an_item_failure_is_raised_unchanged(force_pool):
    for n in (0, 2):
        with pytest.raises(ValueError, match="item 7 is bad"):
            list(map_items(_fail_on_7, range(100), workers=n))
        assert _no_children_left()  # the workers are stopped
    # items before the failing one were delivered in order (in process: one at a time)
    got = []
    with pytest.raises(ValueError):
        for x in map_items(_fail_on_7, range(20), workers=0):
            got.append(x)
    assert got == list(range(7))


def test_initializer_runs_in_each_worker_and_threads_are_one(force_pool, monkeypatch):
    monkeypatch.delenv("LRFACE_THREADS", raising=False)
    out = list(map_items(_state_and_threads, range(20), 2, initializer=_remember, initargs=("w",)))
    assert [r[0] for r in out] == list(range(20))
    assert {r[1] for r in out} == {("w",)} and {r[2] for r in out} == {"1"}
    assert not _STATE  # the workers' initializer did not run here
    try:
        out = list(
            map_items(_state_and_threads, range(3), 0, initializer=_remember, initargs=("h",))
        )
        assert {r[1] for r in out} == {("h",)}  # in process: once, here
        assert {r[2] for r in out} == {None}  # this process's threads are left alone
    finally:
        _STATE.clear()


def test_bad_worker_counts_are_refused():
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(LrfaceError, match="workers must be an integer"):
            WorkerPool(bad)  # type: ignore[arg-type]
        with pytest.raises(LrfaceError, match="workers must be an integer"):
            list(map_items(_tag, [1], bad))  # type: ignore[arg-type]


@needs_shared
def test_dataset_crops_equal_in_and_out_of_process(force_pool, monkeypatch, tmp_path):
    """aligned_crops (both detection orders) and the LFW box crops: bit-identical with
    two worker processes and in this process (the cached files depend on it)."""
    from lrface.datasets import boxes as box_module
    from lrface.datasets.facecache import aligned_crops

    rels = sorted(p.name for p in PHOTOS.glob("*.jpg"))  # t1.jpg: six faces
    runs = []
    for n in (2, 0):
        monkeypatch.setenv("LRFACE_CACHE", str(tmp_path / f"cache{n}"))
        got = [aligned_crops(PHOTOS, rels, "scrfd-2.5g", n, False, pad) for pad in (False, True)]
        box = functools.partial(box_module._box_photo, detector="scrfd-2.5g")
        boxes = list(map_items(box, [str(PHOTOS / r) for r in rels], n))
        runs.append((got, boxes))
    (a2, b2), (a0, b0) = runs
    for x, y in zip(a2, a0):
        assert set(x) == set(y)
        for k in x:
            assert np.array_equal(x[k], y[k]), k
    assert not a0[0]["fallback"].any()
    for x, y in zip(b2, b0):
        assert all(np.array_equal(u, v) for u, v in zip(x, y))
    assert _no_children_left()
