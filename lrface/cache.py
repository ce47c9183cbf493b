"""Where lrface keeps derived data (landmarks, aligned crops, cached embeddings)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir() -> Path:
    """``$LRFACE_CACHE`` or ``~/.cache/lrface`` (created on demand)."""
    d = Path(os.environ.get("LRFACE_CACHE", "~/.cache/lrface")).expanduser()
    d.mkdir(parents=True, exist_ok=True)
    return d


def digest(*parts: object, n: int = 16) -> str:
    """Short stable hex digest of the string forms of ``parts`` (cache keys)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:n]
