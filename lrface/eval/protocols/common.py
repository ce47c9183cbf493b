"""What every evaluation protocol shares: model descriptions and cache keys, cached
crops and embeddings, the HR-model choice, and results entries.

* :func:`model_info` / :func:`model_key`: what identifies an embedder in results and caches;
* :func:`embed_cached`: embed N crops chunk by chunk with a progress bar, cached on disk
  under :func:`lrface.io.cache.cache_dir` keyed by the model, its preprocessing and the inputs;
* :func:`prepare_crops`: detect + align image files with the crop pipeline
  (:func:`lrface.faces.pipeline.prepare_many`), falling back to a plain resize (``--no-detect``
  style) when no face is found; the fallbacks are counted; cached on disk as well;
* :func:`hr_for` / :func:`hr_info` / :func:`check_hr_embedder`: the model that embeds the
  HR side (``--hr-model``);
* :func:`identification_entry`: one results entry from an identification report;
* :func:`protocol_result`: the dict every protocol returns.

The probe conditions (``--degrade``, ``--probe-crop``) are in :mod:`.conditions`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from lrface.errors import LrfaceError
from lrface.faces.detect import DEFAULT_DETECTOR, resolve_detector
from lrface.faces.pipeline import CropOptions, prepare_many
from lrface.faces.routing import crop_for
from lrface.io.cache import CROP_PART_ROWS, NpzCache, contiguous_runs, digest, file_signature
from lrface.io.fileio import sha256_file
from lrface.models.registry import find

if TYPE_CHECKING:
    from lrface.models.interface import Embedder, HrEmbedders

#: Crops embedded per call (and per progress-bar step).
EMBED_CHUNK = 256

LoadChunk = Callable[[int, int], Sequence[np.ndarray]]


def _weights_path(embedder: Embedder) -> Path | None:
    path = getattr(embedder, "path", None)
    if path:
        return Path(path)
    return find(embedder.spec)


def model_info(embedder: Embedder) -> dict[str, Any]:
    """JSON-serialisable description of an embedder for results files.

    ``sha256`` is the registry/card value, or the hash of the weights file when the
    registry has none (``None`` if the file cannot be found).
    """
    spec = embedder.spec
    path = _weights_path(embedder)
    sha = spec.sha256 or (sha256_file(path) if path is not None and path.is_file() else None)
    return {
        "name": embedder.name,
        "kind": spec.kind,
        "runtime": spec.runtime,
        "sha256": sha,
        "file": str(path) if path is not None else spec.file,
        "card": spec.card_path,
        "input_size": embedder.input_size,
        "embedding_size": embedder.embedding_size,
        "flip_fusion": bool(embedder.flip),
        "threshold": spec.threshold,
    }


def model_key(embedder: Embedder) -> str:
    """Cache key of an embedder's weights and preprocessing.

    The weights are identified by their sha256 when the registry/card has one, else by the
    card path and modification time (students), else by the weights file's path, size and
    modification time.  Input size, colour order, mean/std and flip fusion are included.
    """
    spec = embedder.spec
    if spec.sha256:
        weights = f"sha256:{spec.sha256}"
    elif spec.card_path and Path(spec.card_path).is_file():
        weights = f"card:{spec.card_path}:{os.stat(spec.card_path).st_mtime_ns}"
    else:
        path = _weights_path(embedder)
        if path is not None and path.is_file():
            st = path.stat()
            weights = f"file:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
        else:
            weights = f"name:{embedder.name}"
    return digest(weights, embedder.input_size, spec.color, spec.mean, spec.std, embedder.flip)


def embed_cached(
    embedder: Embedder,
    n: int,
    load: LoadChunk,
    key_parts: Sequence[object],
    desc: str = "embed",
    progress: bool = True,
    use_cache: bool = True,
) -> np.ndarray:
    """Embed ``n`` crops, ``load(start, stop)`` giving crops ``start..stop-1``.

    ``key_parts`` must identify the inputs exactly (file list, recipe, crop source); the
    model part of the key is :func:`model_key`.  Results are stored as
    ``cache_dir()/emb-<model>-<key>.npz``, built in parts of :data:`EMBED_CHUNK` crops
    (:meth:`lrface.io.cache.NpzCache.build`: an interrupted run resumes).  Returns
    float32 (n, D), rows L2-normalised.
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in embedder.name)[:40]
    entry = NpzCache.entry("emb", model_key(embedder), n, *key_parts, label=safe,
                           enabled=use_cache)  # fmt: skip
    cached = entry.load()
    if cached is not None and cached["emb"].shape[0] == n:
        return cached["emb"]
    with tqdm(total=n, desc=f"{desc} ({embedder.name})", disable=not progress, unit="img") as bar:

        def compute(rows: list[int]) -> Iterator[tuple[np.ndarray]]:
            for start, stop in contiguous_runs(rows, EMBED_CHUNK):
                crops = [crop_for(embedder, c) for c in load(start, stop)]
                yield from ((e,) for e in embedder.embed_crops(crops))
                bar.update(stop - start)

        got = entry.build(n, EMBED_CHUNK, ("emb",), compute, "crops")
    out = got["emb"].astype(np.float32) if n else np.zeros((0, embedder.embedding_size), np.float32)
    entry.save(emb=out)
    return out


def prepare_crops(
    paths: Sequence[Path],
    detect: bool = True,
    size: int = 112,
    detector: str = DEFAULT_DETECTOR,
    progress: bool = True,
    use_cache: bool = True,
    workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Detect + align every file (largest face), falling back to a resize of the whole image.

    With ``detect=False`` every image is a pre-cut face and only resized.  Crops come from
    the one crop pipeline (:func:`lrface.faces.pipeline.prepare_many`, ``on_no_face="resize"``;
    ``workers`` processes for large sets).  Cached on disk, keyed by the files' paths,
    sizes and modification times, built in parts of :data:`lrface.io.cache.CROP_PART_ROWS`
    images (an interrupted run resumes).  Returns ``(crops, fallback)``: uint8 BGR
    (N, size, size, 3) and bool (N,) (True = no face found, resized instead).  An
    unreadable file raises :class:`LrfaceError`.
    """
    paths = [Path(p) for p in paths]
    options = CropOptions(
        detect=detect,
        detector=detector if detect else DEFAULT_DETECTOR,
        size=size,
        on_no_face="resize" if detect else "error",
    )
    used = resolve_detector(detector) if detect else detector
    entry = NpzCache.entry("prepared", "prepare_face", detect, size, used,
                           *(file_signature(p) for p in paths), enabled=use_cache)  # fmt: skip
    cached = entry.load()
    if cached is not None:
        return cached["crops"], cached["fallback"]

    def compute(rows: list[int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(0, len(rows), CROP_PART_ROWS):  # one part at a time
            part = [paths[j] for j in rows[i : i + CROP_PART_ROWS]]
            yield from zip(*_crop_files(part, options, workers, progress))

    got = entry.build(len(paths), CROP_PART_ROWS, ("crops", "fallback"), compute, "images")
    if not paths:
        got = {"crops": np.zeros((0, size, size, 3), np.uint8), "fallback": np.zeros(0, bool)}
    crops, fallback = got["crops"].astype(np.uint8), got["fallback"].astype(bool)
    entry.save(crops=crops, fallback=fallback)
    return crops, fallback


def _crop_files(
    paths: Sequence[Path], options: CropOptions, workers: int, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Run the crop pipeline over ``paths`` with a progress bar (no cache).

    Returns uint8 BGR (N, size, size, 3) crops and bool (N,) fallback flags; an unreadable
    file raises :class:`LrfaceError`.
    """
    crops = np.zeros((len(paths), options.size, options.size, 3), np.uint8)
    fallback = np.zeros(len(paths), bool)
    what = "detect+align" if options.detect else "resize"
    i = 0
    with tqdm(total=len(paths), desc=what, disable=not progress, unit="img") as bar:
        for results in prepare_many(paths, options, workers):
            for r in results:
                if r.crop is None:
                    raise LrfaceError(f"{paths[i]}: {r.error}")
                crops[i], fallback[i] = r.crop, r.fallback
                i += 1
            bar.update(len(results))
    return crops, fallback


def protocol_result(
    protocol: str,
    embedders: Sequence[Embedder],
    hr_embedder: HrEmbedders,
    description: dict[str, Any],
    caption: str,
    results: list[dict[str, Any]],
) -> dict[str, Any]:
    """What every ``evaluate_*`` returns: ``{"protocol", "description", "models" (each
    :func:`model_info`), "hr_model" (:func:`hr_info`), "caption", "results"}``."""
    return {
        "protocol": protocol,
        "description": description,
        "models": [model_info(e) for e in embedders],
        "hr_model": hr_info(hr_embedder),
        "caption": caption,
        "results": results,
    }


def percent(x: float) -> str:
    return "nan" if x is None or x != x else f"{100.0 * x:.2f}"


def identification_entry(
    report: dict[str, Any],
    *,
    model: str,
    hr_model: str | None,
    condition: str,
    plot_group: str | None,
    cells: dict[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A results entry for one identification report (model x condition).

    ``cells`` are the table cells of this entry (column -> text); by default
    ``{"<condition> R1": rank-1 %, "<condition> mAP": mAP %}``.
    """
    if cells is None:
        cells = {
            f"{condition} R1": percent(report["cmc"].get(1, float("nan"))),
            f"{condition} mAP": percent(report["mAP"]),
        }
    return {
        "model": model,
        "hr_model": hr_model,
        "condition": condition,
        "kind": "identification",
        **fields,
        "row": row_label(model, hr_model),
        "cells": cells,
        "plot_group": plot_group,
        "plot_label": f"{row_label(model, hr_model)} {condition}".strip(),
        "metrics": report,
    }


def row_label(model: str, hr_model: str | None) -> str:
    """Table row name of a model, noting a different HR (gallery) model."""
    return f"{model} (HR: {hr_model})" if hr_model and hr_model != model else model


def hr_for(hr: HrEmbedders, emb: Embedder) -> Embedder:
    """The model that embeds the HR side for probe model ``emb``.

    ``hr`` is ``None`` (the model itself), one embedder for every model, or a mapping
    ``{model name: HR model}`` (``--hr-model auto``: each student's teacher).
    """
    if isinstance(hr, Mapping):
        return hr.get(emb.name, emb)
    return hr or emb


def hr_info(hr: HrEmbedders) -> Any:
    """JSON description of the HR-side choice."""
    if isinstance(hr, Mapping):
        return {"auto": {k: model_info(v) for k, v in hr.items()}}
    return model_info(hr) if hr else None


def check_hr_embedder(embedders: Sequence[Embedder], hr: HrEmbedders) -> None:
    """Raise :class:`LrfaceError` if ``hr``'s embeddings cannot be compared with a model's."""
    if not embedders:
        raise LrfaceError("no model given; pass --model NAME[,NAME...]")
    if hr is None:
        return
    for e in embedders:
        hr_e = hr_for(hr, e)
        if e.embedding_size != hr_e.embedding_size:
            raise LrfaceError(
                f"--hr-model {hr_e.name} gives {hr_e.embedding_size}-d embeddings but "
                f"{e.name} gives "
                f"{e.embedding_size}-d; the HR model must share the probe model's embedding space"
            )
