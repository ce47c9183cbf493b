"""LFW: the official View-2 pairs, this project's fixed train/test split, file listing.

Layout accepted for ``root``: a directory holding ``pairs.txt`` and one image folder
(``lfw-deepfunneled/``, ``lfw/`` or ``lfw_funneled/``) of ``<Name>/<Name>_<NNNN>.jpg``;
or the image folder itself with ``pairs.txt`` beside or inside it.

The split (see ``../shared/data/lfw/README.md``): **test** = the 3,000 pairs of folds
6-10 (pair index 3000-5999; 2,195 identities); **train** = every image of every identity
that never occurs in folds 6-10 (6,922 images, 3,554 identities); **val** = the pairs of
folds 1-5, whose identities belong to the train side.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from pathlib import Path

from lrface.errors import DatasetError

IMAGE_DIRS = ("lfw-deepfunneled", "lfw", "lfw_funneled", "lfw-funneled")
PAIRS_PER_FOLD = 600
N_FOLDS = 10
TEST_FOLDS = range(5, 10)  # zero-based: official folds 6-10


@dataclasses.dataclass(frozen=True)
class Pair:
    """One verification pair: relative image paths, same-identity flag, zero-based fold."""

    a: str
    b: str
    same: bool
    fold: int


def _image_name(name: str, num: str) -> str:
    return f"{name}/{name}_{int(num):04d}.jpg"


class LFW:
    """An LFW copy on disk: pairs, split and image paths (relative ``Name/Name_NNNN.jpg``)."""

    def __init__(self, root: str | Path) -> None:
        root = Path(root).expanduser()
        if not root.exists():
            raise DatasetError(f"{root}: LFW directory not found; pass --data pointing at LFW")
        self.root = root
        self.image_dir = self._find_image_dir(root)
        self.pairs_file = self._find_pairs(root)

    @staticmethod
    def _find_image_dir(root: Path) -> Path:
        for name in IMAGE_DIRS:
            if (root / name).is_dir():
                return root / name
        if any(
            (d / f"{d.name}_0001.jpg").is_file() for d in list(root.iterdir())[:50] if d.is_dir()
        ):
            return root
        found = sorted(p.name for p in root.iterdir())[:6]
        raise DatasetError(
            f"{root}: no LFW image folder (expected one of {', '.join(IMAGE_DIRS)} holding "
            f"<Name>/<Name>_0001.jpg; found {found})"
        )

    def _find_pairs(self, root: Path) -> Path:
        for cand in (root / "pairs.txt", self.image_dir / "pairs.txt", root.parent / "pairs.txt"):
            if cand.is_file():
                return cand
        raise DatasetError(
            f"{root}: pairs.txt not found (expected the official View-2 file in {root})"
        )

    @cached_property
    def pairs(self) -> list[Pair]:
        """All 6,000 official pairs, in file order, with their fold."""
        lines = self.pairs_file.read_text().split("\n")
        out: list[Pair] = []
        for line in lines[1:]:
            parts = line.split()
            if len(parts) == 3:
                out.append(
                    Pair(_image_name(parts[0], parts[1]), _image_name(parts[0], parts[2]), True, 0)
                )
            elif len(parts) == 4:
                out.append(
                    Pair(_image_name(parts[0], parts[1]), _image_name(parts[2], parts[3]), False, 0)
                )
        if len(out) != PAIRS_PER_FOLD * N_FOLDS:
            raise DatasetError(
                f"{self.pairs_file}: expected 6000 pairs (10 folds x 600), found {len(out)}"
            )
        return [dataclasses.replace(p, fold=i // PAIRS_PER_FOLD) for i, p in enumerate(out)]

    def split_pairs(self, split: str) -> list[Pair]:
        """``test`` (folds 6-10), ``val`` (folds 1-5) or ``all`` (10 folds)."""
        if split == "all":
            return list(self.pairs)
        if split == "test":
            return [p for p in self.pairs if p.fold in TEST_FOLDS]
        if split in ("val", "train"):
            return [p for p in self.pairs if p.fold not in TEST_FOLDS]
        raise DatasetError(f"unknown LFW split {split!r}; choose test, val or all")

    def pairs_in_folds(self, folds: tuple[int, ...]) -> list[Pair]:
        """The pairs of the official folds ``folds``, numbered 1-10 as in ``pairs.txt``."""
        return [p for p in self.pairs if p.fold + 1 in folds]

    @cached_property
    def test_identities(self) -> frozenset[str]:
        """Identities that occur in any pair of folds 6-10 (never to be trained on)."""
        names = set()
        for p in self.split_pairs("test"):
            names.add(p.a.split("/")[0])
            names.add(p.b.split("/")[0])
        return frozenset(names)

    @cached_property
    def all_images(self) -> list[str]:
        """Every image, relative path, sorted."""
        return sorted(
            f"{d.name}/{f.name}"
            for d in self.image_dir.iterdir()
            if d.is_dir()
            for f in d.iterdir()
            if f.suffix.lower() == ".jpg"
        )

    def train_images(self) -> list[str]:
        """Images of identities disjoint from the test split (6,922 for the full LFW)."""
        test = self.test_identities
        return [p for p in self.all_images if p.split("/")[0] not in test]

    def path(self, rel: str) -> Path:
        return self.image_dir / rel


def identity_of(rel: str) -> str:
    """The person's name (str) of an LFW image path: ``Name/Name_0001.jpg`` -> ``Name``."""
    return rel.split("/")[0]
