"""Embedding many images with a resumable, deterministic on-disk output.

:func:`embed_paths` decodes, detects and aligns images in worker processes and embeds them
in the main process, one *shard* of ``shard_size`` consecutive paths at a time.  Shard
``k`` covers ``paths[k * shard_size : (k + 1) * shard_size]``.  Its files are written
atomically and only then recorded in the manifest, so a killed run resumes by skipping
the recorded shards and redoing the rest: nothing is duplicated or dropped.

Determinism: the embedder sees exactly the same batches for a shard whatever happened
before (the successful crops of that shard, in path order, cut into ``batch_size``
chunks from the shard start), because onnxruntime/torch results may depend on batch
composition.  A resumed run is therefore byte-identical to an uninterrupted one.  The
settings that influence the floats (model, flip, the crop options, shard_size,
batch_size, the embedder's own batch size) are recorded and must match on resume.

Output directory format (``out_dir/``):

* ``manifest.json``: ``{"format": "lrface-embeddings", "version": 1, "model": {"name",
  "sha256", "embedding_size", "flip"}, "settings": {"detect", "detector", "det_thresh",
  "face_index", "input_size", "shard_size", "batch_size", "embedder_batch_size"},
  "total_paths", "paths_sha256" (sha256 of paths.txt), "n_shards", "shard_of" (null,
  or {"index", "count", "offset", "total_paths", "full_paths_sha256"} for a ``--shard
  i/N`` run), "completed_shards":
  [{"shard", "emb", "idx", "failures", "n_embedded", "n_failed", "sha256": {"emb",
  "idx", "failures"}}, ...], "n_embedded", "n_failed", "complete"}``;
* ``paths.txt``: the full ordered input list, one path per line (UTF-8, ``\\n``);
* ``emb-00000.npy``: float32 (n_k, D) embeddings of the successful paths of shard k;
* ``idx-00000.npy``: int64 (n_k,) their row numbers in ``paths.txt`` (ascending);
* ``fail-00000.tsv``: ``row \\t path \\t error`` per failed path of shard k;
* ``faces-00000.tsv``: ``row \\t model \\t crop \\t found_by \\t found_with`` per embedded
  path of shard k: the model that embedded its face (per face with
  :class:`lrface.faces.routing.ModelRouter`, :func:`lrface.faces.routing.choose_model`), what
  the crop was cut as (:attr:`lrface.faces.pipeline.PreparedFace.crop_kind`) and the
  detection pass and detector that found the face (empty when none ran); absent in
  directories written before it; read by :func:`load_face_info`;
* ``failures.tsv``: ``path \\t error`` for every failed path of the completed shards, in
  path order (rewritten at the end of every run).

Integrity: each completed shard records the sha256 of its three files when they are
written.  A resumed run checks them and embeds a shard whose files no longer match again
(a warning names it); :func:`load_embeddings` and :func:`merge_outputs` refuse such a
shard (one line naming the file).  Directories written before checksums were recorded
are read unverified, with a warning saying so.

Sharding across machines (``--shard i/N``, ``i`` counted from 0): :func:`shard` splits
the list into N *contiguous* runs of whole ``shard_size`` blocks, so every block is
embedded exactly as in a single run; :func:`merge_outputs` concatenates the shard
outputs in order and reproduces the single-run output byte for byte.

Images are decoded, detected and aligned by :class:`lrface.faces.pipeline.CropPreparer` (the
one crop pipeline, driven by a :class:`lrface.faces.pipeline.CropOptions`): in ``workers``
processes when at least :data:`lrface.faces.pipeline.POOL_MIN_PATHS` images are to be
prepared, else in this process (starting workers costs more than it saves for a few
images).  Workers use one thread each and die with their parent (no orphans after a
SIGKILL).  Scripts calling :func:`embed_paths` with ``workers > 0`` need the usual
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrface.errors import LrfaceError
from lrface.faces.detect import resolve_detector
from lrface.faces.pipeline import CropOptions, CropPreparer, CropResult, options_for, progress_bar
from lrface.faces.routing import BOX_MODEL, LR_STUDENT, STUDENT_BELOW_PX, TEACHER, ModelRouter
from lrface.io.fileio import (
    NpzError,
    atomic_write,
    check_writable,
    read_npz_arrays,
    save_npz_atomic,
    write_json_atomic,
)
from lrface.io.outputs import check_output
from lrface.io.pathnames import path_text
from lrface.io.validation import check_resource

if TYPE_CHECKING:
    from lrface.models.interface import Embedder

log = logging.getLogger("lrface")

__all__ = [
    "collect_paths",
    "embed_paths",
    "expand_inputs",
    "load_embeddings",
    "load_face_info",
    "merge_outputs",
    "parse_shard",
    "paths_sha256",
    "read_npz",
    "shard",
    "shard_range",
    "write_npz",
]

FORMAT = "lrface-embeddings"
VERSION = 1
MANIFEST = "manifest.json"
PATHS = "paths.txt"
FAILURES = "failures.tsv"
#: Shards whose images are being prepared ahead of the one being embedded.
PREFETCH = 2
#: Crop settings that older versions did not record (they always used these), for resuming.
_OLD_CROP_DEFAULTS = {"det_thresh": None, "face_index": None}

Failure = tuple[str, str]


# ---------------------------------------------------------------------- path lists


def expand_inputs(
    inputs: Sequence[str | os.PathLike[str]], must_exist: bool = True
) -> tuple[list[str], list[tuple[str, str]]]:
    """Expand command-line inputs (``lrface embed``, ``lrface identify``) into image paths.

    Each input is, in order: a directory (all images below it, recursively, sorted by
    relative path -- :func:`lrface.io.images.list_images`), a ``.txt`` file (one path per line;
    blank lines and lines starting with ``#`` skipped; relative paths are taken relative
    to the list file's directory), or a single image path (kept as given).  Order is
    preserved and duplicates are kept; a missing file named inside a list is kept (it
    fails when read).  An input that does not exist raises :class:`LrfaceError` when
    ``must_exist``, else it is kept as a path (it fails when read).

    Returns ``(paths, failures)``: failures are ``(input, "holds no image files")`` for a
    directory or list without images.
    """
    from lrface.io.images import list_images

    out: list[str] = []
    failures: list[tuple[str, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = [str(x) for x in list_images(p)]
        elif p.suffix.lower() == ".txt" and p.is_file():
            found = _read_list(p)
        elif p.is_file() or not must_exist:
            found = [os.fspath(item)]
        else:
            raise LrfaceError(f"{p}: no such file or directory; check the input path")
        if not found:
            failures.append((os.fspath(item), "holds no image files"))
        out.extend(found)
    return out, failures


def collect_paths(inputs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The image paths of :func:`expand_inputs` (every input must exist).  A name that
    ``paths.txt`` cannot hold as is (:func:`lrface.io.pathnames.name_problem`) is kept: it
    fails on its own when prepared and is recorded escaped."""
    out, _ = expand_inputs(inputs)
    return out


def _read_list(list_file: Path) -> list[str]:
    """Paths listed in ``list_file``, relative ones resolved against its directory."""
    try:
        # undecodable bytes stay (as surrogates): that path fails alone, not the list
        lines = list_file.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except OSError as exc:
        raise LrfaceError(f"{list_file}: cannot read the path list ({exc})") from None
    base = list_file.parent
    out = []
    for line in lines:
        s = line.strip()
        if s and not s.startswith("#"):
            out.append(s if os.path.isabs(s) else str(base / s))
    return out


def paths_sha256(paths: Sequence[str]) -> str:
    """sha256 (hex) of the path list as written to ``paths.txt`` (one per line)."""
    return hashlib.sha256(_paths_text(paths).encode("utf-8")).hexdigest()


def _paths_text(paths: Sequence[str]) -> str:
    """``paths.txt``: one path per line, names it cannot hold as is escaped
    (:func:`lrface.io.pathnames.path_text`; such files always fail)."""
    return "".join(f"{path_text(p)}\n" for p in paths)


def shard_range(n_paths: int, i: int, n: int, block: int = 1) -> tuple[int, int]:
    """``(start, stop)`` of shard ``i`` of ``n`` (0 <= i < n) over ``n_paths`` paths.

    The list is cut into blocks of ``block`` paths; the blocks are split into ``n``
    contiguous groups whose sizes differ by at most one block (earlier groups larger).
    """
    if not (isinstance(n, int) and n >= 1 and isinstance(i, int) and 0 <= i < n):
        raise LrfaceError(f"shard {i}/{n} is invalid; use i/N with 0 <= i < N")
    if block < 1:
        raise LrfaceError(f"shard block size must be >= 1, got {block}")
    n_blocks = math.ceil(n_paths / block)
    per, extra = divmod(n_blocks, n)
    b0 = i * per + min(i, extra)
    b1 = b0 + per + (1 if i < extra else 0)
    return min(b0 * block, n_paths), min(b1 * block, n_paths)


def shard(paths: Sequence[str], i: int, n: int, block: int = 1) -> list[str]:
    """Paths of shard ``i`` of ``n``: a contiguous slice (see :func:`shard_range`).

    Use ``block=shard_size`` of :func:`embed_paths` so that merged shard outputs are
    byte-identical to a single run (``embed_paths(..., shard_of=(i, n))`` does this).
    """
    start, stop = shard_range(len(paths), i, n, block)
    return list(paths[start:stop])


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/N"`` (0 <= i < N) into ``(i, N)``."""
    try:
        a, b = (int(x) for x in text.split("/"))
    except ValueError:
        raise LrfaceError(f"--shard {text!r}: expected i/N, e.g. 0/4") from None
    shard_range(0, a, b)
    return a, b


# ---------------------------------------------------------------------- output dir


def _shard_names(k: int) -> dict[str, str]:
    return {"emb": f"emb-{k:05d}.npy", "idx": f"idx-{k:05d}.npy", "failures": f"fail-{k:05d}.tsv"}


#: Columns of a shard's ``faces-NNNNN.tsv`` after the row number.
FACE_COLUMNS = ("model", "crop", "found_by", "found_with")


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_write(path, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)


def _write_shard(
    out: Path,
    k: int,
    emb: np.ndarray,
    idx: np.ndarray,
    fails: list[tuple[int, str, str]],
    faces: list[tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    """Write shard ``k``'s files atomically; return its manifest entry.  ``faces``: per
    embedded row, the :data:`FACE_COLUMNS` (None: no ``faces`` file)."""
    names = _shard_names(k)
    _save_npy(out / names["emb"], emb)
    _save_npy(out / names["idx"], idx)
    with atomic_write(out / names["failures"], "w") as fh:
        fh.writelines(f"{row}\t{path_text(path)}\t{path_text(msg)}\n" for row, path, msg in fails)
    entry: dict[str, Any] = {"shard": k, **names, "n_embedded": len(idx), "n_failed": len(fails)}
    if faces is not None:
        entry["faces"] = f"faces-{k:05d}.tsv"
        with atomic_write(out / entry["faces"], "w") as fh:
            fh.writelines("\t".join((str(r), *f)) + "\n" for r, f in zip(idx.tolist(), faces))
    entry["sha256"] = {key: _sha256_of(out / name) for key, name in names.items()}
    return entry


def _sha256_of(path: Path) -> str:
    """Hex sha256 of the file at ``path`` (read now: no cache, a changed file is seen)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _shard_problem(out: Path, entry: dict[str, Any]) -> str:
    """Empty if shard ``entry``'s files are present and match the sha256 recorded when
    they were written (entries written before checksums: present is enough), else what
    is wrong, naming the file."""
    for key in ("emb", "idx", "failures"):
        path = out / entry[key]
        if not path.is_file():
            return f"{path}: missing"
        want = (entry.get("sha256") or {}).get(key)
        if want is not None and _sha256_of(path) != want:
            return (
                f"{path}: does not match the sha256 recorded when shard {entry['shard']} was "
                "written (corrupt or modified)"
            )
    return ""


def _warn_unverified(out: Path, man: dict[str, Any]) -> None:
    """One warning when ``man`` has completed shards without checksums (older lrface)."""
    old = sum("sha256" not in e for e in man["completed_shards"])
    if old:
        log.warning(
            "%s: %d shard(s) were written by an lrface that recorded no checksums; they are "
            "read unverified (embed into a new directory to get them)",
            out,
            old,
        )


def _read_shard_failures(path: Path) -> list[tuple[int, str, str]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row, p, msg = line.split("\t", 2)
        out.append((int(row), p, msg))
    return out


def _new_manifest(
    model: dict, settings: dict, paths: Sequence[str], shard_size: int, shard_of: dict | None
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": model,
        "settings": settings,
        "total_paths": len(paths),
        "paths_sha256": paths_sha256(paths),
        "n_shards": math.ceil(len(paths) / shard_size),
        "shard_of": shard_of,
        "completed_shards": [],
        "n_embedded": 0,
        "n_failed": 0,
        "complete": len(paths) == 0,
    }


def _read_manifest(out: Path) -> dict[str, Any]:
    try:
        man = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LrfaceError(f"{out}: no {MANIFEST}; not an lrface embedding directory") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise LrfaceError(
            f"{out / MANIFEST}: unreadable manifest ({exc}); delete {out} and embed again"
        ) from None
    if man.get("format") != FORMAT or man.get("version") != VERSION:
        raise LrfaceError(
            f"{out}: not an lrface embedding directory (format "
            f"{man.get('format')!r} version {man.get('version')!r})"
        )
    return man


def _finish_manifest(out: Path, man: dict[str, Any]) -> None:
    """Sort/summarise the completed shards and write the manifest atomically."""
    man["completed_shards"].sort(key=lambda e: e["shard"])
    man["n_embedded"] = sum(e["n_embedded"] for e in man["completed_shards"])
    man["n_failed"] = sum(e["n_failed"] for e in man["completed_shards"])
    man["complete"] = len(man["completed_shards"]) == man["n_shards"]
    write_json_atomic(out / MANIFEST, man)


def _open_output(out: Path, fresh: dict[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """Create ``out`` or reopen it for resuming; refuse an incompatible directory."""
    if (out / MANIFEST).is_file():
        old = _read_manifest(out)
        diff = _incompatibility(old, fresh)
        if diff:
            raise LrfaceError(
                f"{out}: holds embeddings of a different run ({diff}); use a new --out "
                f"directory, or delete {out} to start over"
            )
        old["completed_shards"] = _verified_shards(out, old["completed_shards"])
        _warn_unverified(out, old)
        if not (out / PATHS).is_file():
            _write_paths(out, paths)
        return old
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LrfaceError(
            f"{out}: exists and is not an lrface embedding directory; use a new --out directory"
        )
    check_writable(out, "dir", "output directory")
    out.mkdir(parents=True, exist_ok=True)
    _write_paths(out, paths)
    write_json_atomic(out / MANIFEST, fresh)
    return fresh


def _verified_shards(out: Path, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The completed shards a resumed run keeps: those whose files are present and match
    their sha256.  A shard with a missing file (a run killed while writing it) is redone
    quietly; one whose file changed after it was written is redone with a warning."""
    kept = []
    for entry in entries:
        problem = _shard_problem(out, entry)
        if not problem:
            kept.append(entry)
        elif not problem.endswith(": missing"):
            log.warning("%s; embedding shard %d again", problem, entry["shard"])
    return kept


def _write_paths(out: Path, paths: Sequence[str]) -> None:
    with atomic_write(out / PATHS, "w") as fh:
        fh.write(_paths_text(paths))


def _incompatibility(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Empty if ``old`` can be resumed with ``new``'s inputs, else what differs."""
    if old["paths_sha256"] != new["paths_sha256"]:
        return (
            f"path list differs: {old['total_paths']} paths recorded, "
            f"{new['total_paths']} given, or another order"
        )
    settings = old.get("settings") or {}
    if "detector" not in settings:  # written before crop options were recorded
        detector = "scrfd-2.5g" if settings.get("detect") else None
        settings = {**_OLD_CROP_DEFAULTS, "detector": detector, **settings}
        old = {**old, "settings": settings}
    for key in ("model", "settings", "shard_of"):
        if old.get(key) != new.get(key):
            return f"{key} differs: recorded {old.get(key)}, now {new.get(key)}"
    return ""


def _write_failures_tsv(out: Path, man: dict[str, Any]) -> None:
    with atomic_write(out / FAILURES, "w") as fh:
        for entry in man["completed_shards"]:
            for _, path, msg in _read_shard_failures(out / entry["failures"]):
                fh.write(f"{path}\t{msg}\n")


# ---------------------------------------------------------------------- embedding


def _as_router(embedder: Embedder | ModelRouter) -> ModelRouter:
    return embedder if isinstance(embedder, ModelRouter) else ModelRouter(embedder)


def _embed_routed(
    results: list[CropResult],
    paths: Sequence[str],
    start: int,
    router: ModelRouter,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray, list, list[tuple[str, ...]]]:
    """Embed one shard's prepared crops, each face by its model (``router``).

    Returns float32 (n, D) embeddings, int64 (n,) row indices, ``(row, path, error)`` for
    each failure and the :data:`FACE_COLUMNS` of each embedded face, all in path order.
    Batches are cut from the shard start (``batch_size`` crops), then split per model, so
    a shard's floats never depend on what came before it."""
    ok = [j for j, r in enumerate(results) if r.crop is not None]
    fails = [(start + j, paths[j], r.error) for j, r in enumerate(results) if r.crop is None]
    good = [results[j] for j in ok]
    parts, names = [], []
    for b in range(0, len(good), batch_size):
        batch = good[b : b + batch_size]
        e, n = router.embed_faces(batch)
        parts.append(e)
        names += n
    d = int(parts[0].shape[1]) if parts else 128
    emb = np.concatenate(parts) if parts else np.zeros((0, d), np.float32)
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    if emb.shape != (len(ok), d):
        raise RuntimeError(f"embedder returned {emb.shape}, expected {(len(ok), d)}")
    faces: list[tuple[str, ...]] = [
        (
            n,
            r.crop_kind,
            str((r.info or {}).get("found_by", "")),
            str((r.info or {}).get("found_with", "")),
        )
        for n, r in zip(names, good)
    ]
    return emb, np.asarray(ok, dtype=np.int64) + start, fails, faces


def _check_positive(value: int, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LrfaceError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def embed_paths(
    paths: Sequence[str | os.PathLike[str]],
    embedder: Embedder | ModelRouter,
    out_dir: str | os.PathLike[str],
    detect: bool = True,
    batch_size: int = 256,
    workers: int = 2,
    shard_size: int = 1024,
    progress: bool = True,
    max_shards: int | None = None,
    shard_of: tuple[int, int] | None = None,
    options: CropOptions | None = None,
    engine: Any = None,
) -> dict[str, Any]:
    """Embed ``paths`` into the resumable directory ``out_dir`` (format: module docstring).

    ``paths``: ordered image paths (:func:`collect_paths`); ``embedder``: an
    :class:`lrface.models.interface.Embedder`, or a :class:`lrface.faces.routing.ModelRouter`
    (each face by its model; not with an ``engine``); ``out_dir``: created, or resumed if it holds a
    compatible run.  ``detect=False``: inputs are pre-cut crops, resized (shorthand for
    ``options=CropOptions(detect=False)``); ``options``: how images become crops (detector,
    threshold, face index; the crop size is always ``embedder.input_size``).  ``batch_size``:
    crops per ``embed_crops`` call (batches never span shards); ``workers``: decode/align
    processes (0 = in this process); ``shard_size``: paths per shard file (the unit of
    resumption); ``progress``: a tqdm bar on stderr; ``max_shards``: stop after writing this
    many new shards (the run stays resumable).  ``shard_of=(i, N)``: ``paths`` is the full
    list and only shard i of N (:func:`shard` with ``block=shard_size``) is embedded;
    recorded for :func:`merge_outputs`.  ``engine``: None (this process and ``workers``), or
    a shard engine such as :class:`lrface.batch.ray_engine.RayEngine` whose
    ``embed_shards(todo, paths, shard_size, options, batch_size)`` yields
    ``(k, emb, rows, failures)`` per shard; files
    and manifest are still written here only, so the output is the same.

    Returns the summary dict of :func:`_run_summary`.  Raises :class:`LrfaceError` when
    ``out_dir`` holds another path list, model or settings, or is a non-empty non-output dir.
    """
    t0 = time.perf_counter()
    out, all_paths, options, man = _open_run(
        paths, embedder, out_dir, options, detect, batch_size, workers, shard_size, shard_of
    )
    done, todo = _pending_shards(man, max_shards)
    bar = progress_bar(len(all_paths), progress)
    bar.update(_count_paths(all_paths, done, shard_size))
    t_embed = time.perf_counter()
    prep, shards = _start_shards(
        engine, todo, all_paths, shard_size, options, workers, embedder, batch_size
    )
    written, embedded_now = _write_shards(out, man, shards, bar, prep)
    counts = (len(all_paths), len(done), written, embedded_now)
    return _run_summary(out, man, counts, prep, (t0, t_embed))


def _open_run(
    paths: Sequence[str | os.PathLike[str]],
    embedder: Embedder | ModelRouter,
    out_dir: str | os.PathLike[str],
    options: CropOptions | None,
    detect: bool,
    batch_size: int,
    workers: int,
    shard_size: int,
    shard_of: tuple[int, int] | None,
) -> tuple[Path, list[str], CropOptions, dict[str, Any]]:
    """Check the arguments and create or reopen the output directory for :func:`embed_paths`.

    Returns ``(out, paths, options, manifest)``: the output directory, the paths this run
    covers (shard i of N of ``paths`` with ``shard_of``, as ``str``), the resolved crop
    options (crop size ``embedder.input_size``) and the manifest (new, or the resumed one
    with its present shards).
    """
    all_paths = [os.fsdecode(p) for p in paths]
    _check_run_arguments(batch_size, shard_size, workers)
    options = options_for(options, detect, int(embedder.input_size))
    all_paths, info = _select_shard(all_paths, shard_of, shard_size)
    model = _model_entry(embedder)
    settings = _settings_entry(options, embedder, shard_size, batch_size)
    out = Path(out_dir)
    man = _open_output(out, _new_manifest(model, settings, all_paths, shard_size, info), all_paths)
    return out, all_paths, options, man


def _run_summary(
    out: Path,
    man: dict[str, Any],
    counts: tuple[int, int, int, int],
    prep: CropPreparer | None,
    times: tuple[float, float],
) -> dict[str, Any]:
    """The summary :func:`embed_paths` returns, logged at INFO (``embed: {...}``).

    Keys: ``out_dir``, ``total_paths``, ``n_shards``, ``shards_skipped`` (already done),
    ``shards_written``, ``n_embedded``/``n_failed`` (whole directory), ``complete`` (bool),
    ``workers`` (worker processes actually started: 0 when the images were prepared in this
    process), ``seconds``, ``crops_per_second`` (faces embedded by this call per second of
    decoding, aligning, embedding and writing).  ``counts``: ``(paths of the run, shards
    skipped, shards written, faces embedded by this call)``; ``times``:
    ``time.perf_counter()`` at the start of the call and of its shard loop.
    """
    total, skipped, written, embedded_now = counts
    t0, t_embed = times
    summary = {
        "out_dir": str(out),
        "total_paths": total,
        "n_shards": man["n_shards"],
        "shards_skipped": skipped,
        "shards_written": written,
        "n_embedded": man["n_embedded"],
        "n_failed": man["n_failed"],
        "complete": man["complete"],
        "workers": prep.workers if prep is not None else 0,
        "seconds": round(time.perf_counter() - t0, 3),
        # faces embedded by this call per second of its shard loop (decode, align, embed,
        # write; excludes model loading and the path listing)
        "crops_per_second": round(embedded_now / max(1e-9, time.perf_counter() - t_embed), 1),
    }
    log.info("embed: %s", summary)
    return summary


def _check_run_arguments(batch_size: int, shard_size: int, workers: int) -> None:
    """Raise :class:`LrfaceError` unless batch_size, shard_size >= 1 and workers >= 0,
    each within its cap (:data:`lrface.io.validation.RESOURCE_LIMITS`)."""
    for name, value, low in (("batch_size", batch_size, 1), ("shard_size", shard_size, 1),
                             ("workers", workers, 0)):  # fmt: skip
        check_resource(name, _check_positive(value, name, low))


def _select_shard(
    paths: list[str], shard_of: tuple[int, int] | None, shard_size: int
) -> tuple[list[str], dict[str, Any] | None]:
    """``(paths, None)`` without ``shard_of``; else shard i of N of the full list.

    For ``shard_of=(i, N)`` returns the contiguous slice of whole ``shard_size`` blocks
    (:func:`shard_range`) and the manifest's ``shard_of`` entry: ``{"index", "count",
    "offset", "total_paths", "full_paths_sha256"}`` describing the full list.
    """
    if shard_of is None:
        return paths, None
    i, n = shard_of
    start, stop = shard_range(len(paths), i, n, shard_size)
    info = {
        "index": i,
        "count": n,
        "offset": start,
        "total_paths": len(paths),
        "full_paths_sha256": paths_sha256(paths),
    }
    return paths[start:stop], info


def _model_entry(embedder: Embedder | ModelRouter) -> dict[str, Any]:
    """The manifest's ``model`` entry: ``{"name", "sha256", "embedding_size", "flip"}``;
    per-face routing (a :class:`ModelRouter` without a forced model): ``{"name":
    "per-face", "rule", "sha256": {model: sha256}, "embedding_size", "flip"}``."""
    if isinstance(embedder, ModelRouter):
        if embedder.forced:
            return _model_entry(embedder.embedder(embedder.forced))
        models = [embedder.embedder(n) for n in dict.fromkeys((TEACHER, LR_STUDENT, BOX_MODEL))]
        return {
            "name": "per-face",
            "rule": f"lrface.choose_model: box crops -> {BOX_MODEL}; faces under "
            f"{STUDENT_BELOW_PX:g} px -> {LR_STUDENT}; larger -> {TEACHER}",
            "sha256": {m.name: m.sha256 for m in models},
            "embedding_size": int(models[0].embedding_size),
            "flip": bool(getattr(models[0], "flip", False)),
        }
    return {
        "name": embedder.name,
        "sha256": embedder.sha256,
        "embedding_size": int(embedder.embedding_size),
        "flip": bool(getattr(embedder, "flip", False)),
    }


def _settings_entry(
    options: CropOptions, embedder: Embedder | ModelRouter, shard_size: int, batch_size: int
) -> dict[str, Any]:
    """The manifest's ``settings`` entry: everything besides the model that shapes the
    floats (crop options, crop size, shard and batch sizes); must match on resume."""
    searched = options.detect or options.crop_mode == "auto"
    settings = {
        "detect": bool(options.detect),
        "detector": resolve_detector(options.detector) if searched else None,
        "det_thresh": options.det_thresh,
        "face_index": options.face_index,
        "input_size": int(embedder.input_size),
        "shard_size": shard_size,
        "batch_size": batch_size,
        "embedder_batch_size": int(getattr(embedder, "batch_size", 0) or 0),
    }
    if not options.detect:  # recorded only where it applies (older outputs stay resumable)
        settings["crop_mode"] = options.crop_mode
    return settings


def _pending_shards(man: dict[str, Any], max_shards: int | None) -> tuple[set[int], list[int]]:
    """``(done, todo)``: the shard numbers already completed in ``man``, and those to
    embed now in ascending order (the first ``max_shards`` of the rest, if given)."""
    done = {e["shard"] for e in man["completed_shards"]}
    todo = [k for k in range(man["n_shards"]) if k not in done]
    if max_shards is not None:
        todo = todo[: _check_positive(max_shards, "max_shards", 0)]
    return done, todo


def _count_paths(paths: Sequence[str], shards: Iterable[int], shard_size: int) -> int:
    """Number of paths in the given shards (the last shard may be short)."""
    return sum(len(paths[k * shard_size : (k + 1) * shard_size]) for k in shards)


def _start_shards(
    engine: Any,
    todo: list[int],
    paths: list[str],
    shard_size: int,
    options: CropOptions,
    workers: int,
    embedder: Embedder | ModelRouter,
    batch_size: int,
) -> tuple[CropPreparer | None, Iterable[tuple]]:
    """``(prep, shards)``: the local crop preparer (None with an engine or nothing to do;
    the caller closes it) and the iterable of ``(k, float32 (n, D) emb, int64 (n,) rows,
    failures)`` for the ``todo`` shards, from ``engine`` or embedded in this process."""
    n_todo = _count_paths(paths, todo, shard_size)
    prep = CropPreparer(options, workers, n_todo) if todo and engine is None else None
    if engine is not None and todo:
        shards = engine.embed_shards(todo, paths, shard_size, options, batch_size)
    else:
        shards = _local_shards(prep, todo, paths, shard_size, embedder, batch_size)
    return prep, shards


def _write_shards(
    out: Path,
    man: dict[str, Any],
    shards: Iterable[tuple],
    bar: Any,
    prep: CropPreparer | None,
) -> tuple[int, int]:
    """Write each shard's files and record it in the manifest as it arrives.

    Whatever happens (an error, Ctrl-C), ``prep`` and ``bar`` are closed and the manifest
    and ``failures.tsv`` rewritten, so the run stays resumable.  Returns ``(shards
    written, faces embedded)`` by this call.
    """
    written = embedded_now = 0
    try:
        for k, emb, idx, fails, *faces in shards:  # faces: absent from older engines
            entry = _write_shard(out, k, emb, idx, fails, faces[0] if faces else None)
            man["completed_shards"].append(entry)
            _finish_manifest(out, man)
            written += 1
            embedded_now += len(idx)
            bar.update(len(idx) + len(fails))
    finally:
        if prep is not None:
            prep.close()
        bar.close()
        _finish_manifest(out, man)
        _write_failures_tsv(out, man)
    return written, embedded_now


def _prepared_shards(
    prep: CropPreparer | None, todo: list[int], paths: list[str], shard_size: int
) -> Iterable[tuple[int, list[CropResult]]]:
    """Yield ``(k, prepared results of shard k)`` keeping ``PREFETCH`` shards in flight."""
    if prep is None:
        return
    groups = (paths[k * shard_size : (k + 1) * shard_size] for k in todo)
    yield from zip(todo, prep.map(groups, PREFETCH))


def _local_shards(
    prep: CropPreparer | None,
    todo: list[int],
    paths: list[str],
    shard_size: int,
    embedder: Embedder | ModelRouter,
    batch_size: int,
) -> Iterable[tuple]:
    """The local engine: ``(k, emb, rows, failures, faces)`` per shard, embedded in this
    process (``faces``: :data:`FACE_COLUMNS` per embedded row)."""
    router = _as_router(embedder)
    for k, results in _prepared_shards(prep, todo, paths, shard_size):
        start = k * shard_size
        chunk = paths[start : start + shard_size]
        yield (k, *_embed_routed(results, chunk, start, router, batch_size))


# ---------------------------------------------------------------------- reading


def _load_rows(
    out: Path, allow_partial: bool = False
) -> tuple[dict, list[str], np.ndarray, np.ndarray, list[tuple[int, str, str]]]:
    """Manifest, full path list, int64 (n,) rows, float32 (n, D) embeddings, failures."""
    man = _read_manifest(out)
    try:
        text = (out / PATHS).read_text(encoding="utf-8")
    except OSError as exc:
        raise LrfaceError(f"{out / PATHS}: cannot be read ({exc}); embed again") from None
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != man["paths_sha256"]:
        raise LrfaceError(f"{out / PATHS}: does not match the manifest; the directory is corrupt")
    paths = text.splitlines()
    if not man["complete"] and not allow_partial:
        raise LrfaceError(
            f"{out}: incomplete run ({len(man['completed_shards'])} of {man['n_shards']} shards "
            "done); rerun the same command to resume"
        )
    d = man["model"]["embedding_size"]
    embs, rows, fails = [np.zeros((0, d), np.float32)], [np.zeros(0, np.int64)], []
    _warn_unverified(out, man)
    for entry in sorted(man["completed_shards"], key=lambda e: e["shard"]):
        problem = _shard_problem(out, entry)
        if problem:
            raise LrfaceError(
                f"{problem}; rerun the `lrface embed` command that wrote {out} (same inputs "
                "and options): it embeds that shard again"
            )
        try:
            embs.append(np.load(out / entry["emb"], allow_pickle=False))
            rows.append(np.load(out / entry["idx"], allow_pickle=False))
        except (OSError, ValueError, EOFError) as exc:
            raise LrfaceError(
                f"{out}: shard file {entry['emb']} or {entry['idx']} is unreadable ({exc}); "
                "delete both and rerun the same command to redo the shard"
            ) from None
        fails.extend(_read_shard_failures(out / entry["failures"]))
    return man, paths, np.concatenate(rows), np.concatenate(embs), fails


def load_embeddings(
    out_dir: str | os.PathLike[str], allow_partial: bool = False
) -> tuple[list[str], np.ndarray, list[Failure]]:
    """Merge an output directory's shards in path order.

    Returns ``(paths, embeddings, failures)``: the N successfully embedded paths, float32
    (N, D) embeddings row-aligned with them, and ``(path, error)`` for each failure.
    Raises :class:`LrfaceError` for an incomplete run unless ``allow_partial``.
    """
    _, paths, rows, emb, fails = _load_rows(Path(out_dir), allow_partial)
    return [paths[i] for i in rows.tolist()], emb, [(p, m) for _, p, m in fails]


def load_face_info(
    out_dir: str | os.PathLike[str], allow_partial: bool = False
) -> dict[str, dict[str, str]]:
    """``{path: {"model", "crop", "found_by", "found_with"}}`` for every embedded path of an
    :func:`embed_paths` directory whose shard recorded it (``faces-NNNNN.tsv``)."""
    out = Path(out_dir)
    _, paths, _, _, _ = _load_rows(out, allow_partial)
    man = _read_manifest(out)
    info: dict[str, dict[str, str]] = {}
    for entry in man["completed_shards"]:
        name = entry.get("faces")
        if not name:
            continue
        try:
            lines = (out / name).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise LrfaceError(f"{out / name}: cannot be read ({exc}); embed again") from None
        for line in lines:
            row, *cols = line.split("\t")
            info[paths[int(row)]] = dict(zip(FACE_COLUMNS, cols))
    return info


def output_meta(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"model", "settings"}`` of an :func:`embed_paths` output directory (its manifest's
    model entry and the settings that shape the floats): the ``meta`` that ``lrface embed
    --out FILE.npz`` and :func:`merge_outputs` record in a single ``.npz``."""
    man = _read_manifest(Path(out_dir))
    return {"model": man["model"], "settings": man["settings"]}


def merge_outputs(
    dirs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]
) -> dict[str, Any]:
    """Reassemble complete shard outputs (``--shard i/N`` runs) into one output.

    ``dirs`` are ordered by their recorded shard index when every one has one (all
    indices of one split must be present), else taken in the given order.  ``out``
    ending in ``.npz`` gets :func:`write_npz`; otherwise a new directory in the
    :func:`embed_paths` format, identical to a single unsharded run.
    Returns ``{"out", "total_paths", "n_embedded", "n_failed"}``.
    """
    if not dirs:
        raise LrfaceError("merge: no input directories given")
    _check_distinct_dirs(dirs)
    loaded = [_load_rows(Path(d)) for d in dirs]
    dir_of = {id(item[0]): Path(d) for item, d in zip(loaded, dirs)}  # before reordering
    loaded = _order_shards(loaded, [str(d) for d in dirs])
    man0 = loaded[0][0]
    all_paths, row_all, emb_all, fails = _concat_loaded(loaded)
    faces = _concat_faces(loaded, dir_of, row_all)
    dest = Path(out)
    if dest.suffix.lower() == ".npz":
        write_npz(
            dest,
            [all_paths[i] for i in row_all.tolist()],
            emb_all,
            [(p, m) for _, p, m in fails],
            meta={"model": man0["model"], "settings": man0["settings"]},
            faces=None if faces is None else [dict(zip(FACE_COLUMNS, f)) for f in faces],
        )
    else:
        _write_merged_dir(dest, man0, all_paths, row_all, emb_all, fails, faces)
    return {
        "out": str(dest),
        "total_paths": len(all_paths),
        "n_embedded": len(row_all),
        "n_failed": len(fails),
    }


def _check_distinct_dirs(dirs: Sequence[str | os.PathLike[str]]) -> None:
    """Refuse a directory given twice to :func:`merge_outputs` (by another spelling or a
    symlink too): its rows would be counted twice."""
    seen: dict[str, str] = {}
    for d in dirs:
        key = os.path.realpath(d)
        if key in seen:
            raise LrfaceError(
                f"merge: {d} is given twice (also as {seen[key]}); pass each output directory once"
            )
        seen[key] = os.fspath(d)


def _check_no_overlap(loaded: list, names: list[str]) -> None:
    """Refuse whole runs (no ``--shard`` split) that share an embedded path: merging them
    would give that image two rows.  Names the first shared path and both directories."""
    owner: dict[str, str] = {}
    for (_, paths, rows, _, _), name in zip(loaded, names):
        mine = {paths[i] for i in rows.tolist()}
        for p in sorted(mine):
            if p in owner:
                raise LrfaceError(
                    f"merge: {name} and {owner[p]} overlap (both embed {p}); merge outputs "
                    "of disjoint inputs, or the shards of one --shard split"
                )
        owner.update(dict.fromkeys(mine, name))


def _concat_loaded(
    loaded: list,
) -> tuple[list[str], np.ndarray, np.ndarray, list[tuple[int, str, str]]]:
    """Concatenate ordered :func:`_load_rows` results into one run.

    Returns ``(paths, rows, emb, failures)``: the joined path lists, int64 (n,) rows and
    ``(row, path, error)`` failures renumbered into them, float32 (n, D) embeddings.
    Raises :class:`LrfaceError` if the outputs differ in model or settings, or (for
    ``--shard`` runs) do not reassemble the recorded full path list.
    """
    man0 = loaded[0][0]
    all_paths: list[str] = []
    rows: list[np.ndarray] = []
    embs: list[np.ndarray] = []
    fails: list[tuple[int, str, str]] = []
    for man, paths, r, e, f in loaded:
        if (man["model"], man["settings"]) != (man0["model"], man0["settings"]):
            raise LrfaceError("merge: the outputs come from different models or settings")
        off = len(all_paths)
        all_paths.extend(paths)
        rows.append(r + off)
        embs.append(e)
        fails.extend((row + off, p, m) for row, p, m in f)
    info = man0.get("shard_of")
    if info and paths_sha256(all_paths) != info["full_paths_sha256"]:
        raise LrfaceError("merge: the shards do not reassemble the original path list")
    return all_paths, np.concatenate(rows), np.concatenate(embs), fails


def _face_rows(out: Path, man: dict[str, Any]) -> dict[int, tuple[str, ...]] | None:
    """``{row: FACE_COLUMNS}`` of an output directory; None if a shard recorded none."""
    rows: dict[int, tuple[str, ...]] = {}
    for entry in man["completed_shards"]:
        if not entry.get("faces"):
            return None
        for line in (out / entry["faces"]).read_text(encoding="utf-8").splitlines():
            row, *cols = line.split("\t")
            rows[int(row)] = tuple(cols)
    return rows


def _concat_faces(
    loaded: list, dir_of: dict[int, Path], rows: np.ndarray
) -> list[tuple[str, ...]] | None:
    """The face records of the merged ``rows`` (in order), or None when any input lacks
    them.  ``loaded`` is in merge order; ``dir_of``: each one's directory by the id of its
    manifest."""
    merged: dict[int, tuple[str, ...]] = {}
    off = 0
    for man, paths, *_ in loaded:
        part = _face_rows(dir_of[id(man)], man)
        if part is None:
            return None
        merged.update({r + off: f for r, f in part.items()})
        off += len(paths)
    return [merged[int(r)] for r in rows]


def _order_shards(loaded: list, names: list[str]) -> list:
    """``loaded`` in shard order for the shards of one ``--shard`` split (each index
    exactly once), or as given for whole runs that share no path; anything else (a mix
    of both, a shard twice or missing, overlapping runs) raises :class:`LrfaceError`."""
    infos = [item[0].get("shard_of") for item in loaded]
    if any(infos) and not all(infos):
        split = [n for n, i in zip(names, infos) if i]
        whole = [n for n, i in zip(names, infos) if not i]
        raise LrfaceError(
            f"merge: {split[0]} is a --shard output but {whole[0]} is a whole run; merge "
            "the shards of one split, or whole runs"
        )
    if not all(infos):
        _check_no_overlap(loaded, names)
        return loaded
    count = infos[0]["count"]
    idx = sorted(i["index"] for i in infos)
    if any(i["count"] != count for i in infos) or idx != list(range(count)):
        have = ", ".join(f"{n}={i['index']}/{i['count']}" for n, i in zip(names, infos))
        raise LrfaceError(
            f"merge: need each shard 0..{count - 1} of one split exactly once, got {have}"
        )
    return [loaded[j] for j in np.argsort([i["index"] for i in infos], kind="stable")]


def _write_merged_dir(
    out: Path,
    man0: dict,
    paths: list[str],
    rows: np.ndarray,
    emb: np.ndarray,
    fails: list[tuple[int, str, str]],
    faces: list[tuple[str, ...]] | None = None,
) -> None:
    """Write a complete :func:`embed_paths`-format directory from merged rows (``faces``:
    the :data:`FACE_COLUMNS` of each row, or None)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LrfaceError(f"{out}: already exists and is not empty; merge into a new directory")
    size = man0["settings"]["shard_size"]
    man = _new_manifest(man0["model"], man0["settings"], paths, size, None)
    check_writable(out, "dir", "output directory")
    out.mkdir(parents=True, exist_ok=True)
    _write_paths(out, paths)
    cut = np.searchsorted(rows, np.arange(man["n_shards"] + 1) * size)
    fail_rows = np.array([f[0] for f in fails], dtype=np.int64)
    fcut = np.searchsorted(fail_rows, np.arange(man["n_shards"] + 1) * size)
    for k in range(man["n_shards"]):
        man["completed_shards"].append(
            _write_shard(
                out,
                k,
                emb[cut[k] : cut[k + 1]],
                rows[cut[k] : cut[k + 1]],
                fails[fcut[k] : fcut[k + 1]],
                None if faces is None else faces[cut[k] : cut[k + 1]],
            )
        )
    _finish_manifest(out, man)
    _write_failures_tsv(out, man)


# ---------------------------------------------------------------------- single file


def write_npz(
    out_file: str | os.PathLike[str],
    paths: Sequence[str],
    embeddings: np.ndarray,
    failures: Sequence[Failure],
    meta: dict[str, Any] | None = None,
    faces: Sequence[dict[str, str]] | None = None,
) -> None:
    """Write embeddings to one ``.npz`` atomically (``lrface embed ... --out FILE.npz``);
    an existing ``out_file`` is replaced only when it is such a file too
    (:func:`lrface.io.outputs.check_output`).

    Arrays: ``paths`` unicode (N,), ``embeddings`` float32 (N, D), ``failed_paths`` and
    ``failed_errors`` unicode (F,), ``meta`` 0-d unicode JSON (``meta`` or ``{}``;
    ``lrface embed`` records :func:`output_meta`: the model and the crop settings); with
    ``faces`` (per path, :func:`load_face_info`'s dicts) also ``face_models`` and
    ``face_crops`` unicode (N,): the model that embedded each face and what its crop was
    cut as.  Readable with ``np.load(file, allow_pickle=False)`` or :func:`read_npz`.
    """
    emb = np.ascontiguousarray(np.asarray(embeddings), dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(paths):
        raise LrfaceError(f"write_npz: {len(paths)} paths but embeddings of shape {emb.shape}")
    check_output(out_file, "embeddings", "output")  # never replaces a file of another kind
    extra = {}
    if faces is not None:
        if len(faces) != len(paths):
            raise LrfaceError(f"write_npz: {len(paths)} paths but {len(faces)} face records")
        extra = {
            "face_models": _str_array([f.get("model", "") for f in faces]),
            "face_crops": _str_array([f.get("crop", "") for f in faces]),
        }
    save_npz_atomic(
        out_file,
        paths=_str_array(paths),
        embeddings=emb,
        failed_paths=_str_array([p for p, _ in failures]),
        failed_errors=_str_array([m for _, m in failures]),
        meta=np.array(json.dumps(meta or {})),
        **extra,
    )


def read_npz(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray, list[Failure]]:
    """Read a :func:`write_npz` file: ``(paths, float32 (N, D) embeddings, failures)``.

    The file is not trusted (:func:`lrface.io.fileio.read_npz_arrays`): anything that is
    not a consistent embeddings file raises :class:`LrfaceError`.
    """
    names = ("paths", "embeddings", "failed_paths", "failed_errors")
    fix = "write it again with `lrface embed ... --out FILE.npz`"
    try:
        z = read_npz_arrays(path, names)
    except NpzError as exc:
        raise LrfaceError(f"{path}: not an lrface embeddings file ({exc}); {fix}") from None
    emb = z["embeddings"]
    strings = [z[k] for k in ("paths", "failed_paths", "failed_errors")]
    if (
        emb.dtype.kind != "f"
        or emb.ndim != 2
        or any(a.dtype.kind != "U" or a.ndim != 1 for a in strings)
        or len(z["paths"]) != len(emb)
        or len(z["failed_paths"]) != len(z["failed_errors"])
    ):
        raise LrfaceError(
            f"{path}: not an lrface embeddings file (arrays of unexpected type or length); {fix}"
        )
    return (
        z["paths"].tolist(),
        emb,
        list(zip(z["failed_paths"].tolist(), z["failed_errors"].tolist())),
    )


def _str_array(items: Sequence[str]) -> np.ndarray:
    return np.array(list(items), dtype=str) if len(items) else np.zeros(0, dtype="<U1")
