"""The gallery of ``lrface serve`` on disk, shared by every worker process.

* **One writer at a time.**  :meth:`GalleryStore.write` holds this process's mutex and an
  exclusive ``flock`` on ``<gallery>.lock`` (beside the gallery) for the whole
  read-modify-write, so concurrent enrolments in any worker serialize and none is lost.
* **Before or after, never between.**  A write re-reads the gallery from disk under the
  lock, applies the change in memory and writes the new state atomically: an ``.npz`` via
  :meth:`lrface.search.gallery.FlatGallery.save` (temporary file beside it, fsync, rename); an IVF
  directory via :class:`lrface.search.ivf.IvfGallery` (new part files first, each written
  atomically, then ``meta.json`` renamed over the old one); then the directory itself is
  fsynced so the rename is on disk.  A ``kill -9`` at any moment leaves the old file or
  the new one; a killed writer's temporary files are removed at the next start.
* **Readers see the latest.**  :meth:`GalleryStore.current` re-opens the gallery when the
  file (``.npz``, or an IVF directory's ``meta.json``) was replaced since it was read, so
  an enrolment answered by one worker is searched by every worker afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from lrface.errors import LrfaceError
from lrface.search.gallery import FlatGallery
from lrface.search.interface import Gallery
from lrface.search.ivf import META, is_ivf_gallery, open_gallery
from lrface.serve.limits import Deadline

T = TypeVar("T")

__all__ = ["GalleryStore"]


def _fsync_dir(path: Path) -> None:
    """fsync directory ``path`` so a rename inside it is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class GalleryStore:
    """The gallery at ``path`` (an ``.npz``, or an IVF directory); see the module docstring.

    ``new_model`` and ``aggregate``: the recogniser and matching of the empty ``.npz``
    :meth:`prepare` creates when ``path`` does not exist.
    """

    def __init__(self, path: str | os.PathLike[str], new_model: str, aggregate: str) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.new_model = new_model
        self.aggregate = aggregate
        self._mutex = threading.Lock()
        self._gallery: Gallery | None = None
        self._signature: tuple[int, int, int] | None = None

    @property
    def is_ivf(self) -> bool:
        return is_ivf_gallery(self.path)

    # ------------------------------------------------------------------ opening

    def prepare(self) -> None:
        """Under the lock: create the empty ``.npz`` if missing, remove the temporary
        files a killed writer left, and open the gallery (raises :class:`LrfaceError`
        when it is missing and not an ``.npz`` path, or corrupt)."""
        with self._exclusive(None):
            if not self.path.exists():
                if self.path.suffix.lower() != ".npz":
                    raise LrfaceError(
                        f"--gallery {self.path}: no such gallery; give an .npz path (created "
                        "empty) or an IVF directory built by `lrface gallery build --index`"
                    )
                from lrface.models.loader import load_embedder

                empty = FlatGallery.for_embedder(load_embedder(self.new_model), self.aggregate)
                empty.save(self.path)
                _fsync_dir(self.path.parent)
            self._remove_stale()
            self._gallery, self._signature = self._open()

    def _remove_stale(self) -> None:
        """Temporary files of writes that never finished (the writer was killed)."""
        where = self.path if self.path.is_dir() else self.path.parent
        prefix = "." if self.path.is_dir() else f".{self.path.name}."
        for p in where.iterdir():
            stale_part = p.name.startswith(prefix) and p.name.endswith(".part")
            stale_index = self.path.is_dir() and p.name.endswith(".index.tmp")
            if (stale_part or stale_index) and p.is_file():
                p.unlink(missing_ok=True)

    def _stat(self) -> tuple[int, int, int]:
        """What changes when the gallery is replaced: (inode, mtime ns, size)."""
        st = (self.path / META if self.path.is_dir() else self.path).stat()
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _open(self) -> tuple[Gallery, tuple[int, int, int]]:
        sig = self._stat()  # before reading: a later replacement is seen next time
        return open_gallery(self.path), sig

    # ------------------------------------------------------------------ reading

    def current(self) -> Gallery:
        """The gallery as it is on disk now (re-opened only when it was replaced)."""
        with self._mutex:
            if self._gallery is None or self._stat() != self._signature:
                self._gallery, self._signature = self._open()
            return self._gallery

    # ------------------------------------------------------------------ writing

    def write(self, change: Callable[[Gallery], T], deadline: Deadline) -> T:
        """Apply ``change(gallery)`` to the gallery as it is on disk and store the result
        atomically (module docstring); returns what ``change`` returns.  Past ``deadline``
        (waiting for the lock included), :class:`~lrface.serve.limits.RequestTimeout` and
        nothing is written.  An ``.npz`` is changed in memory and saved after ``change``
        returns, so an exception in ``change`` writes nothing; an IVF gallery's ``add``
        and ``remove`` each commit at once (``meta.json`` renamed), so ``change`` makes
        its checks first and at most one such call."""
        with self._exclusive(deadline):
            self._gallery = None  # re-read below; on any failure, re-read next time
            gallery, _ = self._open()
            deadline.check("writing the gallery")
            result = change(gallery)  # an IVF gallery writes its part files and meta.json
            if isinstance(gallery, FlatGallery):  # in memory: saved; IVF: written per edit
                gallery.save(self.path)
            _fsync_dir(self.path if self.path.is_dir() else self.path.parent)
            self._gallery, self._signature = gallery, self._stat()
            return result

    @contextlib.contextmanager
    def _exclusive(self, deadline: Deadline | None) -> Iterator[None]:
        """This process's mutex and the lock file's exclusive flock, waited for until
        ``deadline`` (None: without limit)."""
        if deadline is None:
            self._mutex.acquire()
        elif not self._mutex.acquire(timeout=deadline.remaining()):
            raise deadline.timeout("the gallery lock was free")
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if deadline is not None and deadline.remaining() == 0:
                            raise deadline.timeout("the gallery lock was free") from None
                        time.sleep(0.01)
                yield
            finally:
                os.close(fd)  # releases the flock
        finally:
            self._mutex.release()
