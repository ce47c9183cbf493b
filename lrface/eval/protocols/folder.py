"""The ``folder`` protocol (helpers shared with the other protocols: :mod:`.common`,
:mod:`.conditions`).

The folder protocol (:func:`evaluate_folder`) works on ``ROOT/<identity>/<images>``: the
first image (sorted by name) of each identity is enrolled at full resolution (HR gallery);
every other image is a probe, reduced to each size of ``sizes`` ("distances") with
:func:`lrface.faces.degrade.degrade`.  Optionally a folder of distractor images is added to the
gallery, and a fraction of identities can be left out of the gallery so their probes are
non-mated (open-set DIR@FPIR; without non-mated probes DIR is NaN).  Probe conditions as
in the LFW protocol: ``degrade="realistic"`` (each probe's draw fixed by a hash of its path
relative to ROOT and the size), ``probe_crop="box"`` (the largest face's detector box,
square, :func:`box_crops`) and ``probe_crop="given"`` (that box crop, reduced, read by the
default crop mode of pre-cut crops: aligned by the landmarks found inside it, else as a
box); the gallery stays aligned and clean.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrface.datasets.boxes import box_crops
from lrface.errors import DatasetError, LrfaceError
from lrface.eval.metrics import identification_report
from lrface.eval.protocols.common import (
    check_hr_embedder,
    embed_cached,
    file_signature,
    hr_for,
    identification_entry,
    percent,
    prepare_crops,
    protocol_result,
)
from lrface.eval.protocols.conditions import (
    check_box_needs_detection,
    check_condition,
    condition_caption,
    condition_info,
    condition_recipe,
    degradation_for,
    degrade_probe,
    given_crop,
    given_landmarks,
    stable_seed,
)
from lrface.faces.degrade import (
    BOX_HR_SIDE,
    BOX_MARGIN,
    REALISTIC,
    Degradation,
)
from lrface.faces.degrade import degrade as _degrade
from lrface.faces.detect import DEFAULT_DETECTOR
from lrface.io.images import list_images

if TYPE_CHECKING:
    from lrface.models.interface import Embedder, HrEmbedders

FOLDER_SIZES = (16, 12)
FOLDER_RANKS = (1, 5, 10, 20)
FOLDER_FPIRS = (1e-2, 1e-1)


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
    probe_crop: str  # "aligned" | "box" | "given"
    crops: np.ndarray  # uint8 BGR (N, 112, 112, 3), aligned (resized without detection)
    fallback: np.ndarray  # bool (N,): no face found, resized instead
    sigs: list[str]  # file signature of each image (cache keys, clean noise seeds)
    rel_seed: list[int]  # realistic draw of each image (hash of its path under ROOT)
    gi: np.ndarray  # int (G,): gallery rows of ``crops``
    pi: np.ndarray  # int (P,): probe rows
    crop_key: tuple[Any, ...]
    probe_src: np.ndarray  # uint8 BGR (N, 112, 112, 3): what the probes are reduced from
    probe_key: tuple[Any, ...]
    box_fallback: np.ndarray | None  # bool (P,) with probe_crop box/given, else None


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
    ``degrade`` (``clean``/``realistic``) and ``probe_crop`` (``aligned``/``box``/``given``) set the
    probe condition (see the module docstring); ``box`` needs detection (not ``no_detect``).

    Returns ``{"protocol", "description", "models", "hr_model", "caption", "results"}``;
    one entry per model and size with the :func:`identification_report` (CMC rank
    1/5/10/20, mAP, DIR@FPIR 1e-2/1e-1).
    """
    check_condition(degrade, probe_crop)
    check_box_needs_detection(probe_crop, not no_detect)
    check_hr_embedder(embedders, hr_embedder)
    root = Path(data).expanduser()
    split = _split_folder(scan_folder(root), distractors, nonmated_fraction, seed)
    fc = _prepare(root, split, not no_detect, detector, degrade, probe_crop, progress, use_cache)
    run = _FolderRun(fc, split, recipe, ranks, fpirs, progress, use_cache)
    entries = [e for emb in embedders for e in run.model_entries(emb, hr_embedder, sizes)]
    description = _describe(root, run, sizes, distractors, nonmated_fraction, seed)
    caption = f"Folder {root.name}: HR gallery vs LR probes, rank-1 / mAP / DIR@FPIR=1% (%); "
    caption += condition_caption(degrade, probe_crop)
    return protocol_result("folder", embedders, hr_embedder, description, caption, entries)


@dataclasses.dataclass
class _FolderRun:
    """The settings of one :func:`evaluate_folder` call shared by every model's entries."""

    fc: _FolderCrops
    split: _FolderSplit
    recipe: Degradation | None
    ranks: Sequence[int]
    fpirs: Sequence[float]
    progress: bool
    use_cache: bool

    def model_entries(
        self, emb: Embedder, hr_embedder: HrEmbedders, sizes: Sequence[int]
    ) -> list[dict[str, Any]]:
        """The result entries of one model: one per size of ``sizes``."""
        hr = hr_for(hr_embedder, emb)
        g_emb = _embed_gallery(self.fc, hr, self.progress, self.use_cache)
        return [self._size_entry(emb, hr, g_emb, s) for s in sizes]

    def _size_entry(
        self, emb: Embedder, hr: Embedder, g_emb: np.ndarray, size: int
    ) -> dict[str, Any]:
        """The entry of ``emb``'s probes reduced to ``size`` against the gallery ``g_emb``
        (float32 (G, D), embedded by ``hr``)."""
        fc, split = self.fc, self.split
        deg = degradation_for(size, self.recipe)
        p_emb = _embed_probes(fc, emb, deg, self.progress, self.use_cache)
        p_ids, g_ids = np.array(split.probe_ids), np.array(split.gallery_ids)
        rep = identification_report(p_emb, p_ids, g_emb, g_ids, self.ranks, self.fpirs)
        return identification_entry(
            rep,
            model=emb.name,
            hr_model=hr.name if hr is not emb else None,
            condition=f"{size}px",
            plot_group=f"{size}px",
            size=size,
            recipe=condition_recipe(deg, fc.degrade, fc.probe_crop),
            degrade=fc.degrade,
            probe_crop=fc.probe_crop,
            cells=_folder_cells(rep, size),
        )


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
    if probe_crop in ("box", "given"):
        probe_src = np.zeros_like(crops)
        bcrops, fb_box, _ = box_crops(
            [all_paths[i] for i in pi], detector, progress=progress, use_cache=use_cache
        )
        probe_src[pi] = bcrops
        probe_key = (probe_crop, BOX_MARGIN, BOX_HR_SIDE, detector)
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

    def reduce(i: int) -> np.ndarray:
        if fc.degrade == "realistic":
            return degrade_probe(fc.probe_src[i], deg, fc.degrade, fc.rel_seed[i])
        return _degrade(fc.probe_src[i], deg, stable_seed(fc.sigs[i]))

    key = (*fc.probe_key, deg.describe(), deg, *[fc.sigs[i] for i in fc.pi])
    if fc.probe_crop == "given":  # read as pre-cut crops: landmarks searched inside
        probes = [reduce(i) for i in fc.pi]
        lms, found = given_landmarks(probes, fc.detector, key, progress, use_cache)

        def load(a: int, b: int) -> list[np.ndarray]:
            return [
                given_crop(probes[k], lms[k] if found[k] else None, emb.input_size)
                for k in range(a, b)
            ]

        key = (*key, "given-crop", emb.input_size)
    else:

        def load(a: int, b: int) -> list[np.ndarray]:
            return [reduce(i) for i in fc.pi[a:b]]

    return embed_cached(
        emb,
        len(fc.pi),
        load,
        key,
        desc=f"probes {deg.size}px",
        progress=progress,
        use_cache=use_cache,
    )


def _describe(
    root: Path,
    run: _FolderRun,
    sizes: Sequence[int],
    distractors: str | Path | None,
    nonmated_fraction: float,
    seed: int,
) -> dict[str, Any]:
    """The run's ``description`` for results.json."""
    fc, split, recipe = run.fc, run.split, run.recipe
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
        "ranks": list(run.ranks),
        "fpirs": list(run.fpirs),
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
