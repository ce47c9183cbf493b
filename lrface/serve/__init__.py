"""``lrface serve``: the library as an HTTP service a team can put behind its cameras.

Modules, one job each:

* :mod:`~lrface.serve.auth`: the API key (file or ``$LRFACE_API_KEY``), compared in
  constant time; no key, no non-loopback address.
* :mod:`~lrface.serve.limits`: the ASGI guard in front of the app (API key checked and
  request body counted *before* the body is read) and the per-request :class:`Deadline`.
* :mod:`~lrface.serve.store`: the gallery on disk, shared by every worker: writes
  serialized by a lock file, written atomically (temporary file, fsync, rename, directory
  fsync), re-read by a worker when another one changed it.
* :mod:`~lrface.serve.turns`: a worker's inference turn, granted first come, first served.
* :mod:`~lrface.serve.engine`: the models of one worker and the work of each endpoint
  (run in a thread, one request at a time per worker).
* :mod:`~lrface.serve.app`: the FastAPI app (routes, JSON errors, the operator page).
* :mod:`~lrface.serve.server`: checks, then uvicorn with ``--workers`` processes.
* :mod:`~lrface.serve.process`: a server in a child process (tests, benchmarks, scripts).
* ``static/``: the operator page served at ``/`` (HTML + JS, no build step).

Needs the ``serve`` extra: ``pip install "lrface[serve]"`` (FastAPI, uvicorn,
python-multipart).
"""
