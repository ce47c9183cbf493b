"""Tests for :mod:`lrface.models.download` against a local threaded HTTP server (no internet)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lrface.errors import LrfaceError, ModelFileError
from lrface.io.fileio import sha256_file
from lrface.models import download
from lrface.models.download import download_file, unpack_zip

GOOD = os.urandom(300 * 1024 + 123)
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()
OTHER = os.urandom(50 * 1024)
PACK_FILES = {"det_10g.onnx": b"detector" * 100, "w600k_r50.onnx": b"recognizer" * 100}


def _zip_bytes(entries: dict[str, bytes]) -> bytes:
    """Build an in-memory zip from ``{name: data}``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


PACK_ZIP = _zip_bytes({f"buffalo_l/{k}": v for k, v in PACK_FILES.items()})


@dataclass
class Request:
    """What the handler saw for one GET."""

    path: str
    range: str | None
    user_agent: str | None
    sent: int = 0  # body bytes written


@dataclass
class ServerState:
    """Shared, lock-protected record of requests, reset for every test."""

    requests: list[Request] = field(default_factory=list)
    hits: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, req: Request) -> int:
        """Store ``req``; return how many times its path was requested before."""
        with self.lock:
            self.requests.append(req)
            n = self.hits.get(req.path, 0)
            self.hits[req.path] = n + 1
            return n

    def for_path(self, path: str) -> list[Request]:
        """All requests for ``path``."""
        return [r for r in self.requests if r.path == path]


class Handler(BaseHTTPRequestHandler):
    """Serves the fixtures; behaviour per path is described in :meth:`do_GET`."""

    server: ThreadingHTTPServer  # carries a ``state`` attribute

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        """Dispatch on path.

        ``/good.bin``           GOOD, Range supported
        ``/flaky.bin``          first request: Content-Length of all, half the body, close;
                                then like ``/good.bin``
        ``/flaky-norange.bin``  like ``/flaky.bin`` but always answers 200 (ignores Range)
        ``/slow.bin``           first request stalls before answering; then GOOD
        ``/other.bin``          OTHER (does not match GOOD_SHA)
        ``/error500``           always 500
        ``/missing``            404, ``/forbidden`` 403
        ``/buffalo_l.zip``      a model pack zip
        """
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        req = Request(self.path, self.headers.get("Range"), self.headers.get("User-Agent"))
        previous = state.record(req)
        if self.path == "/good.bin":
            self._serve(req, GOOD, ranges=True)
        elif self.path in ("/flaky.bin", "/flaky-norange.bin"):
            if previous == 0:
                self._serve_truncated(req, GOOD)
            else:
                self._serve(req, GOOD, ranges=self.path == "/flaky.bin")
        elif self.path == "/slow.bin":
            if previous == 0:
                time.sleep(1.0)
            self._serve(req, GOOD, ranges=True)
        elif self.path == "/other.bin":
            self._serve(req, OTHER, ranges=True)
        elif self.path == "/buffalo_l.zip":
            self._serve(req, PACK_ZIP, ranges=True)
        elif self.path == "/error500":
            self.send_error(500)
        elif self.path == "/forbidden":
            self.send_error(403)
        else:
            self.send_error(404)

    def _serve(self, req: Request, data: bytes, *, ranges: bool) -> None:
        """Send ``data`` (or the requested suffix with 206 when ``ranges``)."""
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", req.range or "")
        if ranges and match:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._write(req, body)

    def _serve_truncated(self, req: Request, data: bytes) -> None:
        """Announce all of ``data`` but send only the first half, then close."""
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self._write(req, data[: len(data) // 2])
        self.close_connection = True

    def _write(self, req: Request, body: bytes) -> None:
        """Write ``body``, tolerating a client that already hung up."""
        try:
            self.wfile.write(body)
            self.wfile.flush()
            req.sent += len(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def _server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture()
def server(_server: ThreadingHTTPServer) -> tuple[str, ServerState]:
    """Base URL of the local server and a fresh request record."""
    state = ServerState()
    _server.state = state  # type: ignore[attr-defined]
    host, port = _server.server_address[:2]
    return f"http://{host}:{port}", state


def _dl(url: str, dest: Path, sha: str | None = GOOD_SHA, **kw: object) -> Path:
    """download_file with fast test defaults."""
    kw.setdefault("progress", False)
    kw.setdefault("backoff", 0.0)
    kw.setdefault("timeout", 5.0)
    return download_file(url, dest, sha, **kw)  # type: ignore[arg-type]


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


# --------------------------------------------------------------------------------------
# sha256_file


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = os.urandom(3 * 1024 * 1024 + 7)  # spans several 1 MiB chunks
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------
# download_file


def test_good_download(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = tmp_path / "sub" / "model.onnx"
    result = _dl(f"{base}/good.bin", dest, progress=True)
    assert result == dest
    assert dest.read_bytes() == GOOD
    assert not _part(dest).exists()
    assert [r.user_agent for r in state.requests] == ["lrface"]
    assert state.requests[0].range is None


def test_uppercase_expected_hash_accepted(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, _ = server
    dest = _dl(f"{base}/good.bin", tmp_path / "m.onnx", GOOD_SHA.upper())
    assert dest.read_bytes() == GOOD


def test_no_hash_given(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, _ = server
    dest = _dl(f"{base}/other.bin", tmp_path / "o.bin", None)
    assert dest.read_bytes() == OTHER


def test_truncated_then_resumed(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = _dl(f"{base}/flaky.bin", tmp_path / "m.onnx")
    assert dest.read_bytes() == GOOD
    assert not _part(dest).exists()
    reqs = state.for_path("/flaky.bin")
    assert len(reqs) == 2
    half = len(GOOD) // 2
    assert reqs[1].range == f"bytes={half}-"
    assert reqs[1].sent == len(GOOD) - half


def test_truncated_then_server_ignores_range(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    """A 200 answer to a Range request restarts the file from zero."""
    base, state = server
    dest = _dl(f"{base}/flaky-norange.bin", tmp_path / "m.onnx")
    assert dest.read_bytes() == GOOD
    reqs = state.for_path("/flaky-norange.bin")
    assert len(reqs) == 2
    assert reqs[1].range is not None
    assert reqs[1].sent == len(GOOD)


def test_truncated_without_retries_keeps_part(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, _ = server
    dest = tmp_path / "m.onnx"
    with pytest.raises(ModelFileError, match="failed after 1 attempt"):
        _dl(f"{base}/flaky.bin", dest, retries=0)
    assert not dest.exists()
    assert _part(dest).read_bytes() == GOOD[: len(GOOD) // 2]
    # a later call resumes it
    assert _dl(f"{base}/flaky.bin", dest).read_bytes() == GOOD


def test_resume_existing_part(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = tmp_path / "m.onnx"
    half = len(GOOD) // 2
    _part(dest).write_bytes(GOOD[:half])
    _dl(f"{base}/good.bin", dest)
    assert dest.read_bytes() == GOOD
    assert not _part(dest).exists()
    (req,) = state.requests
    assert req.range == f"bytes={half}-"
    assert req.sent == len(GOOD) - half


def test_complete_part_gets_416_and_is_kept(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    """A .part that already holds the whole file is finished without a body transfer."""
    base, state = server
    dest = tmp_path / "m.onnx"
    _part(dest).write_bytes(GOOD)
    _dl(f"{base}/good.bin", dest)
    assert dest.read_bytes() == GOOD
    assert [r.sent for r in state.requests] == [0]


def test_oversized_part_is_discarded(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = tmp_path / "m.onnx"
    _part(dest).write_bytes(GOOD + b"junk")
    _dl(f"{base}/good.bin", dest)
    assert dest.read_bytes() == GOOD
    assert [r.range is not None for r in state.requests] == [True, False]


def test_wrong_hash(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, _ = server
    dest = tmp_path / "m.onnx"
    url = f"{base}/other.bin"
    with pytest.raises(ModelFileError) as info:
        _dl(url, dest)
    msg = str(info.value)
    assert url in msg
    assert GOOD_SHA in msg
    assert hashlib.sha256(OTHER).hexdigest() in msg
    assert "changed" in msg and "corrupted" in msg
    assert "\n" not in msg
    assert not dest.exists()
    assert not _part(dest).exists()


@pytest.mark.parametrize(("path", "code"), [("/missing", 404), ("/forbidden", 403)])
def test_client_error_no_retry(
    server: tuple[str, ServerState], tmp_path: Path, path: str, code: int
) -> None:
    base, state = server
    dest = tmp_path / "m.onnx"
    url = f"{base}{path}"
    with pytest.raises(ModelFileError) as info:
        _dl(url, dest, retries=3)
    msg = str(info.value)
    assert str(code) in msg and url in msg and "\n" not in msg
    assert len(state.requests) == 1
    assert not dest.exists() and not _part(dest).exists()


def test_server_error_retried_with_backoff(
    server: tuple[str, ServerState], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, state = server
    sleeps: list[float] = []
    monkeypatch.setattr(download.time, "sleep", sleeps.append)
    with pytest.raises(ModelFileError, match="500"):
        _dl(f"{base}/error500", tmp_path / "m.onnx", retries=2, backoff=1.0)
    assert len(state.requests) == 3
    assert sleeps == [1.0, 2.0]


def test_timeout_is_retried(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = _dl(f"{base}/slow.bin", tmp_path / "m.onnx", timeout=0.3, retries=1)
    assert dest.read_bytes() == GOOD
    assert len(state.for_path("/slow.bin")) == 2


def test_connection_refused(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # grab a free port, then close it: nobody listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ModelFileError, match="failed after 2 attempt"):
        _dl(f"http://127.0.0.1:{port}/x", tmp_path / "m.onnx", retries=1)


def test_existing_good_dest_makes_no_request(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    dest = tmp_path / "m.onnx"
    dest.write_bytes(GOOD)
    assert _dl(f"{base}/good.bin", dest) == dest
    assert state.requests == []


def test_existing_bad_dest_is_replaced(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    dest = tmp_path / "m.onnx"
    dest.write_bytes(b"stale")
    _dl(f"{base}/good.bin", dest)
    assert dest.read_bytes() == GOOD
    assert len(state.requests) == 1


def test_bad_expected_hash_argument(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="64 hex"):
        download_file("http://127.0.0.1:1/x", tmp_path / "m", "abc")


# --------------------------------------------------------------------------------------
# unpack_zip


def _names(paths: list[Path], root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in paths)


@pytest.mark.parametrize("nested", [True, False])
def test_unpack_insightface_layout(tmp_path: Path, nested: bool) -> None:
    prefix = "buffalo_l/" if nested else ""
    entries = {f"{prefix}{k}": v for k, v in PACK_FILES.items()}
    if nested:
        entries["__MACOSX/buffalo_l/._det_10g.onnx"] = b"junk"
    zip_path = tmp_path / "buffalo_l.zip"
    zip_path.write_bytes(_zip_bytes(entries))
    models = tmp_path / "models"
    paths = unpack_zip(zip_path, models)
    assert _names(paths, models) == ["buffalo_l/det_10g.onnx", "buffalo_l/w600k_r50.onnx"]
    for name, data in PACK_FILES.items():
        assert (models / "buffalo_l" / name).read_bytes() == data
    assert sorted(p.name for p in models.iterdir()) == ["buffalo_l"]  # no temp dirs left


def test_unpack_replaces_existing_pack(tmp_path: Path) -> None:
    zip_path = tmp_path / "buffalo_l.zip"
    zip_path.write_bytes(PACK_ZIP)
    models = tmp_path / "models"
    (models / "buffalo_l").mkdir(parents=True)
    (models / "buffalo_l" / "old.onnx").write_bytes(b"old")
    unpack_zip(zip_path, models)
    assert sorted(p.name for p in (models / "buffalo_l").iterdir()) == sorted(PACK_FILES)
    assert sorted(p.name for p in models.iterdir()) == ["buffalo_l"]


@pytest.mark.parametrize(
    "evil", ["../evil.onnx", "buffalo_l/../../evil.onnx", "/abs/evil.onnx", "C:/evil.onnx"]
)
def test_unpack_rejects_zip_slip(tmp_path: Path, evil: str) -> None:
    zip_path = tmp_path / "buffalo_l.zip"
    zip_path.write_bytes(_zip_bytes({"buffalo_l/det_10g.onnx": b"x", evil: b"evil"}))
    models = tmp_path / "out" / "models"
    with pytest.raises(LrfaceError, match="unsafe entry"):
        unpack_zip(zip_path, models)
    assert not (models / "buffalo_l").exists()
    assert not list(tmp_path.rglob("evil.onnx"))


def test_unpack_corrupt_zip(tmp_path: Path) -> None:
    zip_path = tmp_path / "buffalo_l.zip"
    zip_path.write_bytes(b"this is not a zip")
    with pytest.raises(ModelFileError, match="not a valid zip"):
        unpack_zip(zip_path, tmp_path / "models")


def test_download_then_unpack(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, _ = server
    sha = hashlib.sha256(PACK_ZIP).hexdigest()
    zip_path = _dl(f"{base}/buffalo_l.zip", tmp_path / "buffalo_l.zip", sha)
    models = tmp_path / ".insightface" / "models"
    paths = unpack_zip(zip_path, models)
    assert _names(paths, models) == ["buffalo_l/det_10g.onnx", "buffalo_l/w600k_r50.onnx"]
