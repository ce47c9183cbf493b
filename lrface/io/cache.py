"""Where lrface keeps derived data (landmarks, aligned crops, cached embeddings): the one
cache helper, :class:`NpzCache`.

A cache entry is one ``.npz`` file ``cache_dir()/<kind>[-<label>]-<key>.npz`` whose
``key`` is :func:`cache_key` of everything its rows depend on (file list, model,
recipe) and of its **version**: version 1 is the key as every cache has always written
it (:func:`digest` of the key parts alone, so caches written before this helper are
still found), a later version adds ``cache-version=N`` to the digest, so bumping it
makes every old entry of that cache a miss.  Files are written atomically.

Rows that take minutes (aligned crops of a dataset, teacher targets, embeddings of
thousands of crops) are built in parts (:meth:`NpzCache.build`): rows
``[start, start + part_rows)`` are written, each as soon as it is complete, atomically,
to ``<file>.parts/<start>-<stop>.npz``.  A build that is killed keeps its finished
parts; the next build of the same entry (same key) loads them and computes only the
rest.  When every row is there the parts are joined, the entry is written and the parts
are removed.  A part that cannot be read (damaged) or whose rows do not match its name
is computed again, never trusted.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lrface.errors import LrfaceError, os_error_message
from lrface.io.fileio import save_npz_atomic

log = logging.getLogger("lrface")

#: cache directories found writable in this process (checked once each)
_WRITABLE: set[Path] = set()

#: Rows per part of a crop cache (~10 MB of 112x112 crops; ~12 s of detection on 2 cores).
CROP_PART_ROWS = 256

#: ``compute(rows)`` of :meth:`NpzCache.build`: for each given row index, in order, one
#: tuple of values (one per array name; arrays or numpy scalars, bools, ints, floats).
ComputeRows = Callable[[list[int]], Iterator[tuple[Any, ...]]]


def cache_dir() -> Path:
    """``$LRFACE_CACHE`` or ``~/.cache/lrface`` (created on demand; it must accept files).

    Raises :class:`LrfaceError` naming the directory and the fix when it cannot be created
    or written (a file in the way, no permission, a read-only file system).
    """
    d = Path(os.environ.get("LRFACE_CACHE", "~/.cache/lrface")).expanduser()
    if d in _WRITABLE:
        return d
    try:
        d.mkdir(parents=True, exist_ok=True)
        if not d.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(d))
        _probe_write(d)
    except OSError as exc:
        raise LrfaceError(
            f"the cache directory {os_error_message(exc, d)}, or set LRFACE_CACHE to a "
            "writable directory"
        ) from None
    _WRITABLE.add(d)
    return d


def digest(*parts: object, n: int = 16) -> str:
    """Short stable hex digest of the string forms of ``parts`` (cache keys)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:n]


def cache_key(*parts: object, version: int = 1) -> str:
    """The key of a cache entry: :func:`digest` of ``parts`` and of ``version`` (an int
    >= 1).  Version 1 is the digest of ``parts`` alone (the keys written before versions
    were part of every key); version N > 1 adds ``cache-version=N``."""
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"cache version must be an int >= 1, got {version!r}")
    return digest(*parts) if version == 1 else digest(*parts, f"cache-version={version}")


def _probe_write(d: Path) -> None:
    """Create and remove a file in ``d``; an ``OSError`` names ``d`` (not the probe)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".lrface-write-test.", dir=d)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        exc.filename = str(d)
        raise


def file_signature(path: Path) -> str:
    """``path:size:mtime`` of an existing file (cache keys of user datasets)."""
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
@dataclasses.dataclass(frozen=True)
class NpzCache:
    """One cache entry: the file :attr:`path` and, when ``enabled`` is False (``--no-cache``),
    an entry that is never read nor written (:meth:`build` just computes).

    Make one with :meth:`entry`; read it with :meth:`load`, write it with :meth:`save`,
    build its rows in resumable parts with :meth:`build`.
    """

    path: Path
    enabled: bool = True

    @classmethod
    def entry(
        cls,
        kind: str,
        *key_parts: object,
        label: str | None = None,
        version: int = 1,
        enabled: bool = True,
    ) -> NpzCache:
        """The entry ``cache_dir()/<kind>[-<label>]-<cache_key(*key_parts, version)>.npz``.

        ``kind`` names the cache (``faces``, ``emb`` ...); ``label`` (a detector or model
        name) is only there for people reading the directory; ``key_parts`` must
        identify the rows exactly.  With ``enabled=False`` the cache directory is not
        touched."""
        key = cache_key(*key_parts, version=version)
        name = f"{kind}-{label}-{key}.npz" if label else f"{kind}-{key}.npz"
        return cls((cache_dir() if enabled else Path()) / name, enabled)  # disabled: not used

    def exists(self) -> bool:
        """Whether the entry is enabled and on disk."""
        return self.enabled and self.path.is_file()

    def load(self) -> dict[str, np.ndarray] | None:
        """Every array of the entry (no pickles), or None when it is not on disk (or
        disabled)."""
        if not self.exists():
            return None
        with np.load(self.path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def save(self, **arrays: np.ndarray) -> None:
        """Write the entry atomically (nothing when disabled) and remove its parts."""
        if not self.enabled:
            return
        save_npz_atomic(self.path, **arrays)
        shutil.rmtree(self.parts_dir, ignore_errors=True)

    @property
    def parts_dir(self) -> Path:
        """The folder of the entry's finished parts: ``<file>.parts``."""
        return self.path.with_name(self.path.name + ".parts")

    def part_file(self, start: int, stop: int) -> Path:
        """The part file of rows ``start..stop-1``."""
        return self.parts_dir / f"{start:08d}-{stop:08d}.npz"

    def load_parts(
        self, n: int, part_rows: int, keys: Sequence[str]
    ) -> dict[tuple[int, int], dict[str, np.ndarray]]:
        """The finished parts that fit this build (``n`` rows in parts of ``part_rows``),
        each ``{key: array with stop - start rows}`` for every name of ``keys``;
        unreadable or mismatched parts are left out (and computed again)."""
        found: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        if not self.enabled or not self.parts_dir.is_dir():
            return found
        for start, stop in part_ranges(n, part_rows):
            f = self.part_file(start, stop)
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

    def build(
        self,
        n: int,
        part_rows: int,
        keys: Sequence[str],
        compute: ComputeRows,
        what: str = "rows",
    ) -> dict[str, np.ndarray]:
        """All ``n`` rows of the arrays ``keys``, from the finished parts plus
        ``compute(rows)``, which must yield, for each of the given row indices in order,
        one tuple of values (one per key).  Every part is written as soon as it is
        complete (not when disabled).  Returns ``{key: (n, ...) array}`` (``{}`` for
        ``n == 0``); the caller writes the entry with :meth:`save`, which removes the
        parts.  ``what`` names the rows in the log.  ``compute`` is given the rows of
        whole parts, in order: slices of ``part_rows`` of them are the rows of one part
        each."""
        done = self.load_parts(n, part_rows, keys)
        todo = [r for r in part_ranges(n, part_rows) if r not in done]
        if done:
            log.warning(
                "%s: resuming an interrupted cache build, %d of %d %s already done",
                self.path.name,
                sum(b - a for a, b in done),
                n,
                what,
            )
        rows = [i for a, b in todo for i in range(a, b)]
        if rows and self.enabled:
            self.parts_dir.mkdir(parents=True, exist_ok=True)
        results = compute(rows)
        for a, b in todo:
            cols: list[list[np.ndarray]] = [[] for _ in keys]
            for _ in range(a, b):
                for col, value in zip(cols, next(results)):
                    col.append(np.asarray(value))
            arrays = {k: np.stack(c) for k, c in zip(keys, cols)}
            if self.enabled:
                save_npz_atomic(self.part_file(a, b), **arrays)
            done[(a, b)] = arrays
        close = getattr(results, "close", None)
        if close is not None:
            close()
        order = part_ranges(n, part_rows)
        if not order:
            return {}
        return {k: np.concatenate([done[r][k] for r in order]) for k in keys}


def part_ranges(n: int, part_rows: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering rows ``0..n-1`` in parts of ``part_rows``."""
    return [(s, min(n, s + part_rows)) for s in range(0, n, part_rows)]


def contiguous_runs(rows: Sequence[int], most: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` runs of consecutive row indices of ``rows`` (in order), each of
    at most ``most`` rows (for a ``compute`` that loads rows by range)."""
    i = 0
    while i < len(rows):
        j = i + 1
        while j < len(rows) and j - i < most and rows[j] == rows[j - 1] + 1:
            j += 1
        yield rows[i], rows[j - 1] + 1
        i = j
