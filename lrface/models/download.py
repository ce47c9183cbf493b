"""Robust model downloads and insightface model-pack unpacking.

:func:`download_file` fetches a URL into ``<dest>.part`` (so a partial download never has
the final name), resumes an existing ``.part`` file with an HTTP ``Range`` request, retries
transient failures (connection errors, timeouts, 5xx, truncated bodies) with exponential
backoff, checks the sha256 when one is given, and only then renames the file into place.

:func:`unpack_zip` extracts an insightface-style pack (``buffalo_l.zip`` ...) into
``<dest_dir>/<pack>/`` safely (no zip-slip) and atomically (a half-extracted pack never
appears under its final name).

Only the standard library (``urllib``) and ``tqdm`` are used.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO

from tqdm import tqdm

from lrface.errors import ModelFileError
from lrface.io.fileio import sha256_file

__all__ = ["download_file", "unpack_zip"]

CHUNK_SIZE = 1 << 20  # 1 MiB
USER_AGENT = "lrface"

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE_RE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_CONTENT_RANGE_UNSAT_RE = re.compile(r"^bytes\s+\*/(\d+)$")
# 4xx statuses that mean "try again later" rather than "this URL is wrong".
_RETRYABLE_4XX = frozenset({408, 429})
# Entries that archivers add and that are never part of a model pack.
_JUNK_PARTS = frozenset({"__MACOSX", ".DS_Store"})


class _TransientError(Exception):
    """A failure worth retrying (network hiccup, 5xx, truncated body)."""


class _RangeNotSatisfiable(Exception):
    """HTTP 416 to a resume request; ``total`` is the size the server reported, if any."""

    def __init__(self, total: int | None) -> None:
        super().__init__(f"range not satisfiable (server size {total})")
        self.total = total


# --------------------------------------------------------------------------------------
# download


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str | None = None,
    *,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 1.0,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest`` as a :class:`Path`.

    The data goes to ``<dest>.part`` first; an existing ``.part`` file is resumed with a
    ``Range`` request (restarted from zero if the server ignores the range).  Transient
    failures are retried up to ``retries`` times, sleeping ``backoff * 2**k`` seconds
    between attempts.  If ``sha256`` is given, the result is verified before it is
    fsynced and renamed to ``dest``; a mismatch deletes the ``.part`` file.

    If ``dest`` already exists and matches ``sha256``, no request is made.  Without
    ``sha256`` an existing ``dest`` is trusted (only complete downloads get that name).

    Raises:
        ModelFileError: HTTP 4xx, sha256 mismatch, or all attempts failed.
        ValueError: ``sha256`` is not 64 hex digits or ``retries`` is negative.
    """
    dest = Path(dest)
    expected = _normalise_sha256(sha256)
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if dest.is_file() and (expected is None or sha256_file(dest) == expected):
        return dest

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _fetch_with_retries(url, part, progress, retries, timeout, backoff)
    if expected is not None:
        _verify_or_delete(url, part, expected)
    _fsync_file(part)
    os.replace(part, dest)
    _fsync_dir(dest.parent)
    return dest


def _normalise_sha256(sha256: str | None) -> str | None:
    """Lower-case and validate an expected sha256 hex digest."""
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if not _SHA256_RE.match(value):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    return value


def _fetch_with_retries(
    url: str, part: Path, progress: bool, retries: int, timeout: float, backoff: float
) -> None:
    """Run :func:`_fetch_once` until it succeeds or ``retries`` retries are used up."""
    attempts = retries + 1
    for attempt in range(attempts):
        try:
            _fetch_once(url, part, progress, timeout)
            return
        except _TransientError as exc:
            if attempt + 1 >= attempts:
                raise ModelFileError(
                    f"download of {url} failed after {attempts} attempt(s): {exc}; "
                    f"check the network and retry (the partial file {part} is kept "
                    "and will be resumed)"
                ) from exc
            time.sleep(backoff * 2**attempt)


def _fetch_once(url: str, part: Path, progress: bool, timeout: float) -> None:
    """One attempt: (re)start or resume ``part`` and copy the response body into it."""
    offset = part.stat().st_size if part.is_file() else 0
    try:
        resp = _open(url, offset, timeout)
    except _RangeNotSatisfiable as exc:
        if exc.total == offset:  # the .part file already holds the whole body
            return
        part.unlink(missing_ok=True)
        raise _TransientError(
            f"server refused to resume at byte {offset} (size {exc.total}); "
            "discarded the partial file"
        ) from exc
    with resp:
        offset = _resume_offset(resp, offset)
        length = _content_length(resp)
        total = None if length is None else offset + length
        with open(part, "ab" if offset else "wb") as fh:
            received = _copy_body(resp, fh, offset, total, part.name, progress)
    if length is not None and received < length:
        raise _TransientError(f"connection closed after {received} of {length} bytes")


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    """Send the GET request (with ``Range`` when resuming); map errors to exceptions.

    Raises :class:`_RangeNotSatisfiable` for 416 to a resume request, ModelFileError for
    other 4xx, and :class:`_TransientError` for 5xx and network errors.
    """
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(Exception):
            exc.close()
        if exc.code == 416 and offset:
            raise _RangeNotSatisfiable(_unsatisfiable_total(exc)) from exc
        if 400 <= exc.code < 500 and exc.code not in _RETRYABLE_4XX:
            raise ModelFileError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
        raise _TransientError(f"HTTP {exc.code} {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _TransientError(_describe(exc)) from exc


def _unsatisfiable_total(exc: urllib.error.HTTPError) -> int | None:
    """Total size from a 416 response's ``Content-Range: bytes */N`` header, if any."""
    match = _CONTENT_RANGE_UNSAT_RE.match(exc.headers.get("Content-Range", "").strip())
    return int(match.group(1)) if match else None


def _resume_offset(resp: http.client.HTTPResponse, offset: int) -> int:
    """Offset at which ``resp``'s body starts: ``offset`` for a matching 206, else 0."""
    if not offset or resp.status != 206:
        return 0
    match = _CONTENT_RANGE_RE.match(resp.headers.get("Content-Range", "").strip())
    if match is None or int(match.group(1)) != offset:
        raise _TransientError(
            f"server answered the resume request with Content-Range "
            f"{resp.headers.get('Content-Range')!r} instead of starting at byte {offset}"
        )
    return offset


def _content_length(resp: http.client.HTTPResponse) -> int | None:
    """The response's ``Content-Length`` as an int, or ``None`` if absent/invalid."""
    value = resp.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _copy_body(
    resp: http.client.HTTPResponse,
    fh: BinaryIO,
    offset: int,
    total: int | None,
    name: str,
    progress: bool,
) -> int:
    """Stream ``resp`` into ``fh`` with a progress bar; return the number of bytes copied.

    Data received before a connection error is flushed to disk so that the next attempt
    can resume after it.
    """
    received = 0
    with tqdm(
        total=total,
        initial=offset,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name.removesuffix(".part"),
        disable=None if progress else True,  # None: disabled when not a TTY
        leave=False,
    ) as bar:
        while True:
            try:
                chunk = resp.read(CHUNK_SIZE)
            except (OSError, http.client.HTTPException) as exc:
                fh.flush()
                raise _TransientError(_describe(exc)) from exc
            if not chunk:
                return received
            fh.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))


def _describe(exc: BaseException) -> str:
    """A short one-line description of a network exception."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return f"{type(exc).__name__}: {exc.reason}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _verify_or_delete(url: str, part: Path, expected: str) -> None:
    """Raise :class:`ModelFileError` (after deleting ``part``) if its sha256 is wrong."""
    actual = sha256_file(part)
    if actual == expected:
        return
    part.unlink(missing_ok=True)
    raise ModelFileError(
        f"sha256 mismatch for {url}: expected {expected}, got {actual}; the upstream "
        "file changed or the download was corrupted (partial file deleted, retry the "
        "download or update the expected hash)"
    )


def _fsync_file(path: Path) -> None:
    """Flush ``path``'s data to disk."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    """Best-effort fsync of a directory so a rename survives a crash (POSIX only)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------------------
# zip packs


def unpack_zip(zip_path: str | os.PathLike[str], dest_dir: str | os.PathLike[str]) -> list[Path]:
    """Extract an insightface model pack into ``dest_dir/<pack>/``; return the file paths.

    ``<pack>`` is the zip's stem (``buffalo_l.zip`` -> ``buffalo_l``).  The files may sit
    at the top level of the zip or inside one common folder (``buffalo_l/det_10g.onnx``);
    either way they end up as ``dest_dir/<pack>/det_10g.onnx``.  Entries with absolute
    paths, drive letters or ``..`` components are rejected before anything is written.
    Extraction goes to a temporary folder that is renamed into place, replacing an
    existing pack folder of the same name.

    Raises:
        ModelFileError: the file is not a valid zip, holds no files, or has unsafe entries.
    """
    zip_path = Path(zip_path)
    target = Path(dest_dir) / zip_path.stem
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = _safe_members(zf, zip_path)
            rel_paths = _extract_atomically(zf, members, target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise ModelFileError(
            f"{zip_path} is not a valid zip file ({exc}); delete it and download it again"
        ) from exc
    return [target.joinpath(*rel.parts) for rel in rel_paths]


def _extract_atomically(
    zf: zipfile.ZipFile, members: dict[str, PurePosixPath], target: Path
) -> list[PurePosixPath]:
    """Extract ``members`` into a temporary folder beside ``target``, then rename it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        rel_paths = _extract_members(zf, members, tmp)
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return rel_paths


def _safe_members(zf: zipfile.ZipFile, zip_path: Path) -> dict[str, PurePosixPath]:
    """Map each file entry of ``zf`` to its safe path relative to the pack folder.

    Directory entries and archiver junk (``__MACOSX/``, ``.DS_Store``) are skipped; a
    single folder shared by all files is stripped.
    """
    members: dict[str, PurePosixPath] = {}
    for info in zf.infolist():
        rel = _check_entry_name(info.filename, zip_path)
        if info.is_dir() or not rel.parts or _JUNK_PARTS.intersection(rel.parts):
            continue
        members[info.filename] = rel
    if not members:
        raise ModelFileError(f"{zip_path} contains no files; delete it and download it again")
    return _strip_common_folder(members)


def _check_entry_name(name: str, zip_path: Path) -> PurePosixPath:
    """Return ``name`` as a relative path, or raise on absolute / ``..`` (zip-slip) names."""
    posix = name.replace("\\", "/")
    win = PureWindowsPath(name)
    parts = [p for p in posix.split("/") if p not in ("", ".")]
    if posix.startswith("/") or win.drive or win.root or ".." in parts:
        raise ModelFileError(
            f"{zip_path} has an unsafe entry {name!r} (absolute path or '..'); "
            "refusing to extract it"
        )
    return PurePosixPath(*parts)


def _strip_common_folder(members: dict[str, PurePosixPath]) -> dict[str, PurePosixPath]:
    """Drop the first path component if every file lives under the same single folder."""
    firsts = {rel.parts[0] for rel in members.values()}
    if len(firsts) != 1 or any(len(rel.parts) < 2 for rel in members.values()):
        return members
    return {name: PurePosixPath(*rel.parts[1:]) for name, rel in members.items()}


def _extract_members(
    zf: zipfile.ZipFile, members: dict[str, PurePosixPath], root: Path
) -> list[PurePosixPath]:
    """Write each member to ``root / rel`` (fsynced); return the relative paths, sorted."""
    for name, rel in members.items():
        out = root.joinpath(*rel.parts)
        out.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(name) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK_SIZE)
            dst.flush()
            os.fsync(dst.fileno())
    return sorted(members.values())


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished folder ``tmp`` to ``target``, replacing an existing one."""
    old: Path | None = None
    if target.exists() or target.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, old / target.name)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:  # put the previous pack back
            os.replace(old / target.name, target)
            shutil.rmtree(old, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
