"""User-facing error type.

Every *expected* failure (bad file, missing model, wrong dataset layout, ...) raises
:class:`LrfaceError` with a single-line message that names the offending file and says
what to do.  The CLI prints ``error: <message>`` and exits with status 2, without a
traceback.  Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class LrfaceError(Exception):
    """An expected, user-correctable failure with a one-line message."""


class ImageError(LrfaceError):
    """The input image could not be read or is unusable."""


class NoFaceError(LrfaceError):
    """No face was found in an image."""


class ModelFileError(LrfaceError):
    """A model file is missing, corrupt (sha256 mismatch) or of the wrong kind."""


class DatasetError(LrfaceError):
    """A dataset path is missing or does not have the expected layout."""
