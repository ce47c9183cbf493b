"""User-facing error type.

Every *expected* failure (bad file, missing model, wrong dataset layout, ...) raises
:class:`LrfaceError` with a single-line message that names the offending file and says
what to do.  The CLI prints ``error: <message>`` and exits with status 2, without a
traceback; so it does for an ``OSError`` on a path (a full disk, a name too long, a file
where a directory should be: :func:`os_error_message`).  Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import errno
import os


class LrfaceError(Exception):
    """An expected, user-correctable failure with a one-line message."""


def first_line(exc: BaseException, limit: int = 120) -> str:
    """The first line of ``str(exc)`` (at most ``limit`` characters), or the exception's
    type name when it has no message: the reason quoted inside a one-line message."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__


class ArgumentTypeError(LrfaceError, TypeError):
    """An API argument of the wrong type: a string, bool or None where a number is
    expected, an array of another dtype.  Catch it as :class:`LrfaceError` or ``TypeError``."""


class ArgumentValueError(LrfaceError, ValueError):
    """An API argument of the right type with a bad value: NaN, out of range, an empty
    or oversized array.  Catch it as :class:`LrfaceError` or ``ValueError``."""


class ImageError(LrfaceError):
    """The input image could not be read or is unusable."""


class ImageTypeError(ImageError, ArgumentTypeError):
    """An image argument of a type or dtype lrface does not read (``TypeError`` too)."""


class ImageValueError(ImageError, ArgumentValueError):
    """An image array of the right type with an unusable shape, size or values
    (``ValueError`` too)."""


class NoFaceError(LrfaceError):
    """No face was found in an image."""


class ModelFileError(LrfaceError):
    """A model file is missing, corrupt (sha256 mismatch) or of the wrong kind."""


class DatasetError(LrfaceError):
    """A dataset path is missing or does not have the expected layout."""


#: errno -> what the user can do about an ``OSError`` on one of their paths.
_OS_ERROR_FIXES = {
    errno.ENOSPC: "free space there or choose another location",
    errno.EDQUOT: "free space (disk quota) or choose another location",
    errno.EFBIG: "the file is too large for that file system or a file-size limit is set; "
    "choose another location",
    errno.EROFS: "the file system is read-only; choose another location",
    errno.EACCES: "fix the permissions or choose another location",
    errno.EPERM: "fix the permissions or choose another location",
    errno.ENAMETOOLONG: "use a shorter name (most file systems allow 255 bytes per name)",
    errno.ENOTDIR: "a part of the path is a file, not a directory; choose another path",
    errno.EEXIST: "a file of that name is in the way of a directory; choose another path or "
    "move the file",
    errno.EISDIR: "it is a directory; give a file name",
    errno.ENOENT: "check the path",
    errno.ELOOP: "the path has a symbolic-link loop; check the path",
    errno.EIO: "the device reported an I/O error; check the disk or choose another location",
}


def os_error_message(exc: OSError, path: str | os.PathLike[str] | None = None) -> str:
    """One line for an ``OSError`` on a user's path: ``PATH: reason; fix``.

    ``path`` names the file when the error does not (e.g. a write that filled the disk);
    otherwise ``exc.filename`` is used.  The CLI prints this for any ``OSError`` that
    reaches it (``error: ...``, exit status 2); writers and the cache raise
    :class:`LrfaceError` with it.
    """
    name = exc.filename if exc.filename is not None else path
    reason = exc.strerror or str(exc) or type(exc).__name__
    fix = _OS_ERROR_FIXES.get(exc.errno or 0, "check the path and the disk")
    where = f"{os.fsdecode(name) if isinstance(name, bytes) else name}: " if name else ""
    return f"{where}{reason}; {fix}"


class Terminated(BaseException):
    """Raised in the main thread of ``lrface`` (the CLI) when SIGTERM arrives, so that the
    running command unwinds like after Ctrl-C: worker processes stopped, outputs left
    complete or resumable, exit status 143 (128 + SIGTERM).  Not an :class:`Exception`:
    ``except Exception`` does not swallow it."""
