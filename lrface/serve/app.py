"""The FastAPI app of ``lrface serve``: routes, JSON errors, the operator page.

:func:`create_app` builds the app of one worker; :func:`app_from_env` is the factory
uvicorn calls in each worker process (the options travel in ``$LRFACE_SERVE_OPTIONS``;
the API key is read again from its file or ``$LRFACE_API_KEY``, never passed around).

Every answer is JSON.  Errors are ``{"error": "<one line>"}``: 400 malformed request,
401 missing or wrong API key, 404 unknown identity or path, 409 no gallery configured,
413 body above ``--max-body-mb``, 422 a request the library refuses (unreadable image,
image above ``--max-pixels``, no face found, bad option value: the CLI's message), 503
past ``--timeout`` (nothing written), 500 a bug (logged with its traceback on the server,
never sent).  Images come only as multipart file uploads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from lrface import __version__
from lrface.errors import LrfaceError, ModelFileError
from lrface.io.fileio import jsonable
from lrface.serve.auth import load_api_key
from lrface.serve.engine import CropRequest, Engine, NoGallery, NotEnrolled, Upload
from lrface.serve.limits import Deadline, RequestGuard, RequestTimeout
from lrface.serve.options import ServeOptions

log = logging.getLogger("lrface.serve")

#: Environment variable carrying the options (JSON) to uvicorn's worker processes.
OPTIONS_ENV = "LRFACE_SERVE_OPTIONS"
STATIC = Path(__file__).with_name("static")
#: Longest upload file name kept (it names the image in answers and in the gallery).
MAX_NAME_CHARS = 100

__all__ = ["OPTIONS_ENV", "app_from_env", "create_app"]

DESCRIPTION = (
    "Face verification, embedding and watchlist search for low-resolution faces "
    "(lrface). Send the API key as `Authorization: Bearer KEY` or `X-API-Key: KEY`; "
    'images as multipart file uploads. Errors are `{"error": "..."}`.'
)


def app_from_env() -> FastAPI:
    """The app of one uvicorn worker, from ``$LRFACE_SERVE_OPTIONS`` (set by
    :func:`lrface.serve.server.run_server`)."""
    options = ServeOptions(**json.loads(os.environ[OPTIONS_ENV]))
    key, _ = load_api_key(options.api_key_file)
    return create_app(options, key)


def create_app(options: ServeOptions, api_key: str | None) -> FastAPI:
    """The app of one worker: ``options`` (:class:`lrface.serve.options.ServeOptions`),
    ``api_key`` (None: serve without one; :func:`lrface.serve.server.run_server` allows
    that on loopback addresses only).  Models load when the app starts (lifespan)."""
    engine = Engine(options)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # on the inference thread, as every request: its allocations stay in one place
        loaded = await asyncio.wrap_future(engine.executor.submit(engine.warm_up))
        logging.getLogger("uvicorn.error").info(
            "lrface serve: worker %d ready, models loaded: %s", os.getpid(), ", ".join(loaded)
        )
        yield
        engine.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="lrface", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.engine = engine
    app.add_middleware(RequestGuard, api_key=api_key, max_body=int(options.max_body_mb * 2**20))
    _add_error_handlers(app)
    _add_routes(app, engine, options)
    return app


# ---------------------------------------------------------------------- errors


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    async def lrface_error(request: Request, exc: Exception) -> JSONResponse:
        status = 422
        if isinstance(exc, NotEnrolled):
            status = 404
        elif isinstance(exc, NoGallery):
            status = 409
        elif isinstance(exc, ModelFileError):
            status = 500
        return _error(status, str(exc))

    async def timeout(request: Request, exc: Exception) -> JSONResponse:
        return _error(503, str(exc), {"Retry-After": "1"})

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        detail = str(exc.detail)
        if exc.status_code == 400:
            why = "" if "parsing the body" in detail else f" ({detail.rstrip('.')})"
            detail = (
                f"malformed request body{why}; send multipart/form-data with the images as "
                "file fields"
            )
        return _error(exc.status_code, detail, exc.headers)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        parts = []
        for e in exc.errors()[:3]:
            loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path")]
            parts.append(f"{'.'.join(loc) or 'request'}: {e.get('msg', 'invalid')}")
        return _error(422, "; ".join(parts) or "invalid request")

    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    app.add_exception_handler(LrfaceError, lrface_error)
    app.add_exception_handler(RequestTimeout, timeout)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, bug)


# ---------------------------------------------------------------------- uploads


def clean_name(filename: str | None, fallback: str) -> str:
    """The name an upload goes by: the client's file name without directories or control
    characters, at most :data:`MAX_NAME_CHARS` characters (``fallback`` when empty)."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if c.isprintable()).strip()[:MAX_NAME_CHARS]
    return base or fallback


async def _read(files: list[UploadFile], field: str, limit: int) -> list[Upload]:
    if len(files) > limit:
        raise LrfaceError(
            f"{field}: {len(files)} images, more than this server's {limit} per request "
            "(--max-files); send them in several requests"
        )
    names = [field] if len(files) == 1 else [f"{field}[{i}]" for i in range(len(files))]
    return [Upload(clean_name(f.filename, n), await f.read()) for f, n in zip(files, names)]


async def _run(
    engine: Engine,
    deadline: Deadline,
    fn: Callable[..., dict[str, Any]],
    *args: Any,
    **kwargs: Any,
) -> JSONResponse:
    """``fn(*args, **kwargs)`` (``fn`` checks ``deadline`` itself) on the worker's
    inference thread (:attr:`Engine.executor`: never on the event loop; requests run in
    arrival order), as JSON.  A request still queued at ``deadline`` is taken out of the
    queue and answered 503 (it never started: nothing done); one already running finishes
    under its own deadline checks."""
    job = engine.executor.submit(fn, *args, **kwargs)
    result = asyncio.wrap_future(job)
    try:
        out = await asyncio.wait_for(asyncio.shield(result), deadline.remaining())
    except TimeoutError:
        if job.cancel():
            raise deadline.timeout("the worker was free (other requests)") from None
        out = await result
    return JSONResponse(jsonable(out))


# ---------------------------------------------------------------------- routes

Image = Annotated[UploadFile, File(description="an image file (JPEG, PNG, WebP, ...)")]
Images = Annotated[list[UploadFile], File(description="one or more image files")]
Detect = Annotated[
    bool, Form(description="false: the images are pre-cut aligned face crops (CLI --no-detect)")
]
CropMode = Annotated[
    str,
    Form(
        description="with detect=false, how a crop is read (CLI --crop-mode): auto "
        "(default: aligned by the landmarks found inside it, else a box crop), aligned, box"
    ),
]
DetectorName = Annotated[str | None, Form(description="detector (default: server's --detector)")]
DetThresh = Annotated[float | None, Form(description="detection score threshold in (0, 1)")]
FaceIndex = Annotated[int | None, Form(description="which face, 0 = largest (default)")]
Threshold = Annotated[
    float | None, Form(description="cosine threshold in [-1, 1] (default: the calibrated one)")
]
Model = Annotated[str | None, Form(description="recogniser name (GET /models)")]
PER_FACE_MODEL = (
    "one recogniser for every face, as CLI --model (default: each face by the model verify "
    "would choose, lrface.choose_model; each answer names the model of each face)"
)
Crops = Annotated[
    bool, Form(description="also return each face's aligned crop as a PNG data URL (crop_png)")
]


def _add_routes(app: FastAPI, engine: Engine, options: ServeOptions) -> None:
    deadline = lambda: Deadline(options.timeout)  # noqa: E731

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", summary="liveness: the worker is up and its models are loaded")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    @app.get("/models", summary="the models (as `lrface models list --json`, without paths)")
    async def models() -> JSONResponse:
        from lrface.models.registry import model_rows

        rows = [{k: v for k, v in row.items() if k != "path"} for row in model_rows()]
        return JSONResponse(jsonable(rows))

    @app.post("/verify", summary="same person or not (as `lrface verify --json`)")
    async def verify(
        image1: Image,
        image2: Image,
        model: Model = None,
        threshold: Threshold = None,
        detect: Detect = True,
        crop_mode: CropMode = "auto",
        face_index: FaceIndex = None,
        face_index1: FaceIndex = None,
        face_index2: FaceIndex = None,
        detector: DetectorName = None,
        det_thresh: DetThresh = None,
        crops: Crops = False,
    ) -> JSONResponse:
        d = deadline()
        u1, u2 = (await _read([image1], "image1", 1))[0], (await _read([image2], "image2", 1))[0]
        crop = CropRequest(detect, detector, det_thresh, face_index, crop_mode)
        return await _run(
            engine,
            d,
            engine.verify,
            (u1, u2),
            crop,
            d,
            model=model,
            threshold=threshold,
            face_index1=face_index1,
            face_index2=face_index2,
            crops=crops,
        )

    @app.post("/detect", summary="the faces of one image (as `lrface detect --json`)")
    async def detect_faces(
        image: Image, detector: DetectorName = None, det_thresh: DetThresh = None
    ) -> JSONResponse:
        d = deadline()
        (up,) = await _read([image], "image", 1)
        return await _run(engine, d, engine.detect, up, CropRequest(True, detector, det_thresh), d)

    @app.post("/embed", summary="one embedding per image (the CLI's crop modes)")
    async def embed(
        images: Images,
        model: Annotated[str | None, Form(description=PER_FACE_MODEL)] = None,
        detect: Detect = True,
        crop_mode: CropMode = "auto",
        face_index: FaceIndex = None,
        detector: DetectorName = None,
        det_thresh: DetThresh = None,
        crops: Crops = False,
    ) -> JSONResponse:
        d = deadline()
        ups = await _read(images, "images", options.max_files)
        crop = CropRequest(detect, detector, det_thresh, face_index, crop_mode)
        return await _run(engine, d, engine.embed, ups, crop, d, model=model, crops=crops)

    @app.post(
        "/identify",
        summary="top-k identities per probe with the open-set decision "
        "(results as `lrface identify --json`)",
    )
    async def identify(
        images: Images,
        model: Annotated[str | None, Form(description=PER_FACE_MODEL)] = None,
        threshold: Annotated[
            float | None,
            Form(
                description="cosine threshold in [-1, 1] (default: each probe model's "
                "calibrated threshold against the gallery, as the CLI)"
            ),
        ] = None,
        top_k: Annotated[int, Form(description="candidates per probe (default 5)")] = 5,
        detect: Detect = True,
        crop_mode: CropMode = "auto",
        face_index: FaceIndex = None,
        detector: DetectorName = None,
        det_thresh: DetThresh = None,
        crops: Crops = False,
    ) -> JSONResponse:
        d = deadline()
        _check_threshold(threshold)
        ups = await _read(images, "images", options.max_files)
        crop = CropRequest(detect, detector, det_thresh, face_index, crop_mode)
        return await _run(
            engine,
            d,
            engine.identify,
            ups,
            crop,
            d,
            model=model,
            threshold=threshold,
            top_k=top_k,
            crops=crops,
        )

    @app.get("/gallery/identities", summary="the enrolled identities and their image counts")
    async def identities() -> JSONResponse:
        d = deadline()
        return await _run(engine, d, engine.identities, d)

    @app.post("/gallery/identities", summary="enrol images under an identity (all or nothing)")
    async def enrol(
        identity: Annotated[str, Form(description="the identity's label")],
        images: Images,
        detect: Detect = True,
        crop_mode: CropMode = "auto",
        face_index: FaceIndex = None,
        detector: DetectorName = None,
        det_thresh: DetThresh = None,
    ) -> JSONResponse:
        d = deadline()
        ups = await _read(images, "images", options.max_files)
        crop = CropRequest(detect, detector, det_thresh, face_index, crop_mode)
        return await _run(engine, d, engine.enrol, identity, ups, crop, d)

    @app.delete("/gallery/identities/{identity:path}", summary="remove an identity and its images")
    async def remove(identity: str) -> JSONResponse:
        d = deadline()
        return await _run(engine, d, engine.remove, identity, d)


def _check_threshold(threshold: float | None) -> None:
    """The CLI's ``--threshold`` check: a finite cosine in [-1, 1]."""
    import math

    if threshold is not None and not (math.isfinite(threshold) and -1 <= threshold <= 1):
        raise LrfaceError(f"threshold {threshold}: must be a cosine between -1 and 1")
