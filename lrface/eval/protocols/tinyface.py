"""TinyFace (QMUL) identification on native low-resolution faces, official protocol.

Layout (``ROOT`` is the ``tinyface`` folder, or its ``Testing_Set`` itself)::

    ROOT/Testing_Set/Probe/*.jpg                 3,733 probes
    ROOT/Testing_Set/Gallery_Match/*.jpg         4,448 mated gallery images
    ROOT/Testing_Set/Gallery_Distractor/*.jpg    153,428 distractors
    probe_img_ID_pairs.mat, gallery_match_img_ID_pairs.mat   (in Testing_Set/ or ROOT)

The .mat files list the probe (``probe_set``) and gallery-match (``gallery_set``) file
names; the identity of an image is the number before ``_`` in its name (``1_162.jpg`` ->
1), as in AdaFace's evaluation; distractors are never mated.  A few names in the .mat
files end in ``.jpeg`` while the files are ``.jpg``: names are matched by stem when the
exact name is absent.  Images are pre-cut crops (about 20-30 px): no detection; the
embedder resizes them (bicubic) and fuses flips when built with ``flip=True``.
Reported: CMC rank-1/5/20 and mAP against the gallery-match set alone and with the
distractors added.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrface.errors import DatasetError, LrfaceError
from lrface.eval.metrics import identification_report
from lrface.eval.protocols.common import (
    embed_cached,
    file_signature,
    identification_entry,
    percent,
    protocol_result,
)
from lrface.io.images import list_images, read_image

if TYPE_CHECKING:
    from lrface.models.interface import Embedder, HrEmbedders

PROBE_MAT = "probe_img_ID_pairs.mat"
GALLERY_MAT = "gallery_match_img_ID_pairs.mat"
SUBDIRS = ("Probe", "Gallery_Match", "Gallery_Distractor")
TINYFACE_RANKS = (1, 5, 20)
DISTRACTOR_ID = -1
_ID_RE = re.compile(r"^(\d+)_")


@dataclasses.dataclass(frozen=True)
class TinyFaceLayout:
    """Where the parts of a TinyFace copy are."""

    root: Path
    testing_dir: Path
    probe_mat: Path
    gallery_mat: Path

    @property
    def probe_dir(self) -> Path:
        return self.testing_dir / "Probe"

    @property
    def match_dir(self) -> Path:
        return self.testing_dir / "Gallery_Match"

    @property
    def distractor_dir(self) -> Path:
        return self.testing_dir / "Gallery_Distractor"


def find_layout(root: str | Path) -> TinyFaceLayout:
    """Locate ``Testing_Set`` and the two .mat files under ``root``.

    Raises :class:`DatasetError` naming what was expected and what was found.
    """
    root = Path(root).expanduser()
    expected = (
        "expected Testing_Set/{Probe,Gallery_Match,Gallery_Distractor}/ and "
        f"{PROBE_MAT}, {GALLERY_MAT} (in Testing_Set/ or ROOT)"
    )
    if not root.is_dir():
        raise DatasetError(f"{root}: TinyFace directory not found; {expected}")
    testing = root if all((root / d).is_dir() for d in SUBDIRS) else root / "Testing_Set"
    missing = [d for d in SUBDIRS if not (testing / d).is_dir()]
    mats: dict[str, Path] = {}
    for name in (PROBE_MAT, GALLERY_MAT):
        cands = [testing / name, root / name, root.parent / name]
        mat = next((c for c in cands if c.is_file()), None)
        if mat is None:
            missing.append(name)
        else:
            mats[name] = mat
    if missing:
        found = sorted(p.name for p in root.iterdir())[:8]
        raise DatasetError(
            f"{root}: not a TinyFace layout, missing {', '.join(missing)}; {expected}; "
            f"found {found}"
        )
    return TinyFaceLayout(root, testing, mats[PROBE_MAT], mats[GALLERY_MAT])


def subject_id_of(name: str) -> int:
    """TinyFace subject id (int) of a file name: the number before ``_`` (``"12_3.jpg"`` -> 12)."""
    m = _ID_RE.match(Path(name).name)
    if m is None:
        raise DatasetError(f"{name}: not a TinyFace file name (<identity>_<n>.jpg)")
    return int(m.group(1))


def read_mat_names(path: str | Path, field: str) -> list[str]:
    """File names listed in the cell array ``field`` of a TinyFace .mat file."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises several types for non-.mat input
        raise DatasetError(f"{path}: not a readable MATLAB file ({exc})") from None
    if field not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(f"{path}: no field {field!r} (fields: {keys})")
    return [str(np.asarray(cell).ravel()[0]) for cell in np.asarray(mat[field]).ravel()]


def read_protocol(probe_mat: str | Path, gallery_mat: str | Path) -> dict[str, list]:
    """Probe and gallery-match lists of the official protocol.

    Returns ``{"probe": names, "probe_ids": ints, "gallery": names, "gallery_ids": ints}``
    with identities parsed from the names (:func:`subject_id_of`).
    """
    probe = read_mat_names(probe_mat, "probe_set")
    gallery = read_mat_names(gallery_mat, "gallery_set")
    return {
        "probe": probe,
        "probe_ids": [subject_id_of(n) for n in probe],
        "gallery": gallery,
        "gallery_ids": [subject_id_of(n) for n in gallery],
    }


def resolve_files(names: Sequence[str], directory: Path, what: str) -> list[Path]:
    """Paths of ``names`` in ``directory``, matching by stem when the extension differs.

    Raises :class:`DatasetError` with the count and first missing name.
    """
    by_name: dict[str, Path] = {}
    by_stem: dict[str, Path] = {}
    for p in list_images(directory):
        by_name[p.name] = p
        by_stem.setdefault(p.stem.lower(), p)
    out: list[Path] = []
    missing: list[str] = []
    for n in names:
        hit = by_name.get(n) or by_stem.get(Path(n).stem.lower())
        if hit is None:
            missing.append(n)
        else:
            out.append(hit)
    if missing:
        raise DatasetError(
            f"{directory}: {len(missing)} of {len(names)} {what} images listed in the protocol "
            f"are missing (first: {missing[0]}); check the TinyFace copy"
        )
    return out


def _load_images(paths: Sequence[Path]) -> Callable[[int, int], list[np.ndarray]]:
    def load(a: int, b: int) -> list[np.ndarray]:
        return [read_image(p) for p in paths[a:b]]

    return load


def evaluate_tinyface(
    embedders: Sequence[Embedder],
    data: str | Path,
    *,
    ranks: Sequence[int] = TINYFACE_RANKS,
    max_distractors: int | None = None,
    hr_embedder: HrEmbedders = None,
    progress: bool = True,
    use_cache: bool = True,
) -> dict[str, Any]:
    """TinyFace rank-k and mAP, without and with the distractors.

    ``max_distractors`` keeps the first N distractors (sorted by name) for quick runs.
    ``hr_embedder`` is refused: the TinyFace gallery is low-resolution too.
    Returns ``{"protocol", "description", "models", "hr_model", "caption", "results"}``;
    per model one entry for ``gallery match`` and one for ``+distractors`` (when any).
    """
    if hr_embedder is not None:
        raise LrfaceError("--hr-model does not apply to tinyface: its gallery is low-resolution")
    if not embedders:
        raise LrfaceError("no model given; pass --model NAME[,NAME...]")
    sets = _load_sets(data, max_distractors)
    entries = [
        e for emb in embedders for e in _model_entries(emb, sets, ranks, progress, use_cache)
    ]
    caption = f"TinyFace: CMC rank-k and mAP (%); +D = with {len(sets.distractors)} distractors"
    description = _describe(sets, max_distractors, ranks)
    return protocol_result("tinyface", embedders, None, description, caption, entries)


@dataclasses.dataclass
class _TinyFaceSets:
    """The image sets of the official protocol with their identities."""

    layout: TinyFaceLayout
    protocol: dict[str, list[Any]]  # :func:`read_protocol`
    probes: list[Path]
    gallery: list[Path]  # gallery match
    distractors: list[Path]
    probe_ids: np.ndarray  # int64 (P,)
    gallery_ids: np.ndarray  # int64 (G,)
    distractor_ids: np.ndarray  # int64 (N,), all DISTRACTOR_ID


def _load_sets(data: str | Path, max_distractors: int | None) -> _TinyFaceSets:
    """Find the layout, read the protocol and resolve every listed file; keep the first
    ``max_distractors`` distractors (sorted by name) when given."""
    lay = find_layout(data)
    proto = read_protocol(lay.probe_mat, lay.gallery_mat)
    probes = resolve_files(proto["probe"], lay.probe_dir, "probe")
    gallery = resolve_files(proto["gallery"], lay.match_dir, "gallery-match")
    distr = list_images(lay.distractor_dir)
    if max_distractors is not None:
        distr = distr[: max(0, int(max_distractors))]
    return _TinyFaceSets(
        layout=lay,
        protocol=proto,
        probes=probes,
        gallery=gallery,
        distractors=distr,
        probe_ids=np.array(proto["probe_ids"], np.int64),
        gallery_ids=np.array(proto["gallery_ids"], np.int64),
        distractor_ids=np.full(len(distr), DISTRACTOR_ID, np.int64),
    )


def _model_entries(
    emb: Embedder, sets: _TinyFaceSets, ranks: Sequence[int], progress: bool, use_cache: bool
) -> list[dict[str, Any]]:
    """The result entries of one model: ``gallery match``, then ``+distractors`` (when
    there are distractors)."""
    embedded = {
        name: _embed_set(emb, name, paths, progress, use_cache)
        for name, paths in (
            ("probe", sets.probes),
            ("gallery", sets.gallery),
            ("distractors", sets.distractors),
        )
    }
    galleries = [("gallery match", embedded["gallery"], sets.gallery_ids)]
    if len(sets.distractors):
        g_all = np.concatenate([embedded["gallery"], embedded["distractors"]])
        ids_all = np.concatenate([sets.gallery_ids, sets.distractor_ids])
        galleries.append(("+distractors", g_all, ids_all))
    entries = []
    for cond, g_emb, g_ids in galleries:
        rep = identification_report(
            embedded["probe"], sets.probe_ids, g_emb, g_ids, ranks, fpirs=(1e-2,)
        )
        entries.append(
            identification_entry(
                rep,
                model=emb.name,
                hr_model=None,
                condition=cond,
                plot_group="tinyface",
                cells=_tinyface_cells(rep, cond, ranks),
                gallery=cond,
            )
        )
    return entries


def _tinyface_cells(rep: dict[str, Any], cond: str, ranks: Sequence[int]) -> dict[str, str]:
    """Table cells of one entry: rank-k and mAP (%), suffixed `` +D`` with distractors."""
    suffix = "" if cond == "gallery match" else " +D"
    cells = {f"R{r}{suffix}": percent(rep["cmc"][r]) for r in ranks}
    cells[f"mAP{suffix}"] = percent(rep["mAP"])
    return cells


def _embed_set(
    emb: Embedder, name: str, paths: Sequence[Path], progress: bool, use_cache: bool
) -> np.ndarray:
    """One image set (native low-resolution crops) embedded by ``emb`` (cached):
    float32 (len(paths), D)."""
    if not paths:
        return np.zeros((0, emb.embedding_size), np.float32)
    return embed_cached(
        emb,
        len(paths),
        _load_images(paths),
        ("tinyface", "native", *(file_signature(p) for p in paths)),
        desc=f"TinyFace {name}",
        progress=progress,
        use_cache=use_cache,
    )


def _describe(
    sets: _TinyFaceSets, max_distractors: int | None, ranks: Sequence[int]
) -> dict[str, Any]:
    """The run's ``description`` for results.json."""
    lay, proto = sets.layout, sets.protocol
    return {
        "dataset": str(lay.root),
        "testing_set": str(lay.testing_dir),
        "protocol_files": [str(lay.probe_mat), str(lay.gallery_mat)],
        "n_probes": len(sets.probes),
        "n_gallery_match": len(sets.gallery),
        "n_distractors": len(sets.distractors),
        "max_distractors": max_distractors,
        "n_identities": len(set(proto["probe_ids"]) | set(proto["gallery_ids"])),
        "identity": "number before '_' in the file name; distractors never mated",
        "preprocessing": "native low-resolution crops, no detection; the embedder resizes "
        "(bicubic up) and fuses flips when enabled",
        "score": "cosine similarity of L2-normalised embeddings",
        "ranks": list(ranks),
    }
