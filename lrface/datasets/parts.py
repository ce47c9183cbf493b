"""Caches that take minutes, built in parts that survive a kill.

A cache file ``FN`` (aligned crops of a dataset, teacher targets) whose rows take minutes
to compute is built part by part: rows ``[start, start + part_size)`` are written, each
as soon as it is complete, atomically, to ``FN.parts/<start>-<stop>.npz``.  A build that
is killed keeps its finished parts; the next build of the same ``FN`` (same key: same
files, same model) loads them and computes only the rest.  When every row is there the
parts are joined, ``FN`` is written (atomically) and the parts are removed.

A part that cannot be read (cut short outside the atomic write, or damaged) or whose
rows do not match its name is computed again, never trusted.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from lrface.io.fileio import save_npz_atomic

log = logging.getLogger("lrface")

#: Rows per part of a crop cache (~10 MB of 112x112 crops; ~12 s of detection on 2 cores).
CROP_PART_ROWS = 256


def parts_dir(fn: Path) -> Path:
    """The folder of ``fn``'s finished parts: ``<fn>.parts``."""
    return fn.with_name(fn.name + ".parts")


def part_ranges(n: int, part_rows: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering rows ``0..n-1`` in parts of ``part_rows``."""
    return [(s, min(n, s + part_rows)) for s in range(0, n, part_rows)]


def _part_file(fn: Path, start: int, stop: int) -> Path:
    return parts_dir(fn) / f"{start:08d}-{stop:08d}.npz"


def load_parts(
    fn: Path, n: int, part_rows: int, keys: Sequence[str]
) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    """The finished parts of ``fn`` that fit this build (``n`` rows in parts of
    ``part_rows``), each ``{key: array with stop - start rows}`` for every name of
    ``keys``; unreadable or mismatched parts are left out (and computed again)."""
    found: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    d = parts_dir(fn)
    if not d.is_dir():
        return found
    for start, stop in part_ranges(n, part_rows):
        f = _part_file(fn, start, stop)
        if not f.is_file():
            continue
        try:
            with np.load(f, allow_pickle=False) as z:
                arrays = {k: z[k] for k in keys}
        except Exception as exc:  # any damage: compute the part again
            log.warning("%s: unreadable cache part (%s), computed again", f, exc)
            continue
        if all(len(a) == stop - start for a in arrays.values()):
            found[(start, stop)] = arrays
    return found


def build_in_parts(
    fn: Path,
    n: int,
    part_rows: int,
    keys: Sequence[str],
    compute: Callable[[list[int]], Iterator[tuple[np.ndarray, ...]]],
    what: str = "rows",
) -> dict[str, np.ndarray]:
    """All ``n`` rows of ``fn``'s arrays ``keys``, from its finished parts plus
    ``compute(rows)``, which must yield, for each of the given row indices in order, one
    tuple of values (one per key).  Every part is written as soon as it is complete.
    Returns ``{key: (n, ...) array}``; the caller writes ``fn`` and then calls
    :func:`remove_parts`.  ``what`` names the rows in the log."""
    done = load_parts(fn, n, part_rows, keys)
    todo = [r for r in part_ranges(n, part_rows) if r not in done]
    if done:
        log.warning(
            "%s: resuming an interrupted cache build, %d of %d %s already done",
            fn.name,
            sum(b - a for a, b in done),
            n,
            what,
        )
    rows = [i for a, b in todo for i in range(a, b)]
    if rows:
        parts_dir(fn).mkdir(parents=True, exist_ok=True)
    results = compute(rows)
    for a, b in todo:
        cols: list[list[np.ndarray]] = [[] for _ in keys]
        for _ in range(a, b):
            for col, value in zip(cols, next(results)):
                col.append(np.asarray(value))
        arrays = {k: np.stack(c) for k, c in zip(keys, cols)}
        save_npz_atomic(_part_file(fn, a, b), **arrays)
        done[(a, b)] = arrays
    close = getattr(results, "close", None)
    if close is not None:
        close()
    order = part_ranges(n, part_rows)
    if not order:
        return {}
    return {k: np.concatenate([done[r][k] for r in order]) for k in keys}


def remove_parts(fn: Path) -> None:
    """Remove ``fn``'s parts (once ``fn`` itself is written)."""
    shutil.rmtree(parts_dir(fn), ignore_errors=True)
