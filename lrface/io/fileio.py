"""Output files and defensive ``.npz`` reading.

* Atomic writing (:func:`atomic_write`, :func:`write_json_atomic`, :func:`save_npz_atomic`):
  a partially written output never looks complete.  JSON is strict (:func:`jsonable`: the
  one conversion of results, numpy values and paths to JSON).  Failures to write (no such
  directory, a file where a directory should be, no permission, disk full) raise
  :class:`LrfaceError` naming the output, never a bare ``OSError``.
* :func:`check_writable`: refuse an output location up front, before any work is done.
* :func:`read_npz_arrays`: read arrays from an ``.npz`` without trusting it: bounded
  memory (zip bombs and lying headers are refused), CRC-checked, no pickles.
* :func:`sha256_file`: the sha256 of a file (model weights, downloads), cached per process.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from lrface.errors import LrfaceError, os_error_message

#: ``read_npz_arrays`` refuses members declaring more than this many times the file's size.
MAX_NPZ_RATIO = 10
#: ... plus this many bytes (small files).
NPZ_SLACK = 1 << 20
#: errno values of a write that failed because of the destination (not a bug).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES}


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` (``mode`` "wb" binary, "w" text); rename it
    over ``path`` only on success.

    The temporary file lives in the same directory, so the final ``os.replace`` is atomic
    on POSIX and Windows.  On an exception the temporary file is removed and ``path`` is
    left untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            try:
                fh.flush()
                os.fsync(fh.fileno())
            except OSError as exc:
                raise _write_error(path, exc) from None
        try:
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except OSError as exc:
            raise _write_error(path, exc) from None
    except OSError as exc:
        # raised by the caller's writes (disk full, quota, ...) or by closing the file
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if exc.errno in _WRITE_ERRNOS and exc.filename in (None, tmp):
            raise _write_error(path, exc) from None
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_error(path: Path, exc: OSError) -> LrfaceError:
    exc.filename = None  # name the output, not its temporary file
    return LrfaceError(f"cannot write {os_error_message(exc, path)}")


def check_writable(
    path: str | os.PathLike[str], kind: str = "file", option: str = "output path"
) -> Path:
    """Refuse an output location that cannot be written, before any work is done.

    ``kind="file"``: ``path`` will be written as a file (atomically, beside itself): it
    must not be a directory, and its directory is created (with parents) if missing and
    must accept new files.  ``kind="dir"``: ``path`` is a directory that will be created
    or written into.  ``option`` names the setting in the message (e.g. ``--out``).
    Returns ``Path(path)``; raises :class:`LrfaceError` naming the path and the fix.
    """
    path = Path(path)
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    try:
        return _check_writable(path, kind, option)
    except OSError as exc:  # a name too long, a symlink loop, ...
        raise LrfaceError(f"{option} {os_error_message(exc, path)}") from None


def _check_writable(path: Path, kind: str, option: str) -> Path:
    if kind == "file" and path.is_dir():
        raise LrfaceError(f"{path}: is a directory; give {option} a file name")
    if kind == "dir" and path.exists() and not path.is_dir():
        raise LrfaceError(f"{path}: exists and is not a directory; choose another {option}")
    # the directory that must accept new files: the output directory itself if it exists
    # (kind="dir"), else the directory that will hold it (created below if missing)
    where = path if kind == "dir" and path.is_dir() else path.parent
    anc = where
    while not os.path.lexists(anc) and anc != anc.parent:
        anc = anc.parent
    if os.path.lexists(anc) and not anc.is_dir():
        raise LrfaceError(
            f"{path}: cannot be created, {anc} is a file, not a directory; choose another {option}"
        )
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LrfaceError(
            f"{path}: cannot create directory {where} ({exc.strerror}); choose another {option}"
        ) from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".lrface-write-test.", dir=where)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise LrfaceError(
            f"{path}: directory {where} does not accept new files ({exc.strerror}); choose "
            f"another {option} or fix the directory's permissions"
        ) from None
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``jsonable(obj)`` as indented UTF-8 strict JSON to ``path`` atomically."""
    with atomic_write(path, "w") as fh:
        json.dump(jsonable(obj), fh, indent=2, sort_keys=False, allow_nan=False)
        fh.write("\n")


def save_npz_atomic(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path`` atomically (the name is used exactly, no ``.npz`` added)."""
    # (as dict[str, Any]: numpy's stub types savez's **kwds like its allow_pickle flag)
    named: dict[str, Any] = dict(arrays)
    with atomic_write(path, "wb") as fh:
        np.savez(fh, **named)


def jsonable(obj: Any) -> Any:
    """Strict-JSON version of ``obj`` (results, cards, manifests): NaN/inf -> None, float
    keys -> ``"%g"`` strings, numpy scalars/arrays -> python, tuples -> lists, paths ->
    strings.  Anything else is returned as is (``json`` then refuses what it cannot write)."""
    if isinstance(obj, dict):
        return {_json_key(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _json_key(k: Any) -> str:
    if isinstance(k, float | np.floating):
        return f"{float(k):g}"
    return str(k.item() if isinstance(k, np.generic) else k)


# ---------------------------------------------------------------------- hashing

_SHA256: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Lowercase hex sha256 of the file at ``path`` (read in 1 MiB chunks).

    Cached per (resolved path, size, modification time) within the process, so verifying
    the same weights on every load costs one read.
    """
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]


# ---------------------------------------------------------------------- reading .npz


class NpzError(Exception):
    """Why an ``.npz`` could not be read (a short reason; callers add the file and fix)."""


def read_npz_arrays(
    path: str | os.PathLike[str], names: Sequence[str], max_ratio: int = MAX_NPZ_RATIO
) -> dict[str, np.ndarray]:
    """Read the arrays ``names`` of an ``.npz`` (``np.savez`` layout) without trusting it.

    Refused with :class:`NpzError`: an empty, truncated or non-zip file; a missing or
    duplicated member; members declaring more than ``max_ratio`` times the file size
    (+1 MiB) uncompressed (zip bombs); an ``.npy`` header that is malformed, holds object
    (pickled) data or disagrees with the member's size; a CRC mismatch (bit flips).
    Memory stays within about twice the declared member sizes.  Returns writable arrays
    with the stored dtypes and shapes.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            raise NpzError("the file is empty")
        with zipfile.ZipFile(path) as zf:
            members: dict[str, zipfile.ZipInfo] = {}
            for info in zf.infolist():
                if info.filename in members:
                    raise NpzError(f"member {info.filename!r} appears twice")
                members[info.filename] = info
            wanted = []
            for name in names:
                member = members.get(f"{name}.npy")
                if member is None:
                    raise NpzError(f"no {name!r} array")
                wanted.append((name, member))
            declared = sum(info.file_size for _, info in wanted)
            if declared > max_ratio * size + NPZ_SLACK:
                raise NpzError(
                    f"its arrays declare {declared} bytes from a {size}-byte file "
                    "(a decompression bomb?)"
                )
            out = {}
            for name, info in wanted:
                with zf.open(info) as fh:
                    out[name] = _read_npy(fh, info.file_size, name)
            return out
    except NpzError:
        raise
    except Exception as exc:  # untrusted bytes: every parse failure means "corrupt":
        # zipfile (BadZipFile, CRC), zlib, numpy's header parser (ValueError, SyntaxError,
        # tokenize.TokenError, RecursionError), OSError, MemoryError, ...
        raise NpzError(_one_line(f"{type(exc).__name__}: {exc}")) from None


def _read_npy(fh: IO[bytes], member_size: int, name: str) -> np.ndarray:
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(fh)
    else:
        raise NpzError(f"array {name!r}: unsupported .npy version {version}")
    if dtype.hasobject:
        raise NpzError(f"array {name!r} holds Python objects (pickled data is never loaded)")
    if any(d < 0 for d in shape):
        raise NpzError(f"array {name!r}: negative dimension in shape {shape}")
    nbytes = math.prod(shape) * dtype.itemsize
    header = fh.tell()
    if header + nbytes != member_size:
        raise NpzError(
            f"array {name!r} declares shape {shape} of {dtype} ({nbytes} bytes) but the file "
            f"holds {member_size - header} bytes for it"
        )
    data = fh.read(nbytes)  # reading to the member's end checks its CRC
    if len(data) != nbytes or fh.read(1):
        raise NpzError(f"array {name!r}: size mismatch")
    arr = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return arr.copy()


def _one_line(msg: str) -> str:
    return " ".join(msg.split())
