"""User-facing error type.

Every *expected* failure (bad file, missing model, wrong dataset layout, ...) raises
:class:`LrfaceError` with a single-line message that names the offending file and says
what to do.  The CLI prints ``error: <message>`` and exits with status 2, without a
traceback.  Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


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


class Terminated(BaseException):
    """Raised in the main thread of ``lrface`` (the CLI) when SIGTERM arrives, so that the
    running command unwinds like after Ctrl-C: worker processes stopped, outputs left
    complete or resumable, exit status 143 (128 + SIGTERM).  Not an :class:`Exception`:
    ``except Exception`` does not swallow it."""
