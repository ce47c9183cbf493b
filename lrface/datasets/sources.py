"""Training-data sources for ``lrface distill --data``: what a ``--data`` value means.

A source is written ``[KIND:]PATH[:weight=W]`` (``--data`` is repeatable):

* ``lfw:PATH`` -- an LFW copy (``pairs.txt`` + ``lfw-deepfunneled/``): only its **train
  split** is used (identities that never occur in pairs folds 6-10).
* ``labelled:PATH`` -- ``PATH/<identity>/<images>``: one folder per person.
* ``unlabelled:PATH`` -- face photos without identities: a folder (searched recursively)
  or a ``.txt`` list of image paths, one a line (relative to the list's folder or
  absolute; blank lines and ``#`` comments are skipped).
* ``rec:PATH`` -- an insightface RecordIO pack: ``PATH/train.rec`` + ``PATH/train.idx``
  or the ``.rec`` file itself (pre-aligned 112x112 faces, identity-labelled).

Without ``KIND:`` the kind is detected: a ``.rec`` file or a folder holding
``train.rec`` + ``train.idx`` is ``rec``; an LFW copy is ``lfw``; a ``.txt`` file is
``unlabelled``; a folder of (two or more) sub-folders of images is ``labelled``; a folder
whose images lie directly in it is ``unlabelled``; a folder mixing both, or holding a
single folder of photos (``utkface/`` with ``images/``), is refused: say which.

``weight=W`` (default 1, any number > 0) is a sampling weight: each face of the source
is drawn ``W`` times as often as a face of a weight-1 source, so one epoch holds
``round(W * n)`` draws from a source of ``n`` faces (``W=2``: every face twice, with
different augmentations; ``W=0.5``: a random half, redrawn each epoch).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from pathlib import Path

from lrface.datasets.recordio import find_pack
from lrface.errors import DatasetError
from lrface.io.images import list_images

KINDS = ("lfw", "labelled", "unlabelled", "rec")
_ALIASES = {"labeled": "labelled", "unlabeled": "unlabelled"}
_IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
_WEIGHT = re.compile(r":weight=([^:]*)$")


@dataclasses.dataclass(frozen=True)
class Source:
    """One ``--data`` value: ``kind`` (one of :data:`KINDS`), ``path``, sampling ``weight``."""

    spec: str
    kind: str
    path: Path
    weight: float = 1.0

    @property
    def labelled(self) -> bool:
        """Whether the faces carry identity labels (usable by the arc term)."""
        return self.kind != "unlabelled"

    @property
    def needs_guard(self) -> bool:
        """No LFW names to check: filter by face similarity to the LFW test split."""
        return self.kind in ("unlabelled", "rec")

    def describe(self) -> str:
        return f"{self.kind}:{self.path}" + (f":weight={self.weight:g}" if self.weight != 1 else "")


def parse_source(spec: str) -> Source:
    """Parse ``[KIND:]PATH[:weight=W]`` (see the module docstring); the path must exist."""
    text = str(spec).strip()
    if not text:
        raise DatasetError("--data '': pass a folder, an LFW copy, a .txt list or a train.rec")
    weight = 1.0
    m = _WEIGHT.search(text)
    if m:
        try:
            weight = float(m.group(1))
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight) or weight <= 0:
            raise DatasetError(
                f"--data {spec}: weight={m.group(1)!r} is not a number > 0 "
                "(write PATH:weight=2; leave a source out instead of weight 0)"
            )
        text = text[: m.start()]
    kind = None
    head, sep, rest = text.partition(":")
    if sep and _ALIASES.get(head.lower(), head.lower()) in KINDS:
        kind, text = _ALIASES.get(head.lower(), head.lower()), rest
    path = Path(text).expanduser()
    if not path.exists():
        raise DatasetError(f"--data {spec}: {path} not found")
    if kind is None:
        kind = detect_kind(path, spec)
    _check_kind(kind, path, spec)
    return Source(str(spec), kind, path, weight)


def parse_sources(specs: str | Path | Sequence[str | Path]) -> list[Source]:
    """Parse every ``--data`` value; the same path twice is refused."""
    if isinstance(specs, str | Path):
        specs = [specs]
    if not specs:
        raise DatasetError("no --data given: pass a folder, an LFW copy, a .txt list or a .rec")
    sources = [parse_source(str(s)) for s in specs]
    seen: dict[Path, str] = {}
    for s in sources:
        key = s.path.resolve()
        if key in seen:
            raise DatasetError(
                f"--data {s.spec}: the same data as --data {seen[key]}; give each source once "
                "(use :weight=W to sample it more often)"
            )
        seen[key] = s.spec
    return sources


def _is_lfw(path: Path) -> bool:
    from lrface.datasets.lfw import LFW

    try:
        LFW(path)
        return True
    except DatasetError:
        return False


def detect_kind(path: Path, spec: str = "") -> str:
    """The kind of ``path`` when ``--data`` gives none (see the module docstring)."""
    spec = spec or str(path)
    if find_pack(path) is not None:
        return "rec"
    if path.is_file():
        if path.suffix.lower() == ".txt":
            return "unlabelled"
        raise DatasetError(
            f"--data {spec}: a file that is neither a .txt list of images nor a .rec pack"
        )
    if _is_lfw(path):
        return "lfw"
    top = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_EXTS]
    subdirs = [d for d in path.iterdir() if d.is_dir() and any(_images_in(d))]
    if top and subdirs:
        raise DatasetError(
            f"--data {spec}: holds both photos ({top[0].name}) and folders of photos "
            f"({subdirs[0].name}/); say which: labelled:{path} (one folder per identity) or "
            f"unlabelled:{path} (photos without identities)"
        )
    if len(subdirs) == 1:
        raise DatasetError(
            f"--data {spec}: its only folder of photos is {subdirs[0].name}/, which would be "
            f"one identity; say which: unlabelled:{subdirs[0]} (photos without identities) "
            f"or labelled:{path} (one person)"
        )
    if subdirs:
        return "labelled"
    if top:
        return "unlabelled"
    raise DatasetError(f"--data {spec}: no images found (jpg, png, bmp, webp, tif, pgm, ppm)")


def _images_in(d: Path):
    return (p for p in d.rglob("*") if p.suffix.lower() in _IMAGE_EXTS and p.is_file())


def _check_kind(kind: str, path: Path, spec: str) -> None:
    if kind == "rec" and find_pack(path) is None:
        raise DatasetError(
            f"--data {spec}: expected a .rec file (with its .idx beside it) or a folder "
            "holding train.rec and train.idx"
        )
    if kind == "lfw" and not _is_lfw(path):
        from lrface.datasets.lfw import LFW

        LFW(path)  # raises the precise layout error
    if kind in ("labelled", "lfw") and path.is_file():
        raise DatasetError(f"--data {spec}: a {kind} source is a folder, not a file")


def list_folder(source: Source) -> tuple[Path, list[str], list[str]]:
    """``(root, relative image paths, identities)`` of a labelled or unlabelled source.

    Paths are relative to ``root`` (absolute ones may occur in a ``.txt`` list); the
    identity of a labelled image is its first folder, ``""`` for unlabelled images.
    A listed file that does not exist is kept (it is reported as unreadable later).
    """
    path = source.path
    if source.kind == "unlabelled" and path.is_file():
        root = path.parent
        rels = []
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"--data {source.spec}: cannot read the list ({exc})") from None
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                rels.append(line)
        if not rels:
            raise DatasetError(f"--data {source.spec}: the list names no image")
        return root, rels, [""] * len(rels)
    rels = [p.relative_to(path).as_posix() for p in list_images(path)]
    if not rels:
        raise DatasetError(f"--data {source.spec}: no images found below {path}")
    if source.kind == "unlabelled":
        return path, rels, [""] * len(rels)
    loose = [r for r in rels if "/" not in r]
    if loose:
        raise DatasetError(
            f"--data {source.spec}: {len(loose)} image(s) outside identity folders (e.g. "
            f"{loose[0]}); a labelled source is ROOT/<identity>/<images> -- move them or "
            f"use unlabelled:{path}"
        )
    return path, rels, [r.split("/")[0] for r in rels]
