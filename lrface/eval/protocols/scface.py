"""SCface: HR mugshot gallery vs surveillance-camera probes at three distances.

Layout (the official SCface folders)::

    ROOT/mugshot_frontal_cropped_all/NNN_frontal.JPG           gallery, one per subject
    ROOT/surveillance_cameras_distance_{1,2,3}/camN/NNN_camN_D.jpg   probes

Mugshots are detected and aligned (:func:`lrface.faces.pipeline.prepare_face`, largest face,
112x112); probes too, falling back to a plain resize of the crop when no face is found
(the fallbacks are counted per distance).  With ``no_detect`` every image is resized.
Reported: CMC rank-1/5/10 and mAP per distance (all cameras) and per camera (all
distances), and the rank-1 of every distance x camera cell.  ``exclude_subjects`` removes
subjects (e.g. a training subset) from both sides.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrface.errors import DatasetError
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
from lrface.faces.detect import DEFAULT_DETECTOR

if TYPE_CHECKING:
    from lrface.models.interface import Embedder, HrEmbedders

MUGSHOT_DIR = "mugshot_frontal_cropped_all"
DISTANCE_DIR = "surveillance_cameras_distance_{}"
DISTANCES = (1, 2, 3)
SCFACE_RANKS = (1, 5, 10)
_MUG_RE = re.compile(r"^(\d+)_frontal\.(jpe?g|png|bmp)$", re.IGNORECASE)
_PROBE_RE = re.compile(r"^(\d+)_cam(\d+)_(\d+)\.(jpe?g|png|bmp)$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Probe:
    """One surveillance image: subject id, camera number, distance (1 = farthest), file."""

    subject: int
    camera: int
    distance: int
    path: Path


def scan_scface(root: str | Path) -> tuple[dict[int, Path], list[Probe]]:
    """``({subject: mugshot path}, probes sorted by distance, camera, subject)``.

    Raises :class:`DatasetError` naming the expected layout and what was found.
    """
    root = Path(root).expanduser()
    expected = (
        f"expected {MUGSHOT_DIR}/NNN_frontal.JPG and "
        f"{DISTANCE_DIR.format('{1,2,3}')}/camN/NNN_camN_D.jpg"
    )
    if not root.is_dir():
        raise DatasetError(f"{root}: SCface directory not found; {expected}")
    mug_dir = root / MUGSHOT_DIR
    dist_dirs = [root / DISTANCE_DIR.format(d) for d in DISTANCES]
    if not mug_dir.is_dir() or not any(d.is_dir() for d in dist_dirs):
        found = sorted(p.name for p in root.iterdir())[:8]
        raise DatasetError(f"{root}: not an SCface layout; {expected}; found {found}")
    mugs = {}
    for p in sorted(mug_dir.iterdir()):
        m = _MUG_RE.match(p.name)
        if m and p.is_file():
            mugs[int(m.group(1))] = p
    if not mugs:
        raise DatasetError(f"{mug_dir}: no NNN_frontal.JPG mugshots; {expected}")
    probes = []
    for dist, ddir in zip(DISTANCES, dist_dirs):
        if not ddir.is_dir():
            continue
        for p in sorted(ddir.rglob("*")):
            m = _PROBE_RE.match(p.name)
            if m and p.is_file():
                probes.append(Probe(int(m.group(1)), int(m.group(2)), dist, p))
    if not probes:
        raise DatasetError(f"{root}: no probe images NNN_camN_D.jpg; {expected}")
    probes.sort(key=lambda q: (q.distance, q.camera, q.subject, q.path.name))
    return mugs, probes


@dataclasses.dataclass
class _ScfaceSet:
    """The gallery (mugshots) and probes of one run, with their prepared crops."""

    g_paths: list[Path]
    g_ids: np.ndarray  # int64 (G,) subject ids
    g_crops: np.ndarray  # uint8 BGR (G, 112, 112, 3)
    g_fallback: np.ndarray  # bool (G,): no face found, resized instead
    p_paths: list[Path]
    p_ids: np.ndarray  # int64 (P,)
    p_crops: np.ndarray  # uint8 BGR (P, 112, 112, 3)
    p_fallback: np.ndarray  # bool (P,)
    cameras: np.ndarray  # int (P,)
    distances: np.ndarray  # int (P,)
    excluded: set[int]
    crop_key: tuple[Any, ...]  # cache key of the crop recipe


def evaluate_scface(
    embedders: Sequence[Embedder],
    data: str | Path,
    *,
    hr_embedder: HrEmbedders = None,
    no_detect: bool = False,
    exclude_subjects: Sequence[int] = (),
    ranks: Sequence[int] = SCFACE_RANKS,
    detector: str = DEFAULT_DETECTOR,
    progress: bool = True,
    use_cache: bool = True,
) -> dict[str, Any]:
    """SCface identification per distance and per camera.

    Gallery = mugshots (embedded by ``hr_embedder`` or the model), probes = surveillance
    images (embedded by the model).  Probes of subjects without a mugshot are non-mated.
    Returns ``{"protocol", "description", "models", "hr_model", "caption", "results"}``:
    per model one entry per distance (``distance``), one per camera (``camera``), and
    each distance entry's metrics carry ``rank1_by_camera``.
    """
    check_hr_embedder(embedders, hr_embedder)
    sc = _prepare(data, exclude_subjects, not no_detect, detector, progress, use_cache)
    entries: list[dict[str, Any]] = []
    for emb in embedders:
        hr = hr_for(hr_embedder, emb)
        g_emb, p_emb = _embed(sc, hr, emb, progress, use_cache)

        def report(mask: np.ndarray, p_emb=p_emb, g_emb=g_emb) -> dict[str, Any]:
            return identification_report(
                p_emb[mask], sc.p_ids[mask], g_emb, sc.g_ids, ranks, fpirs=(1e-1,)
            )

        entries += _entries(sc, report, emb.name, hr.name if hr is not emb else None)
    description = _describe(sc, data, no_detect, detector, ranks)
    caption = (
        "SCface: rank-1 identification (%) per distance (d1 = 4.2 m, d3 = 1.0 m) "
        "and per camera, mugshot gallery"
    )
    return protocol_result("scface", embedders, hr_embedder, description, caption, entries)


def _prepare(
    data: str | Path,
    exclude_subjects: Sequence[int],
    detect: bool,
    detector: str,
    progress: bool,
    use_cache: bool,
) -> _ScfaceSet:
    """Scan the layout, leave out ``exclude_subjects`` and prepare every crop (cached)."""
    mugs, probes = scan_scface(data)
    excl = {int(s) for s in exclude_subjects}
    mugs = {s: p for s, p in mugs.items() if s not in excl}
    probes = [q for q in probes if q.subject not in excl]
    if not mugs or not probes:
        raise DatasetError(f"{data}: no subjects left after excluding {len(excl)}")
    g_paths = list(mugs.values())
    p_paths = [q.path for q in probes]
    opts: dict[str, Any] = {"detector": detector, "progress": progress, "use_cache": use_cache}
    g_crops, g_fb = prepare_crops(g_paths, detect, **opts)
    p_crops, p_fb = prepare_crops(p_paths, detect, **opts)
    return _ScfaceSet(
        g_paths=g_paths,
        g_ids=np.array(list(mugs), np.int64),
        g_crops=g_crops,
        g_fallback=g_fb,
        p_paths=p_paths,
        p_ids=np.array([q.subject for q in probes], np.int64),
        p_crops=p_crops,
        p_fallback=p_fb,
        cameras=np.array([q.camera for q in probes]),
        distances=np.array([q.distance for q in probes]),
        excluded=excl,
        crop_key=("scface", detect, detector),
    )


def _embed(
    sc: _ScfaceSet, hr: Embedder, emb: Embedder, progress: bool, use_cache: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Mugshots embedded by ``hr``, probes by ``emb`` (cached): float32 (G, D), (P, D)."""

    def run(model: Embedder, paths: list[Path], crops: np.ndarray, desc: str) -> np.ndarray:
        return embed_cached(
            model,
            len(paths),
            lambda a, b: list(crops[a:b]),
            (*sc.crop_key, *map(file_signature, paths)),
            desc=desc,
            progress=progress,
            use_cache=use_cache,
        )

    return run(hr, sc.g_paths, sc.g_crops, "mugshots"), run(emb, sc.p_paths, sc.p_crops, "probes")


def _entries(
    sc: _ScfaceSet,
    report: Callable[[np.ndarray], dict[str, Any]],
    model: str,
    hr_model: str | None,
) -> list[dict[str, Any]]:
    """One entry per distance (with the rank-1 of each camera), then one per camera;
    ``report(probe mask)`` is the identification report of those probes."""
    dists, cams = sc.distances, sc.cameras
    entries = []
    for d in sorted(set(dists.tolist())):
        rep = report(dists == d)
        rep["rank1_by_camera"] = {
            int(c): report((dists == d) & (cams == c))["cmc"][1]
            for c in sorted(set(cams[dists == d].tolist()))
        }
        entries.append(
            identification_entry(
                rep,
                model=model,
                hr_model=hr_model,
                condition=f"distance {d}",
                plot_group="distances",
                cells={f"d{d} R1": percent(rep["cmc"][1])},
                distance=d,
            )
        )
    for c in sorted(set(cams.tolist())):
        rep = report(cams == c)
        entries.append(
            identification_entry(
                rep,
                model=model,
                hr_model=hr_model,
                condition=f"cam{c}",
                plot_group="cameras",
                cells={f"cam{c} R1": percent(rep["cmc"][1])},
                camera=c,
            )
        )
    return entries


def _describe(
    sc: _ScfaceSet, data: str | Path, no_detect: bool, detector: str, ranks: Sequence[int]
) -> dict[str, Any]:
    """The run's ``description`` for results.json."""
    dists = sc.distances
    by_distance = sorted(set(dists))
    return {
        "dataset": str(Path(data).expanduser()),
        "n_subjects": len(sc.g_paths),
        "excluded_subjects": sorted(sc.excluded),
        "n_gallery": len(sc.g_paths),
        "n_probes": len(sc.p_paths),
        "n_probes_by_distance": {int(d): int((dists == d).sum()) for d in by_distance},
        "cameras": sorted({int(c) for c in sc.cameras}),
        "n_nonmated_probes": int((~np.isin(sc.p_ids, sc.g_ids)).sum()),
        "alignment": "none: images resized (--no-detect)"
        if no_detect
        else f"{detector} detection, largest face, 5-point ArcFace alignment to 112x112; "
        "resize of the whole image when no face is found",
        "alignment_fallbacks": {
            "gallery": int(sc.g_fallback.sum()),
            "probes_by_distance": {
                int(d): int(sc.p_fallback[dists == d].sum()) for d in by_distance
            },
        },
        "score": "cosine similarity of L2-normalised embeddings",
        "ranks": list(ranks),
    }
