"""The one place that validates API arguments and embedding matrices (scikit-learn's
``check_array`` habit), and the one table of resource-option caps (:data:`RESOURCE_LIMITS`,
:func:`check_resource`).

* Embedding matrices: every public function that takes embeddings
  (:func:`lrface.search.exact.search`, galleries, IVF galleries, the metrics of
  :mod:`lrface.eval.metrics`) passes them through :func:`check_embeddings` first, so a
  wrong shape, dtype, dimension, NaN or an unnormalised row is refused the same way
  everywhere: one :class:`LrfaceError` line naming the argument and the fix.
* Image arrays: :func:`check_image_array` (behind :func:`lrface.io.images.read_image`, so
  behind ``verify``/``detect``/``embed``): a wrong dtype raises
  :class:`~lrface.errors.ImageTypeError` (a ``TypeError``), a wrong shape, an empty or
  oversized array or pixel values that are not 8-bit raise
  :class:`~lrface.errors.ImageValueError` (a ``ValueError``).
* Scalars: :func:`check_number`, :func:`check_index`, :func:`check_flag`,
  :func:`check_model_name`: a wrong type
  (a string, a bool where a number is expected, None) raises
  :class:`~lrface.errors.ArgumentTypeError` (a ``TypeError``), NaN, infinity or a value
  out of range :class:`~lrface.errors.ArgumentValueError` (a ``ValueError``).

All of them are :class:`LrfaceError` subclasses: one line naming the argument and the fix
(the CLI prints it and exits with status 2).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from lrface.errors import (
    ArgumentTypeError,
    ArgumentValueError,
    ImageTypeError,
    ImageValueError,
    LrfaceError,
)


def is_int(x: object) -> bool:
    """True for a Python or numpy integer, False for anything else (``bool`` included)."""
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def check_positive_int(value: object, name: str) -> int:
    """``value`` as an int if it is an integer >= 1, else a one-line :class:`LrfaceError`
    naming ``name``."""
    if not is_int(value) or value < 1:  # type: ignore[operator]
        raise LrfaceError(f"{name} must be a positive integer, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def _cpus() -> int:
    return os.cpu_count() or 1


#: The documented caps of resource options, the one table the CLI (argparse types in
#: :mod:`lrface.cli.options`) and the API (:func:`check_resource`) use; listed in the
#: README's "Exit status and limits".  name -> (lowest, highest or a function of this
#: machine giving it, what the highest is).
RESOURCE_LIMITS: dict[str, tuple[float, float | Callable[[], float], str]] = {
    "workers": (0, lambda: 4 * _cpus(), "worker processes (4 x this machine's CPUs)"),
    "batch_size": (1, 4096, "crops per inference batch"),
    "shard_size": (1, 16384, "files per shard (held in memory while embedded)"),
    "ray_actors": (1, 1024, "Ray actors"),
    "ray_cpus_per_actor": (0, 1024, "CPUs per Ray actor"),
    "ray_gpus_per_actor": (0, 64, "GPUs per Ray actor"),
    "part_size": (1, 1_000_000, "rows per IVF part file (held in memory while encoded)"),
    "nlist": (1, 65536, "IVF inverted lists"),
    "nprobe": (1, 65536, "IVF lists visited per probe"),
    "top_k": (1, 1000, "candidates per probe"),
    "size": (1, 1024, "pixels per crop side"),
    "threads": (1, lambda: 4 * _cpus(), "torch threads (4 x this machine's CPUs)"),
}


def resource_range(name: str) -> tuple[float, float]:
    """``(lowest, highest)`` allowed for the resource option ``name`` on this machine."""
    low, high, _ = RESOURCE_LIMITS[name]
    return low, high() if callable(high) else high


def resource_error(name: str, value: object) -> str | None:
    """None if ``value`` is allowed for the resource option ``name``
    (:data:`RESOURCE_LIMITS`), else why not: one line with the allowed range and what
    its upper end is."""
    low, high = resource_range(name)
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return f"must be a number in [{low:g}, {high:g}], got {value!r}"
    if not math.isfinite(float(value)) or value < low:
        return f"{value!r} is below {low:g}"
    if value > high:
        what = RESOURCE_LIMITS[name][2]
        return f"{value!r} is above the limit of {high:g} {what}; use {high:g} or less"
    return None


def check_resource(name: str, value: object, option: str | None = None) -> Any:
    """``value`` if it is within the limits of the resource option ``name``
    (:data:`RESOURCE_LIMITS`), else :class:`LrfaceError` naming ``option`` (default:
    ``name``), the allowed range and what its upper end is."""
    why = resource_error(name, value)
    if why:
        raise LrfaceError(f"{option or name}: {why}")
    return value


def _is_real(x: object) -> bool:
    """True for a Python/numpy int or float (``bool`` and ``np.bool_`` excluded)."""
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(
        x, bool | np.bool_
    )


def check_number(
    value: object,
    name: str,
    lo: float,
    hi: float,
    *,
    open_lo: bool = False,
    open_hi: bool = False,
) -> float:
    """``value`` as a float if it is a real number, finite, in [lo, hi] (an end open
    when ``open_lo``/``open_hi``).

    Raises :class:`ArgumentTypeError` (``TypeError``) for anything but an int or float
    (a string such as ``"0.3"``, ``True``, None, an array), :class:`ArgumentValueError`
    (``ValueError``) for NaN, infinity or a value out of range; one line naming ``name``.
    """
    ends = {(True, True): " (exclusive)", (False, False): ""}.get((open_lo, open_hi))
    span = f"between {lo:g} and {hi:g}" + (ends if ends is not None else " (one end open)")
    if not _is_real(value):
        raise ArgumentTypeError(
            f"{name} must be a number {span}, got {type(value).__name__} {value!r:.40}"
        )
    v = float(value)  # type: ignore[arg-type]
    inside = (lo < v if open_lo else lo <= v) and (v < hi if open_hi else v <= hi)
    if not (math.isfinite(v) and inside):
        raise ArgumentValueError(f"{name} must be a number {span}, got {v!r}")
    return v


def check_index(value: object, name: str) -> int | None:
    """``value`` as an int if it is an integer >= 0 (not a bool), None for None; else
    :class:`ArgumentTypeError` (not an integer) or :class:`ArgumentValueError` (negative)."""
    if value is None:
        return None
    if not is_int(value):
        raise ArgumentTypeError(
            f"{name} must be an integer >= 0, got {type(value).__name__} {value!r:.40}"
        )
    if value < 0:  # type: ignore[operator]
        raise ArgumentValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def check_model_name(value: object, name: str = "model") -> str:
    """``value`` as a str if it is a non-empty model name or card/weights path (str or
    ``os.PathLike``); else :class:`ArgumentTypeError` (another type: ``0`` is not a
    model) or :class:`ArgumentValueError` (an empty name)."""
    if not isinstance(value, str | os.PathLike):
        raise ArgumentTypeError(
            f"{name} must be a model name or a card path, got {type(value).__name__} "
            f"{value!r:.40}; see `lrface models list`"
        )
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip():
        raise ArgumentValueError(f"{name} must be a model name or a card path, got {text!r:.40}")
    return text


def check_flag(value: object, name: str) -> bool:
    """``value`` as a bool if it is ``True``/``False`` (or a numpy bool); anything else
    (``"no"``, 0, None) raises :class:`ArgumentTypeError`."""
    if not isinstance(value, bool | np.bool_):
        raise ArgumentTypeError(f"{name} must be True or False, got {value!r:.40}")
    return bool(value)


def check_image_array(arr: np.ndarray, name: str, max_pixels: int) -> np.ndarray:
    """Validate an image array and return it as uint8, shape unchanged.

    Accepted: ``(H, W)`` grey, ``(H, W, 1)``, ``(H, W, 3)`` BGR or ``(H, W, 4)`` BGRA,
    H, W >= 1 and H * W <= ``max_pixels``; dtype uint8, or finite floats (all in [0, 1]:
    scaled by 255; else all in 0..255, rounded).  Other integer dtypes are refused, not
    clipped: a uint16 array may be a 16-bit image (0..65535) or 8-bit values in a wider
    type, and only the caller knows which.  ``name`` labels the array in messages.

    Raises :class:`ImageTypeError` (``TypeError``) for another dtype (uint16 and other
    integers, bool, object, complex, strings), :class:`ImageValueError` (``ValueError``)
    for another shape, an empty or oversized array, NaN/infinite values or float values
    outside 0..255.
    """
    shape = arr.shape
    if not (arr.ndim == 2 or (arr.ndim == 3 and shape[2] in (1, 3, 4))):
        raise ImageValueError(
            f"{name}: unsupported image shape {shape}; expected HxW, HxWx3 (BGR) or HxWx4 (BGRA)"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise ImageValueError(f"{name}: image is empty (0 pixels); pass a real image")
    if shape[0] * shape[1] > max_pixels:
        raise ImageValueError(
            f"{name}: {shape[1]}x{shape[0]} is above the {max_pixels // 1_000_000} MP limit; "
            "downscale it first"
        )
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind in "ui":
        raise ImageTypeError(
            f"{name}: unsupported dtype {arr.dtype}; pass uint8 pixels: img.astype(np.uint8) "
            "if the values are 0..255, (img >> 8).astype(np.uint8) for a 16-bit image"
        )
    if arr.dtype.kind != "f":
        raise ImageTypeError(
            f"{name}: unsupported dtype {arr.dtype}; pass uint8 BGR pixels (0..255)"
        )
    lo, hi = arr.min(), arr.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ImageValueError(
            f"{name}: array contains NaN or infinite values; pass finite pixel values"
        )
    if lo >= 0 and hi <= 1.0:
        return np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if lo < 0 or hi > 255:
        raise ImageValueError(
            f"{name}: float pixel values from {lo:g} to {hi:g} are outside 0..255 (and not "
            "all in [0, 1]); scale them to 0..255 or pass uint8"
        )
    return np.rint(arr).astype(np.uint8)


#: Allowed deviation of an embedding's L2 norm from 1.
NORM_TOL = 1e-2


def check_embeddings(
    x: np.ndarray,
    name: str,
    allow_empty: bool = False,
    *,
    dim: int | None = None,
    model: str | None = None,
) -> np.ndarray:
    """Validate an (N, D) matrix of L2-normalised float embeddings.

    Args:
        x: array-like (N, D), floating point, every row of norm 1 (within :data:`NORM_TOL`).
        name: what ``x`` is, for the message (``"probes"``, ``"embeddings of 'Ann'"``).
        allow_empty: accept N = 0 (an empty gallery or probe batch).
        dim: the required D, when the embeddings must match a model or gallery.
        model: the model that gives ``dim`` (named in the message: embed with it).

    Returns:
        ``x`` as C-contiguous float32 (N, D) (no copy when it already is).

    Raises:
        LrfaceError: one line naming ``name``: not 2-D (or N = 0 when not allowed, or
            D = 0), not floating point, D != ``dim``, a NaN/infinite row, a row whose norm
            is not 1.
    """
    a = _check_matrix(np.asarray(x), name, allow_empty, dim, model)
    a = np.ascontiguousarray(a, dtype=np.float32)
    _check_unit_rows(a, name)
    return a


def _check_matrix(
    a: np.ndarray, name: str, allow_empty: bool, dim: int | None, model: str | None
) -> np.ndarray:
    """``a`` itself if it is a floating-point (N, D) array (N > 0 unless ``allow_empty``,
    D > 0, D == ``dim`` when given), else the :func:`check_embeddings` error: shape,
    then dtype, then dimension."""
    if a.ndim != 2 or (a.shape[0] == 0 and not allow_empty) or a.shape[1] == 0:
        need = "an (N, D)" if allow_empty else "a non-empty (N, D)"
        raise LrfaceError(f"{name} must be {need} array, got shape {a.shape}")
    if a.dtype.kind != "f":
        raise LrfaceError(f"{name} must be floating point, got dtype {a.dtype}")
    if dim is not None and a.shape[1] != dim:
        by = f"model {model}" if model else "the gallery"
        fix = f"; embed with {model}" if model else ""
        raise LrfaceError(f"{name} have dimension {a.shape[1]}, but {by} gives {dim}{fix}")
    return a


def _check_unit_rows(a: np.ndarray, name: str) -> None:
    """Refuse the first row of the float32 (N, D) ``a`` that holds NaN/infinite values,
    else the first whose L2 norm is not 1 within :data:`NORM_TOL` (norms summed in
    float64)."""
    sq = np.einsum("ij,ij->i", a, a, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(sq))
    if bad.size:
        raise LrfaceError(f"{name} row {int(bad[0])} holds NaN or infinite values")
    bad = np.flatnonzero(np.abs(np.sqrt(sq) - 1.0) > NORM_TOL)
    if bad.size:
        i = int(bad[0])
        raise LrfaceError(
            f"{name} row {i} is not L2-normalised (norm {math.sqrt(sq[i]):.4g}); "
            "normalise embeddings first"
        )
