"""Where lrface keeps derived data (landmarks, aligned crops, cached embeddings)."""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path

from lrface.errors import LrfaceError, os_error_message

#: cache directories found writable in this process (checked once each)
_WRITABLE: set[Path] = set()


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
