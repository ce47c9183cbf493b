"""Options several commands share, as dataclass fields and mixins (the CLI parses them,
``lrface serve`` and the library read them).

Each field is one option (:func:`lrface.argconfig.arg`: its default, help text, metavar and
check are written here once).  Mixins: :class:`CommonOptions` (``--model-dir``, ``-v``),
:class:`DetectorOptions` (``--detector``, ``--det-thresh``), :class:`CropFlags` (those and
``--no-detect``, ``--crop-mode``, ``--face-index``; :meth:`CropFlags.crop_options` makes the
pipeline's :class:`~lrface.faces.pipeline.CropOptions`); field helpers for ``--json``,
``--quiet``, ``--workers``, ``--threshold``, ``--precision``; and the argparse types that
check values at parse time (argparse's usage line and ``error: argument ...``, exit 2).
One class per command: :mod:`lrface.cli.options` (and :mod:`lrface.serve.options`).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lrface.argconfig import arg
from lrface.io.validation import resource_error, resource_range

if TYPE_CHECKING:
    from lrface.faces.pipeline import CropOptions


# ---------------------------------------------------------------- argparse types


def finite_threshold(text: str) -> float:
    """argparse type for ``--threshold``: a finite cosine in [-1, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a cosine threshold in [-1, 1]")
    return value


def limited(name: str, number: type = int) -> Any:
    """argparse type for the resource option ``name``: an ``int`` (or ``float``) within
    its caps in :data:`lrface.io.validation.RESOURCE_LIMITS` (the one table of them)."""

    def parse(text: str) -> Any:
        try:
            value = number(text)
        except ValueError:
            what = "an integer" if number is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        why = resource_error(name, value)
        if why:
            raise argparse.ArgumentTypeError(why)
        return value

    return parse


def int_at_least(text: str, low: int) -> int:
    """argparse type: an integer >= ``low`` (options that are counts, not resources)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{text} is below {low}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return int_at_least(text, 0)


def at_most(name: str) -> str:
    """`` (at most N)`` for the help of the resource option ``name``."""
    return f" (at most {resource_range(name)[1]:g})"
def port_number(text: str) -> int:
    """argparse type: a TCP port, 1-65535."""
    value = int_at_least(text, 1)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (1-65535)")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


# ---------------------------------------------------------------- shared options

CROP_NOTE = (
    "Crops: every model (the teacher and the lrface students) expects a face aligned to the "
    "5-point ArcFace template at 112x112 (the students: that crop, reduced). Detected faces "
    "are aligned by their 5 landmarks (when the detector finds nothing it is retried on a "
    "grey-padded copy, then with the other detector); pre-cut crops (--no-detect) are read "
    "by --crop-mode (default auto: aligned by the landmarks found inside the crop, else "
    "embedded as a box crop)."
)


def json_flag(help: str = "print JSON instead of text") -> Any:
    return field(default=False, metadata=arg(help))


def quiet_flag() -> Any:
    return field(default=False, metadata=arg("no progress bars"))


def workers_option() -> Any:
    return field(
        default=2,
        metadata=arg(
            "decode/detect/align worker processes (default 2; 0 = none; at most 4 x CPUs = "
            f"{resource_range('workers')[1]:g}); started only for 64 or more images, fewer "
            "are prepared in this process",
            type=limited("workers"),
        ),
    )


def threshold_option(default: str) -> Any:
    return field(
        default=None,
        metadata=arg(f"cosine threshold in [-1, 1] (default: {default})", type=finite_threshold),
    )


def precision_option() -> Any:
    return field(
        default=None,
        metadata=arg(
            "int8: each recogniser's statically quantized copy (weights/NAME-int8.onnx, "
            "faster on CPUs; accuracy in benchmarks/RESULTS.md); fp32: the float model; "
            "default: the model as named",
            choices=("int8", "fp32"),
        ),
    )


def verbose_flag() -> Any:
    return field(default=False, metadata=arg("log progress and providers", short="-v"))


@dataclass(frozen=True, kw_only=True)
class Verbose:
    """Logging."""

    verbose: bool = verbose_flag()


@dataclass(frozen=True, kw_only=True)
class CommonOptions:
    """Common options."""

    model_dir: str | None = field(
        default=None, metadata=arg("extra directory searched first for model files")
    )
    verbose: bool = verbose_flag()


@dataclass(frozen=True, kw_only=True)
class DetectorOptions:
    """Face detection."""

    detector: str = field(
        default="auto",
        metadata=arg(
            "auto (default: scrfd-2.5g when installed, else the shipped yunet), scrfd-2.5g, "
            "scrfd-500m, scrfd-10g, yunet"
        ),
    )
    det_thresh: float | None = field(default=None, metadata=arg("detection score threshold"))


@dataclass(frozen=True, kw_only=True)
class CropFlags(DetectorOptions):
    """Face detection and crop."""

    detect: bool = field(
        default=True,
        metadata=arg(
            "inputs are pre-cut face crops (one face each, any size): do not detect faces in "
            "them as in photos; read each by --crop-mode",
            flag="--no-detect",
        ),
    )
    crop_mode: str = field(
        default="auto",
        metadata=arg(
            "with --no-detect: auto (default: look for the face's landmarks inside the "
            "grey-padded, enlarged crop and align by them; none found: embed it as a box "
            "crop), aligned (the crops are already aligned to the 5-point ArcFace template, "
            "as `lrface detect --save-crops` writes them: only resized) or box (embed each "
            "crop as a box crop, no landmarks); --json says per crop which was used",
            choices=("auto", "aligned", "box"),
        ),
    )
    face_index: int | None = field(
        default=None,
        metadata=arg("which face to use when several are found (0 = largest, the default)"),
    )

    def crop_options(self) -> CropOptions:
        """These options as the pipeline's (validated) ``CropOptions``; the crop size is
        the model's, set later."""
        from lrface.faces.pipeline import CropOptions

        return CropOptions(
            detect=self.detect,
            detector=self.detector,
            det_thresh=self.det_thresh,
            face_index=self.face_index,
            crop_mode=self.crop_mode,
        )
