"""The ``folder`` protocol, plus the helpers every protocol shares.

Shared helpers (used by :mod:`.lfw`, :mod:`.tinyface`, :mod:`.scface`):

* :func:`model_info` / :func:`model_key`: what identifies an embedder in results and caches;
* :func:`embed_cached`: embed N crops chunk by chunk with a progress bar, cached on disk
  under :func:`lrface.cache.cache_dir` keyed by the model, its preprocessing and the inputs;
* :func:`prepare_crops`: detect + align image files with the crop pipeline
  (:func:`lrface.pipeline.prepare_many`), falling back to a plain resize (``--no-detect``
  style) when no face is found; the fallbacks are counted; cached on disk as well;
* :func:`identification_entry`: one results entry from an identification report.

The folder protocol (:func:`evaluate_folder`) works on ``ROOT/<identity>/<images>``: the
first image (sorted by name) of each identity is enrolled at full resolution (HR gallery);
every other image is a probe, reduced to each size of ``sizes`` ("distances") with
:func:`lrface.degrade.degrade`.  Optionally a folder of distractor images is added to the
gallery, and a fraction of identities can be left out of the gallery so their probes are
non-mated (open-set DIR@FPIR; without non-mated probes DIR is NaN).  Probe conditions as
in the LFW protocol: ``degrade="realistic"`` (each probe's draw fixed by a hash of its path
relative to ROOT and the size) and ``probe_crop="box"`` (the largest face's detector box,
square, :func:`box_crops`); the gallery stays aligned and clean.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from ...cache import cache_dir, digest
from ...degrade import (
    BOX_HR_SIDE,
    BOX_MARGIN,
    DEGRADE_CHOICES,
    PROBE_CROPS,
    REALISTIC,
    Degradation,
    box_crop,
    degrade_realistic,
    realistic_rng,
)
from ...degrade import degrade as _degrade
from ...detect import DEFAULT_DETECTOR, resolve_detector
from ...errors import DatasetError, LrfaceError
from ...fileio import save_npz_atomic, sha256_file
from ...io import list_images
from ...models.embedder import Embedder
from ...models.registry import find
from ...pipeline import CropOptions, prepare_many
from ..metrics import identification_report

if TYPE_CHECKING:
    from ...models.interface import HrEmbedders

FOLDER_SIZES = (16, 12)
FOLDER_RANKS = (1, 5, 10, 20)
FOLDER_FPIRS = (1e-2, 1e-1)
#: Crops embedded per call (and per progress-bar step).
EMBED_CHUNK = 256

LoadChunk = Callable[[int, int], Sequence[np.ndarray]]


# --------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------


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


def file_signature(path: Path) -> str:
    """``path:size:mtime`` of an existing file (cache keys of user datasets)."""
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


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
    ``cache_dir()/emb-<model>-<key>.npz``.  Returns float32 (n, D), rows L2-normalised.
    """
    key = digest(model_key(embedder), n, *key_parts)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in embedder.name)[:40]
    fn = cache_dir() / f"emb-{safe}-{key}.npz"
    if use_cache and fn.is_file():
        with np.load(fn, allow_pickle=False) as z:
            emb = z["emb"]
        if emb.shape[0] == n:
            return emb
    out = np.zeros((n, embedder.embedding_size), np.float32)
    with tqdm(total=n, desc=f"{desc} ({embedder.name})", disable=not progress, unit="img") as bar:
        for start in range(0, n, EMBED_CHUNK):
            stop = min(n, start + EMBED_CHUNK)
            out[start:stop] = embedder.embed_crops(list(load(start, stop)))
            bar.update(stop - start)
    if use_cache:
        save_npz_atomic(fn, emb=out)
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
    the one crop pipeline (:func:`lrface.pipeline.prepare_many`, ``on_no_face="resize"``;
    ``workers`` processes for large sets).  Cached on disk, keyed by the files' paths,
    sizes and modification times.  Returns ``(crops, fallback)``: uint8 BGR
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
    key = digest("prepare_face", detect, size, used, *(file_signature(p) for p in paths))
    fn = cache_dir() / f"prepared-{key}.npz"
    if use_cache and fn.is_file():
        with np.load(fn, allow_pickle=False) as z:
            return z["crops"], z["fallback"]
    crops = np.zeros((len(paths), size, size, 3), np.uint8)
    fallback = np.zeros(len(paths), bool)
    what = "detect+align" if detect else "resize"
    i = 0
    with tqdm(total=len(paths), desc=what, disable=not progress, unit="img") as bar:
        for results in prepare_many(paths, options, workers):
            for r in results:
                if r.crop is None:
                    raise LrfaceError(f"{paths[i]}: {r.error}")
                crops[i], fallback[i] = r.crop, r.fallback
                i += 1
            bar.update(len(results))
    if use_cache:
        save_npz_atomic(fn, crops=crops, fallback=fallback)
    return crops, fallback


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


def hr_for(hr: Embedder | dict[str, Embedder] | None, emb: Embedder) -> Embedder:
    """The model that embeds the HR side for probe model ``emb``.

    ``hr`` is ``None`` (the model itself), one embedder for every model, or a mapping
    ``{model name: HR model}`` (``--hr-model auto``: each student's teacher).
    """
    if isinstance(hr, dict):
        return hr.get(emb.name, emb)
    return hr or emb


def hr_info(hr: Embedder | dict[str, Embedder] | None) -> Any:
    """JSON description of the HR-side choice."""
    if isinstance(hr, dict):
        return {"auto": {k: model_info(v) for k, v in hr.items()}}
    return model_info(hr) if hr else None


def check_hr_embedder(embedders: Sequence[Embedder], hr: Embedder | dict | None) -> None:
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


def degradation_for(size: int, recipe: Degradation | None) -> Degradation:
    """``recipe`` (default: area reduction only) at ``size``."""
    return dataclasses.replace(recipe, size=size) if recipe else Degradation(size=size)


def stable_seed(name: str) -> int:
    """Per-file noise seed that does not depend on list order."""
    return int(digest(name, n=8), 16)


def check_condition(kind: str, probe_crop: str) -> None:
    """Raise a one-line :class:`LrfaceError` for an unknown ``--degrade`` / ``--probe-crop``."""
    if kind not in DEGRADE_CHOICES:
        raise LrfaceError(f"--degrade {kind!r} is not known; choose {' or '.join(DEGRADE_CHOICES)}")
    if probe_crop not in PROBE_CROPS:
        raise LrfaceError(
            f"--probe-crop {probe_crop!r} is not known; choose {' or '.join(PROBE_CROPS)}"
        )


def condition_recipe(deg: Degradation, kind: str, probe_crop: str) -> str:
    """The probe recipe of one size under a condition (the plain ``deg.describe()`` for
    clean aligned probes)."""
    text = deg.describe()
    if probe_crop == "box":
        text = f"box crop ({BOX_MARGIN:g}x detector box, square, {BOX_HR_SIDE}px), " + text
    if kind == "realistic":
        text += "; then " + REALISTIC.describe()
    return text


def condition_info(kind: str, probe_crop: str, detector: str) -> dict[str, Any]:
    """JSON description of the probe condition for results files."""
    return {
        "degrade": kind,
        "degrade_recipe": REALISTIC.describe()
        if kind == "realistic"
        else "none: area reduction only",
        "probe_crop": probe_crop,
        "probe_crop_recipe": (
            f"{detector} box of the face (no landmarks), made square around its centre with "
            f"side {BOX_MARGIN:g} x max(w, h), cut from the HR photo (edge replicated "
            f"outside), area-resized to {BOX_HR_SIDE}x{BOX_HR_SIDE}, then reduced"
        )
        if probe_crop == "box"
        else "5-point ArcFace template alignment at 112x112, then reduced",
    }


def condition_caption(kind: str, probe_crop: str) -> str:
    """``"probes: aligned crops, clean"``-style caption suffix."""
    what = "realistic blur/noise/JPEG" if kind == "realistic" else "clean area reduction"
    crop = "detector-box crops" if probe_crop == "box" else "aligned crops"
    return f"probes: {crop}, {what}"


def degrade_probe(
    crop: np.ndarray, deg: Degradation, kind: str, index: int, side: int = 0
) -> np.ndarray:
    """One probe under the condition ``kind``: ``degrade(crop, deg)`` (clean; noise seeded by
    ``index`` if ``deg`` adds any) or :func:`degrade_realistic` with the draw of
    :func:`realistic_rng` ``(index, deg.size, side)``.  uint8 BGR in and out."""
    if kind == "realistic":
        return degrade_realistic(crop, deg, realistic_rng(index, deg.size, side))
    return _degrade(crop, deg, index)


def _detect_box_one(path: Path, detector: str) -> tuple[np.ndarray, bool, np.ndarray]:
    """Box crop of the largest face of one file; the whole image when no face is found."""
    from ...align import resize_crop
    from ...detect import load_detector
    from ...io import read_image

    image = read_image(path)
    faces = load_detector(detector).detect(image)
    if faces:
        box = faces[0].box.astype(np.float32)
        return box_crop(image, box), False, box
    h, w = image.shape[:2]
    return resize_crop(image, BOX_HR_SIDE), True, np.array([0, 0, w, h], np.float32)


def box_crops(
    paths: Sequence[Path],
    detector: str = DEFAULT_DETECTOR,
    progress: bool = True,
    use_cache: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``--probe-crop box`` crops of image files: the largest face's detector box, square,
    :data:`BOX_MARGIN` x, at :data:`BOX_HR_SIDE` (:func:`lrface.degrade.box_crop`); a resize
    of the whole image when no face is found.  Cached on disk like :func:`prepare_crops`.

    Returns ``(crops, fallback, boxes)``: uint8 BGR (N, 112, 112, 3), bool (N,) and float32
    (N, 4) detector boxes x1, y1, x2, y2 (the whole image for a fallback).
    """
    paths = [Path(p) for p in paths]
    sigs = [file_signature(p) for p in paths]
    key = digest("box_crops", detector, BOX_MARGIN, BOX_HR_SIDE, *sigs)
    fn = cache_dir() / f"boxcrops-{key}.npz"
    if use_cache and fn.is_file():
        with np.load(fn, allow_pickle=False) as z:
            return z["crops"], z["fallback"], z["boxes"]
    crops = np.zeros((len(paths), BOX_HR_SIDE, BOX_HR_SIDE, 3), np.uint8)
    fallback = np.zeros(len(paths), bool)
    boxes = np.zeros((len(paths), 4), np.float32)
    for i, p in enumerate(tqdm(paths, desc="detect boxes", disable=not progress, unit="img")):
        crops[i], fallback[i], boxes[i] = _detect_box_one(p, detector)
    if use_cache:
        save_npz_atomic(fn, crops=crops, fallback=fallback, boxes=boxes)
    return crops, fallback, boxes


# --------------------------------------------------------------------------------------
# the folder protocol
# --------------------------------------------------------------------------------------


def scan_folder(root: str | Path) -> dict[str, list[Path]]:
    """``{identity: sorted image paths}`` of ``ROOT/<identity>/<images>`` (identities sorted).

    Raises :class:`DatasetError` when ``root`` is missing, not a directory or has no
    identity sub-folder holding images.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(
            f"{root}: folder dataset not found; pass --data ROOT/<identity>/<images>"
        )
    out: dict[str, list[Path]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        imgs = list_images(d)
        if imgs:
            out[d.name] = imgs
    if not out:
        found = sorted(p.name for p in root.iterdir())[:6]
        raise DatasetError(
            f"{root}: no identity folders with images (expected ROOT/<identity>/<images>.jpg; "
            f"found {found})"
        )
    if not any(len(v) > 1 for v in out.values()):
        raise DatasetError(
            f"{root}: every identity folder holds a single image; probes need a second image "
            "per identity (the first, sorted by name, is the gallery image)"
        )
    return out


@dataclasses.dataclass
class _FolderSplit:
    gallery_paths: list[Path]
    gallery_ids: list[str]
    probe_paths: list[Path]
    probe_ids: list[str]
    held_out: list[str]
    n_distractors: int
    n_identities: int


def _split_folder(
    identities: dict[str, list[Path]],
    distractors: str | Path | None,
    nonmated_fraction: float,
    seed: int,
) -> _FolderSplit:
    if not 0.0 <= nonmated_fraction < 1.0:
        raise LrfaceError(f"--nonmated-fraction must be in [0, 1), got {nonmated_fraction}")
    with_probes = sorted(k for k, v in identities.items() if len(v) > 1)
    n_held = round(nonmated_fraction * len(with_probes))
    rng = np.random.default_rng(seed)
    held = sorted(rng.choice(with_probes, n_held, replace=False).tolist()) if n_held else []
    g_paths, g_ids, p_paths, p_ids = [], [], [], []
    for ident, imgs in identities.items():
        if ident not in held:
            g_paths.append(imgs[0])
            g_ids.append(ident)
        p_paths.extend(imgs[1:])
        p_ids.extend([ident] * (len(imgs) - 1))
    n_distr = 0
    if distractors is not None:
        droot = Path(distractors).expanduser()
        if not droot.is_dir():
            raise DatasetError(f"{droot}: distractor folder not found")
        dimgs = list_images(droot)
        if not dimgs:
            raise DatasetError(f"{droot}: distractor folder holds no images")
        g_paths.extend(dimgs)
        # "/" cannot occur in a folder name: distractor ids never equal an identity.
        g_ids.extend(f"/distractor/{p.relative_to(droot)}" for p in dimgs)
        n_distr = len(dimgs)
    return _FolderSplit(g_paths, g_ids, p_paths, p_ids, held, n_distr, len(identities))


@dataclasses.dataclass
class _FolderCrops:
    """Every image of one run prepared once, under the run's crop and probe condition:
    aligned crops for the gallery, the crops probes are reduced from, and cache keys."""

    detect: bool
    detector: str
    degrade: str  # "clean" | "realistic"
    probe_crop: str  # "aligned" | "box"
    crops: np.ndarray  # uint8 BGR (N, 112, 112, 3), aligned (resized without detection)
    fallback: np.ndarray  # bool (N,): no face found, resized instead
    sigs: list[str]  # file signature of each image (cache keys, clean noise seeds)
    rel_seed: list[int]  # realistic draw of each image (hash of its path under ROOT)
    gi: np.ndarray  # int (G,): gallery rows of ``crops``
    pi: np.ndarray  # int (P,): probe rows
    crop_key: tuple[Any, ...]
    probe_src: np.ndarray  # uint8 BGR (N, 112, 112, 3): what the probes are reduced from
    probe_key: tuple[Any, ...]
    box_fallback: np.ndarray | None  # bool (P,) with probe_crop="box", else None


def evaluate_folder(
    embedders: Sequence[Embedder],
    data: str | Path,
    *,
    sizes: Sequence[int] = FOLDER_SIZES,
    hr_embedder: HrEmbedders = None,
    distractors: str | Path | None = None,
    nonmated_fraction: float = 0.0,
    no_detect: bool = False,
    ranks: Sequence[int] = FOLDER_RANKS,
    fpirs: Sequence[float] = FOLDER_FPIRS,
    recipe: Degradation | None = None,
    seed: int = 0,
    detector: str = DEFAULT_DETECTOR,
    progress: bool = True,
    use_cache: bool = True,
    degrade: str = "clean",
    probe_crop: str = "aligned",
) -> dict[str, Any]:
    """HR-gallery vs LR-probe identification on ``ROOT/<identity>/<images>``.

    Gallery: the first image of each identity (aligned 112x112, embedded by ``hr_embedder``
    or the model itself) plus the distractor images.  Probes: every other image, aligned,
    then reduced to each size of ``sizes`` (``recipe``, default area reduction) and
    embedded by the model.  ``nonmated_fraction`` of the identities with probes
    (deterministic, ``seed``) are left out of the gallery so their probes are non-mated.
    ``degrade`` (``clean``/``realistic``) and ``probe_crop`` (``aligned``/``box``) set the
    probe condition (see the module docstring); ``box`` needs detection (not ``no_detect``).

    Returns ``{"protocol", "description", "models", "hr_model", "caption", "results"}``;
    one entry per model and size with the :func:`identification_report` (CMC rank
    1/5/10/20, mAP, DIR@FPIR 1e-2/1e-1).
    """
    check_condition(degrade, probe_crop)
    if probe_crop == "box" and no_detect:
        raise LrfaceError(
            "--probe-crop box cuts the detector's box; it cannot be combined with --no-detect"
        )
    check_hr_embedder(embedders, hr_embedder)
    root = Path(data).expanduser()
    split = _split_folder(scan_folder(root), distractors, nonmated_fraction, seed)
    fc = _prepare(root, split, not no_detect, detector, degrade, probe_crop, progress, use_cache)
    p_ids, g_ids = np.array(split.probe_ids), np.array(split.gallery_ids)
    entries: list[dict[str, Any]] = []
    for emb in embedders:
        hr = hr_for(hr_embedder, emb)
        g_emb = _embed_gallery(fc, hr, progress, use_cache)
        for s in sizes:
            deg = degradation_for(s, recipe)
            p_emb = _embed_probes(fc, emb, deg, progress, use_cache)
            rep = identification_report(p_emb, p_ids, g_emb, g_ids, ranks, fpirs)
            entries.append(
                identification_entry(
                    rep,
                    model=emb.name,
                    hr_model=hr.name if hr is not emb else None,
                    condition=f"{s}px",
                    plot_group=f"{s}px",
                    size=s,
                    recipe=condition_recipe(deg, degrade, probe_crop),
                    degrade=degrade,
                    probe_crop=probe_crop,
                    cells=_folder_cells(rep, s),
                )
            )
    return {
        "protocol": "folder",
        "description": _describe(
            root, split, fc, sizes, recipe, distractors, nonmated_fraction, ranks, fpirs, seed
        ),
        "models": [model_info(e) for e in embedders],
        "hr_model": hr_info(hr_embedder),
        "caption": f"Folder {root.name}: HR gallery vs LR probes, rank-1 / mAP / DIR@FPIR=1% (%); "
        + condition_caption(degrade, probe_crop),
        "results": entries,
    }


def _prepare(
    root: Path,
    split: _FolderSplit,
    detect: bool,
    detector: str,
    degrade: str,
    probe_crop: str,
    progress: bool,
    use_cache: bool,
) -> _FolderCrops:
    """Align every gallery and probe image once (and cut the probes' detector boxes with
    ``probe_crop="box"``); cached on disk."""
    all_paths = list(dict.fromkeys(split.gallery_paths + split.probe_paths))
    index = {p: i for i, p in enumerate(all_paths)}
    crops, fallback = prepare_crops(
        all_paths, detect=detect, detector=detector, progress=progress, use_cache=use_cache
    )
    gi = np.array([index[p] for p in split.gallery_paths])
    pi = np.array([index[p] for p in split.probe_paths])
    crop_key: tuple[Any, ...] = ("prepared", detect, detector)
    probe_src, probe_key, fb_box = crops, crop_key, None
    if probe_crop == "box":
        probe_src = np.zeros_like(crops)
        bcrops, fb_box, _ = box_crops(
            [all_paths[i] for i in pi], detector, progress=progress, use_cache=use_cache
        )
        probe_src[pi] = bcrops
        probe_key = ("box", BOX_MARGIN, BOX_HR_SIDE, detector)
    rel_seed = [stable_seed(_relative(p, root)) for p in all_paths]
    if degrade == "realistic":
        probe_key = (*probe_key, "realistic", REALISTIC.describe(), *(rel_seed[i] for i in pi))
    sigs = [file_signature(p) for p in all_paths]
    return _FolderCrops(
        detect, detector, degrade, probe_crop, crops, fallback, sigs, rel_seed, gi, pi,
        crop_key, probe_src, probe_key, fb_box,
    )  # fmt: skip


def _embed_gallery(fc: _FolderCrops, hr: Embedder, progress: bool, use_cache: bool) -> np.ndarray:
    """The aligned gallery crops embedded by ``hr`` (cached): float32 (G, D)."""
    return embed_cached(
        hr,
        len(fc.gi),
        lambda a, b: fc.crops[fc.gi[a:b]],
        (*fc.crop_key, "hr", *[fc.sigs[i] for i in fc.gi]),
        desc="gallery",
        progress=progress,
        use_cache=use_cache,
    )


def _embed_probes(
    fc: _FolderCrops, emb: Embedder, deg: Degradation, progress: bool, use_cache: bool
) -> np.ndarray:
    """The probes reduced by ``deg`` under the run's condition, embedded by ``emb``
    (cached): float32 (P, D)."""

    def load(a: int, b: int) -> list[np.ndarray]:
        if fc.degrade == "realistic":
            return [
                degrade_probe(fc.probe_src[i], deg, fc.degrade, fc.rel_seed[i]) for i in fc.pi[a:b]
            ]
        return [_degrade(fc.probe_src[i], deg, stable_seed(fc.sigs[i])) for i in fc.pi[a:b]]

    return embed_cached(
        emb,
        len(fc.pi),
        load,
        (*fc.probe_key, deg.describe(), deg, *[fc.sigs[i] for i in fc.pi]),
        desc=f"probes {deg.size}px",
        progress=progress,
        use_cache=use_cache,
    )


def _describe(
    root: Path,
    split: _FolderSplit,
    fc: _FolderCrops,
    sizes: Sequence[int],
    recipe: Degradation | None,
    distractors: str | Path | None,
    nonmated_fraction: float,
    ranks: Sequence[int],
    fpirs: Sequence[float],
    seed: int,
) -> dict[str, Any]:
    """The run's ``description`` for results.json."""
    cond = (fc.degrade, fc.probe_crop)
    return {
        "dataset": str(root),
        "layout": "ROOT/<identity>/<images>; gallery = first image (sorted) per identity",
        "n_identities": split.n_identities,
        "n_gallery": len(split.gallery_paths),
        "n_distractors": split.n_distractors,
        "distractor_dir": str(distractors) if distractors else None,
        "n_probes": len(split.probe_paths),
        "nonmated_fraction": nonmated_fraction,
        "nonmated_identities": split.held_out,
        "n_nonmated_probes": int(np.isin(split.probe_ids, split.held_out).sum()),
        "sizes": list(sizes),
        "recipes": {str(s): condition_recipe(degradation_for(s, recipe), *cond) for s in sizes},
        "condition": condition_info(*cond, fc.detector),
        "box_fallbacks": int(fc.box_fallback.sum()) if fc.box_fallback is not None else None,
        "alignment": f"{fc.detector} detection, largest face, 5-point ArcFace alignment to "
        "112x112; resize of the whole image when no face is found"
        if fc.detect
        else "none: images resized (--no-detect)",
        "alignment_fallbacks": {
            "gallery": int(fc.fallback[fc.gi].sum()),
            "probes": int(fc.fallback[fc.pi].sum()) if len(fc.pi) else 0,
        },
        "score": "cosine similarity of L2-normalised embeddings",
        "ranks": list(ranks),
        "fpirs": list(fpirs),
        "seed": seed,
    }


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (posix) when inside it, else its full path."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _folder_cells(rep: dict[str, Any], size: int) -> dict[str, str]:
    cells = {
        f"{size}px R1": percent(rep["cmc"].get(1, float("nan"))),
        f"{size}px mAP": percent(rep["mAP"]),
    }
    dir1 = rep["dir_at_fpir"].get(1e-2, float("nan"))
    cells[f"{size}px DIR@1%"] = percent(dir1)
    return cells
