"""``lrface serve``'s options (:class:`ServeOptions`), read by the CLI parser and the app."""

from __future__ import annotations

from dataclasses import dataclass, field

from lrface.argconfig import arg
from lrface.models.defaults import DEFAULTS
from lrface.options import CommonOptions, DetectorOptions, port_number, positive_float, positive_int


@dataclass(frozen=True, kw_only=True)
class ServeOptions(DetectorOptions, CommonOptions):
    """``lrface serve``: the HTTP service (:mod:`lrface.serve`).  ``--detector`` and
    ``--det-thresh`` are the defaults of requests that name none."""

    host: str = field(
        default="127.0.0.1",
        metadata=arg(
            "address to bind (default 127.0.0.1: this machine only); any other address "
            "needs an API key"
        ),
    )
    port: int = field(default=8000, metadata=arg("TCP port (default 8000)", type=port_number))
    workers: int = field(
        default=1,
        metadata=arg(
            "worker processes, each with its own models (default 1)", type=positive_int
        ),
    )
    gallery: str | None = field(
        default=None,
        metadata=arg(
            "watchlist for /identify and /gallery: an .npz (created empty if missing) or an "
            "IVF directory (`lrface gallery build`); default: none (those endpoints answer 409)"
        ),
    )
    gallery_model: str = field(
        default=DEFAULTS.teacher,
        metadata=arg(
            f"recogniser of a new --gallery .npz (default {DEFAULTS.teacher}, as `lrface "
            "gallery build`); an existing gallery keeps its own"
        ),
    )
    aggregate: str = field(
        default="mean",
        metadata=arg(
            "matching of a new --gallery .npz: mean (default) or all, as `lrface gallery build`",
            choices=("mean", "all"),
        ),
    )
    api_key_file: str | None = field(
        default=None,
        metadata=arg(
            "file holding the API key (one line, 16+ characters); default: $LRFACE_API_KEY",
            metavar="FILE",
        ),
    )
    no_auth: bool = field(
        default=False,
        metadata=arg("serve without an API key (refused unless --host is a loopback address)"),
    )
    max_body_mb: float = field(
        default=20.0,
        metadata=arg("largest request body in MB (default 20)", type=positive_float),
    )
    max_pixels: int = field(
        default=25_000_000,
        metadata=arg(
            "largest image in pixels, checked from its header before decoding (default "
            "25000000)",
            type=positive_int,
        ),
    )
    max_files: int = field(
        default=16,
        metadata=arg("most images in one request (default 16)", type=positive_int),
    )
    timeout: float = field(
        default=30.0,
        metadata=arg(
            "seconds a request may take, waiting for the worker included (default 30)",
            type=positive_float,
        ),
    )
