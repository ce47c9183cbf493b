"""Limits of ``lrface serve``: the ASGI guard in front of the app, and per-request deadlines.

:class:`RequestGuard` runs before FastAPI sees a request: it answers 401 to a request
without the API key and 413 to one whose declared ``Content-Length`` is above the limit,
both *before* the body is read, counts the bytes of a body sent without a length (chunked)
and stops it at the limit (413), and adds the security headers to every response.

:class:`Deadline` is the per-request timeout.  Work in a thread cannot be interrupted, so
the deadline is checked before each step (waiting for the worker's models, each image,
the gallery write): a request past its deadline stops at the next step with 503, and a
gallery write is never started after it -- a 503 means nothing was written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from lrface.serve.auth import key_matches, presented_key

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths served without the API key: the operator page (it asks for the key), its files,
#: the health check and the API documentation.
OPEN_PATHS = frozenset({"/", "/healthz", "/docs", "/docs/oauth2-redirect", "/redoc",
                        "/openapi.json", "/favicon.ico"})  # fmt: skip
OPEN_PREFIXES = ("/static/",)
#: Pages that load FastAPI's documentation scripts (no Content-Security-Policy there).
DOC_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
CSP = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]

__all__ = ["Deadline", "RequestGuard", "RequestTimeout"]


class RequestTimeout(Exception):
    """A request ran past its deadline (answered 503; nothing was written)."""


class Deadline:
    """``seconds`` from now; :meth:`check` raises :class:`RequestTimeout` once passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.end = time.monotonic() + self.seconds

    def remaining(self) -> float:
        """Seconds left (0 when passed)."""
        return max(0.0, self.end - time.monotonic())

    def check(self, step: str) -> None:
        """Raise :class:`RequestTimeout` naming ``step`` if the deadline has passed."""
        if time.monotonic() > self.end:
            raise self.timeout(step)

    def timeout(self, step: str) -> RequestTimeout:
        """The :class:`RequestTimeout` of a request stopped before ``step``."""
        return RequestTimeout(
            f"the request ran past the server's {self.seconds:g} s limit before {step}; "
            "nothing was written; retry later or send fewer or smaller images"
        )


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class RequestGuard:
    """ASGI middleware: API key, request-body limit, security headers (module docstring).

    ``api_key`` None serves without a key (``--no-auth``, loopback only); ``max_body``:
    the most bytes a request body may have.
    """

    def __init__(self, app: ASGIApp, api_key: str | None, max_body: int) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body = int(max_body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        send = self._with_headers(send, path)
        headers = scope.get("headers", [])
        if self.api_key is not None and not _is_open(path):
            given = presented_key(headers)
            if not key_matches(given, self.api_key):
                why = "missing API key" if given is None else "invalid API key"
                await _reply(send, 401, f"{why}: send it as 'Authorization: Bearer KEY' or "
                             "'X-API-Key: KEY'", [(b"www-authenticate", b"Bearer")])  # fmt: skip
                return
        length = _content_length(headers)
        if length == -1:
            await _reply(send, 400, "malformed Content-Length header")
            return
        if length is not None and length > self.max_body:
            await _reply(send, 413, self._too_large(length))
            return
        await self.app(scope, self._counting(receive), send)

    def _too_large(self, n: int | None) -> str:
        size = "the request body" if n is None else f"the request body ({n / 2**20:.1f} MB)"
        return (
            f"{size} is above the server's {self.max_body / 2**20:g} MB limit "
            "(--max-body-mb); send smaller or fewer images"
        )

    def _counting(self, receive: Receive) -> Receive:
        """``receive`` that stops a body growing past the limit (413, raised in the app)."""
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise HTTPException(413, self._too_large(None))
            return message

        return counted

    @staticmethod
    def _with_headers(send: Send, path: str) -> Send:
        """``send`` adding the security headers to the response start."""

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = list(_HEADERS)
                if path not in DOC_PATHS:
                    extra.append((b"content-security-policy", CSP.encode()))
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        return sending


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The declared body length, None when absent, -1 when malformed."""
    for name, value in headers:
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else -1
    return None


async def _reply(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send a JSON error ``{"error": message}`` with ``status``."""
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
