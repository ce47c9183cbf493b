"""The API key of ``lrface serve``: where it comes from, how a request presents it.

The key is read from ``--api-key-file`` or, without one, from ``$LRFACE_API_KEY``; it must
be at least :data:`MIN_KEY_CHARS` printable ASCII characters without spaces.  A request
presents it as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; it is compared with
:func:`hmac.compare_digest` (constant time).  Serving without a key needs ``--no-auth``,
which is refused unless the bound address is a loopback one.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from lrface.errors import LrfaceError

#: Environment variable holding the API key when no ``--api-key-file`` is given.
KEY_ENV = "LRFACE_API_KEY"
#: Shortest accepted key.
MIN_KEY_CHARS = 16

__all__ = ["KEY_ENV", "MIN_KEY_CHARS", "check_bind", "is_loopback", "key_matches", "load_api_key"]


def load_api_key(key_file: str | None) -> tuple[str | None, str | None]:
    """``(key, warning)``: the key from ``key_file``, else ``$LRFACE_API_KEY``, else None;
    ``warning`` is a line to print when the key file is readable by other users.

    Raises :class:`LrfaceError` for a key file that cannot be read, or a key that is
    empty, shorter than :data:`MIN_KEY_CHARS` or not printable ASCII without spaces.
    """
    warning = None
    if key_file is not None:
        path = Path(key_file)
        try:
            text = path.read_text(encoding="ascii")
            mode = path.stat().st_mode
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or "not ASCII text"
            raise LrfaceError(
                f"{key_file}: cannot read the API key file ({why}); write the key there as "
                "one line, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))' "
                f"> {key_file}`"
            ) from None
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            warning = f"{key_file}: the API key file is readable by other users; chmod 600 it"
        where, key = key_file, text.strip()
    else:
        where, key = f"${KEY_ENV}", os.environ.get(KEY_ENV, "").strip()
        if not key:
            return None, None
    _check_key(key, where)
    return key, warning


def _check_key(key: str, where: str) -> None:
    if not key:
        raise LrfaceError(
            f"{where}: the API key is empty; write a key of {MIN_KEY_CHARS}+ characters"
        )
    if not all(33 <= ord(c) <= 126 for c in key):
        raise LrfaceError(
            f"{where}: the API key must be printable ASCII without spaces (it travels in an "
            "HTTP header); generate one with `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`"
        )
    if len(key) < MIN_KEY_CHARS:
        raise LrfaceError(
            f"{where}: the API key has {len(key)} characters, fewer than {MIN_KEY_CHARS}; "
            "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, key: str | None, no_auth: bool) -> None:
    """Refuse a configuration that would serve without a key where it must not.

    Without a key ``--no-auth`` is required, and only on a loopback ``host``; ``--no-auth``
    together with a key is refused as contradictory (no silently ignored option).
    """
    if no_auth and key is not None:
        raise LrfaceError(
            "--no-auth was given but an API key is set (--api-key-file or $LRFACE_API_KEY); "
            "drop one of them"
        )
    if key is None and not no_auth:
        raise LrfaceError(
            f"no API key: put one in a file and pass --api-key-file FILE, or set ${KEY_ENV}; "
            "(--no-auth serves without one, on a loopback --host only)"
        )
    if key is None and not is_loopback(host):
        raise LrfaceError(
            f"--host {host}: refusing to serve a non-loopback address without an API key; "
            f"pass --api-key-file FILE or set ${KEY_ENV}"
        )


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key a request presents (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``;
    ASGI raw headers), or None."""
    for name, value in headers:
        n = name.lower()
        if n == b"x-api-key":
            return value.decode("latin-1").strip()
        if n == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return None


def key_matches(given: str | None, key: str) -> bool:
    """Constant-time comparison of a presented key with the server's."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("latin-1", "replace"), key.encode("ascii"))
