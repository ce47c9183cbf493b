"""``lrface serve``: check the configuration, then run uvicorn with ``--workers`` processes.

Everything that can be refused is refused here, before a socket is bound, with one
``error:`` line (exit status 2): the serve extra missing, no API key (or ``--no-auth`` on a
non-loopback address), a bad key file, an unknown detector, a gallery that cannot be
opened or created.  Each worker process then builds its app
(:func:`lrface.serve.app.app_from_env`) and loads its models once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

from lrface.errors import LrfaceError
from lrface.serve.options import ServeOptions

SERVE_EXTRA = 'pip install "lrface[serve]"'

__all__ = ["check_options", "run_server"]


def check_options(options: ServeOptions) -> tuple[ServeOptions, str | None]:
    """``(options with absolute paths, API key or None)`` after every check of the module
    docstring; prints the key file's permission warning, if any, on stderr.  The gallery
    ``.npz`` is created empty when missing (under its lock)."""
    from lrface.faces.pipeline import CropOptions
    from lrface.serve.auth import check_bind, load_api_key
    from lrface.serve.store import GalleryStore

    key, warning = load_api_key(options.api_key_file)
    check_bind(options.host, key, options.no_auth)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    CropOptions(detector=options.detector, det_thresh=options.det_thresh)  # validates
    absolute = dataclasses.replace(
        options,
        gallery=str(Path(options.gallery).resolve()) if options.gallery else None,
        api_key_file=str(Path(options.api_key_file).resolve()) if options.api_key_file else None,
    )
    if absolute.gallery:
        GalleryStore(absolute.gallery, absolute.gallery_model, absolute.aggregate).prepare()
    return absolute, key


def run_server(options: ServeOptions) -> int:
    """Serve until interrupted; returns the exit status (0)."""
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401  (FastAPI's form parser)
        import uvicorn
    except ImportError as exc:
        raise LrfaceError(f"lrface serve needs {exc.name}: {SERVE_EXTRA}") from None
    from lrface.serve.app import OPTIONS_ENV

    checked, _ = check_options(options)
    os.environ[OPTIONS_ENV] = json.dumps(dataclasses.asdict(checked))
    uvicorn.run(
        "lrface.serve.app:app_from_env",
        factory=True,
        host=checked.host,
        port=checked.port,
        workers=checked.workers,
        log_level="debug" if checked.verbose else "info",
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
    )
    return 0
