"""A ``lrface serve`` running in a child process: started, waited for, stopped.

For tests, benchmarks and scripts that need a real server (a real uvicorn process
talking HTTP on a real socket).  The child runs in its own process group, so
:meth:`ServerProcess.stop` and :meth:`ServerProcess.kill` reach every worker uvicorn
started, by that group's id.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from lrface.errors import LrfaceError

__all__ = ["ServerProcess", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m lrface serve ARGS --host 127.0.0.1 --port PORT`` in a child process.

    ``args``: the other options of ``lrface serve``; ``env``: added to this process's
    environment; ``log``: file receiving the server's output (stdout and stderr).
    """

    def __init__(
        self,
        args: Sequence[str],
        log: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.args = [str(a) for a in args]
        self.log = Path(log)
        self.env = {**os.environ, **(env or {})}
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180.0) -> ServerProcess:
        """Start the server and wait until ``/healthz`` answers and every worker
        (``--workers``, default 1) has logged that its models are loaded; raises
        :class:`LrfaceError` with the log's last lines when it exits or does not answer
        within ``timeout`` seconds."""
        cmd = [sys.executable, "-m", "lrface", "serve", *self.args,
               "--host", "127.0.0.1", "--port", str(self.port)]  # fmt: skip
        workers = self._workers()
        offset = self.log.stat().st_size if self.log.is_file() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise LrfaceError(f"lrface serve exited with status {self.proc.returncode}: "
                                  f"{self.log_tail()}")  # fmt: skip
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200 and self._ready_workers(offset) >= workers:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.kill()
        raise LrfaceError(f"lrface serve did not answer within {timeout:g} s: {self.log_tail()}")

    def _workers(self) -> int:
        """The ``--workers`` count among this server's arguments (default 1)."""
        args = list(self.args)
        for i, a in enumerate(args[:-1]):
            if a == "--workers":
                return int(args[i + 1])
        return 1

    def _ready_workers(self, offset: int) -> int:
        """Workers that logged "ready, models loaded" after byte ``offset`` of the log."""
        try:
            with open(self.log, "rb") as fh:
                fh.seek(offset)
                return fh.read().count(b"ready, models loaded")
        except OSError:
            return 0

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the server's output."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def pids(self) -> list[int]:
        """The server's process and its worker processes (Linux: from /proc)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        found = [self.proc.pid]
        for pid in found:
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            found.extend(int(c) for c in children)
        return found

    def rss_bytes(self) -> int:
        """Resident memory of the server and its workers together, in bytes (Linux)."""
        total = 0
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        return total

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the server's process group (graceful), SIGKILL after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL to the server's process group (``kill -9``: no cleanup runs)."""
        if self.proc is None:
            return
        self._signal(signal.SIGKILL)
        self.proc.wait()

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)  # the group start_new_session created
