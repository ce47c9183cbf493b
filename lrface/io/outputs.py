"""What an output path may replace: an lrface output of the same kind, nothing else.

Every command that writes calls :func:`check_output` on its output before any work (after
it, :func:`lrface.io.fileio.check_writable`'s checks have run too): a file or directory that
already exists there is replaced (or resumed) only when it is an output of the same kind
-- rerunning ``lrface embed ... --out e.npz`` rewrites ``e.npz`` -- and refused otherwise,
with one line naming it, what it is and the fix (another name, or delete it first; there
is no ``--overwrite`` flag).  So ``lrface embed b.jpg --out gallery.npz`` never destroys a
gallery, ``export --onnx`` never replaces a model that is not its own earlier export, and
``distill --out`` never writes into an unrelated non-empty directory.

Kinds (:data:`KINDS`) are recognised by cheap sniffs: the member names of an ``.npz`` (a
zip's central directory), a JSON file's keys, or a directory's marker files.
"""

from __future__ import annotations

import fnmatch
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lrface.errors import LrfaceError
from lrface.io.fileio import check_writable

_EMBEDDINGS_MEMBERS = {"paths.npy", "embeddings.npy", "failed_paths.npy", "failed_errors.npy"}
_GALLERY_MEMBERS = {"embeddings.npy", "labels.npy", "sources.npy", "meta.npy"}
#: files one of which a ``lrface distill`` output directory holds (checkpoints, logs,
#: report, the per-rank files of a torchrun job), or is writing (an atomic write's
#: ``.NAME.*.part``: another rank of the same job may be writing one right now)
_DISTILL_MARKERS = ("data_report.json", "history.json", "log.csv", "last.pt", "best.pt", "rank*.pt")
_MAX_JSON_BYTES = 64 << 20


def _npz_members(path: Path) -> set[str] | None:
    try:
        with zipfile.ZipFile(path) as zf:
            return set(zf.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return None


def _json_object(path: Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > _MAX_JSON_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_embeddings_file(path: Path) -> bool:
    members = _npz_members(path)
    return members is not None and members >= _EMBEDDINGS_MEMBERS


def _is_gallery_file(path: Path) -> bool:
    members = _npz_members(path)
    return members is not None and members >= _GALLERY_MEMBERS


def _is_embeddings_dir(path: Path) -> bool:
    manifest = _json_object(path / "manifest.json")
    return manifest is not None and manifest.get("format") == "lrface-embeddings"


def _is_benchmark_results(path: Path) -> bool:
    data = _json_object(path)
    return data is not None and "lrface_version" in data and "command" in data


def _is_model_card(path: Path) -> bool:
    data = _json_object(path)
    return data is not None and {"name", "kind", "sha256"} <= set(data)


def _is_distill_dir(path: Path) -> bool:
    if not path.is_dir():
        return False
    names = [p.name for p in path.iterdir()]
    patterns = [*_DISTILL_MARKERS, *(f".{m}.*.part" for m in _DISTILL_MARKERS)]
    return any(fnmatch.fnmatchcase(n, pat) for n in names for pat in patterns)


#: kind -> (what it is, in a message; the test that an existing path is one)
KINDS: dict[str, tuple[str, Callable[[Path], bool]]] = {
    "embeddings": ("an lrface embeddings file (lrface embed --out FILE.npz)", _is_embeddings_file),
    "gallery": ("an lrface gallery (lrface gallery build --out FILE.npz)", _is_gallery_file),
    "embeddings-dir": ("an lrface embedding directory (embed --out DIR)", _is_embeddings_dir),
    "benchmark-results": ("lrface benchmark results", _is_benchmark_results),
    "model-card": ("an lrface model card", _is_model_card),
    "distill-dir": ("an lrface distill run directory", _is_distill_dir),
}


def describe(path: str | os.PathLike[str]) -> str:
    """What the existing ``path`` is, for a message: one of :data:`KINDS`' descriptions,
    else "a directory" / "a file that is not an lrface output"."""
    path = Path(path)
    for what, test in KINDS.values():
        if test(path):
            return what
    return "a directory" if path.is_dir() else "a file that is not an lrface output"


def _refuse(path: Path, kind: str, option: str, fix: str | None = None) -> LrfaceError:
    want = KINDS[kind][0] if kind in KINDS else kind
    return LrfaceError(
        f"{path}: exists and is {describe(path)}, not {want}; {option} will not replace it: "
        + (fix or f"choose another {option}, or delete it first")
    )


def check_output(path: str | os.PathLike[str], kind: str, option: str = "--out") -> Path:
    """Refuse an output location before any work: it must be writable
    (:func:`lrface.io.fileio.check_writable`) and anything already there must be an output of
    the same ``kind``.

    ``kind``: ``"embeddings"`` / ``"gallery"`` (an ``.npz`` file); ``"embeddings-dir"``
    (a resumable ``lrface embed`` directory: new, empty, or one to resume);
    ``"ivf-dir"`` (an IVF gallery directory: new or empty); ``"benchmark-dir"`` (its
    ``results.json``, if present, must be benchmark results); ``"distill-dir"`` (new,
    empty, or a distill run: resumed or extended).  ``option`` names the setting in the
    message.  Returns ``Path(path)``; raises :class:`LrfaceError` (one line naming the
    path, what it is and the fix).
    """
    path = Path(path)
    if kind in ("embeddings", "gallery"):
        check_writable(path, "file", option)
        if path.exists() and not KINDS[kind][1](path):
            raise _refuse(path, kind, option)
        return path
    if kind not in ("embeddings-dir", "ivf-dir", "benchmark-dir", "distill-dir"):
        raise ValueError(f"unknown output kind {kind!r}")
    check_writable(path, "dir", option)
    if not path.is_dir() or not any(path.iterdir()):
        return path
    if kind == "ivf-dir":
        fix = f"choose a new {option} directory, or delete it first to rebuild"
        raise _refuse(path, "an empty directory for a new IVF index", option, fix)
    if kind == "benchmark-dir":
        results = path / "results.json"
        if results.exists() and not _is_benchmark_results(results):
            raise _refuse(results, "benchmark-results", option)
        return path
    if not KINDS[kind][1](path):
        raise _refuse(path, kind, option, f"choose a new {option} directory")
    return path


def check_export_target(onnx: str | os.PathLike[str], shipped_dir: Path) -> Path:
    """Refuse an ``lrface export --onnx`` target (before any torch work) that is not
    writable, lies in the shipped models' directory ``shipped_dir``, or would replace a
    model or card that is not this target's own earlier export (an ``.onnx`` is replaced
    only with the card beside it naming it, a ``.json`` only when it is a model card)."""
    onnx = check_writable(onnx, "file", "--onnx")
    card = onnx.with_suffix(".json")
    if card.is_dir():
        raise LrfaceError(f"{card}: is a directory, but the card goes there; choose another --onnx")
    if shipped_dir.is_dir() and onnx.resolve().parent == shipped_dir.resolve():
        raise LrfaceError(
            f"{onnx}: is in the shipped models' directory {shipped_dir}; export elsewhere "
            "(pass the new card to --model-dir or by path)"
        )
    if card.exists() and not _is_model_card(card):
        raise _refuse(card, "model-card", "--onnx (its card)", "choose another --onnx name")
    if onnx.exists():
        data = _json_object(card) if card.exists() else None
        if data is None or data.get("weights_file") != onnx.name:
            raise LrfaceError(
                f"{onnx}: exists and is not an earlier export to this name (no card {card.name} "
                "beside it naming it); --onnx will not replace it: choose another --onnx, or "
                "delete it first"
            )
    return onnx


def check_crop_targets(paths: list[Path], size: int) -> None:
    """Refuse to replace, under ``detect --save-crops``, an existing file that is not a
    ``size`` x ``size`` PNG (what an earlier run wrote there)."""
    for p in paths:
        if p.exists() and _png_size(p) != (size, size):
            raise LrfaceError(
                f"{p}: exists and is not a {size}x{size} PNG crop of an earlier `lrface detect "
                "--save-crops`; --save-crops will not replace it: choose another directory, or "
                "delete it first"
            )


def _png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR, or None when ``path`` is not a PNG file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
