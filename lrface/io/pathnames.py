"""File names that line-based outputs cannot hold, and how such a name is written.

A file name may hold characters that would break a one-path-per-line output (``paths.txt``,
``failures.tsv``, ``failed: PATH: reason`` lines, ``identify``'s output): line breaks,
tabs and other control characters (Unicode categories Cc, Zl, Zp: everything
``str.splitlines`` splits on), or bytes that are not UTF-8 (Python holds them as lone
surrogates, ``os.fsdecode``'s ``surrogateescape``).  Batch commands fail such a file on
its own (:func:`name_problem`, checked by :func:`lrface.faces.pipeline.prepare_crop`) and
write its name escaped (:func:`path_text`), so one bad name never aborts a batch.
"""

from __future__ import annotations

import os
import unicodedata

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _is_control(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Zl", "Zp")


def _is_surrogate(c: str) -> bool:
    return 0xD800 <= ord(c) <= 0xDFFF


def name_problem(path: str | os.PathLike[str]) -> str | None:
    """None when ``path`` can be written on one line as UTF-8, else why not (one line,
    with the fix)."""
    p = os.fspath(path)
    p = os.fsdecode(p) if isinstance(p, bytes) else p
    if any(_is_surrogate(c) for c in p):
        return "the file name is not valid UTF-8 (undecodable bytes); rename the file"
    if any(_is_control(c) for c in p):
        return (
            "the file name holds a line break, tab or other control character, which "
            "lrface's one-line outputs cannot record; rename the file"
        )
    return None


def path_text(path: str | os.PathLike[str]) -> str:
    """``path`` on one line, UTF-8-safe: itself when :func:`name_problem` finds nothing,
    else with ``\\n``, ``\\r``, ``\\t``, ``\\xNN`` (an undecodable byte or a control
    character) and ``\\uNNNN`` escapes (backslashes already in the name are kept as
    they are)."""
    p = os.fspath(path)
    p = os.fsdecode(p) if isinstance(p, bytes) else p
    if name_problem(p) is None:
        return p
    out = []
    for c in p:
        o = ord(c)
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif 0xDC80 <= o <= 0xDCFF:  # an undecodable byte under surrogateescape
            out.append(f"\\x{o - 0xDC00:02x}")
        elif _is_surrogate(c) or _is_control(c):
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(c)
    return "".join(out)
