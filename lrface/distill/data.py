"""Training data for distillation: aligned HR crops, cached teacher targets, LR views.

The teacher sees the aligned 112x112 HR crop; its embeddings of every crop and of the
crop's mirror image are computed once and cached on disk.  The student sees a degraded
copy made on the fly (:class:`lrface.degrade.RandomDegradation`, small alignment jitter,
a horizontal flip whose teacher target is the mirrored crop's embedding).  Randomness is
a pure function of ``(seed, epoch, index)``, so a resumed run sees exactly the same data.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from ..cache import cache_dir, digest
from ..datasets.facecache import aligned_crops
from ..datasets.lfw import LFW, identity_of
from ..degrade import RandomDegradation, degrade, jitter_alignment
from ..detect import DEFAULT_DETECTOR
from ..errors import DatasetError
from ..fileio import save_npz_atomic
from ..io import list_images
from ..models.embedder import resize_to

log = logging.getLogger("lrface")


@dataclasses.dataclass
class FaceSet:
    """Aligned crops (N, 112, 112, 3) uint8 BGR with relative paths and identity labels."""

    root: Path
    paths: list[str]
    identities: list[str]
    crops: np.ndarray


def _lfw_or_none(root: Path) -> LFW | None:
    try:
        return LFW(root)
    except DatasetError:
        return None


def load_training_faces(
    data: str | Path,
    test_pairs: str | Path | None = None,
    limit: int | None = None,
    detector: str = DEFAULT_DETECTOR,
    holdout_folds: tuple[int, ...] = (),
) -> FaceSet:
    """Faces to distil on.

    ``data`` is an LFW copy (then only its train split is used: identities that never
    occur in pairs folds 6-10) or any folder ``ROOT/<identity>/<images>``.  For a plain
    folder, ``test_pairs`` (an LFW ``pairs.txt``) -- or the LFW found under
    ``$LRFACE_HOME/data/lfw`` -- lists the test identities, and any overlap is refused.
    ``holdout_folds`` (official LFW folds among 1-5) removes every identity of those folds'
    pairs, so that they can validate on unseen identities.  ``limit`` keeps the first N
    images (smoke tests).
    """
    root = Path(data).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: training data directory not found")
    lfw = _lfw_or_none(root)
    if holdout_folds and (lfw is None or not set(holdout_folds) <= {1, 2, 3, 4, 5}):
        raise DatasetError(
            f"{root}: held-out validation folds {list(holdout_folds)} need an LFW copy and "
            "folds among 1-5 (6-10 are the test split)"
        )
    if lfw is not None:
        rels = training_images(lfw, holdout_folds)
        image_root = lfw.image_dir
        banned = lfw.test_identities
    else:
        image_root = root
        rels = [str(p.relative_to(root)) for p in list_images(root)]
        banned = _test_identities(test_pairs)
    if not rels:
        raise DatasetError(f"{root}: no images found (expected ROOT/<identity>/<image>.jpg)")
    leaked = sorted({identity_of(r) for r in rels} & banned)
    if leaked:
        raise DatasetError(
            f"{root}: {len(leaked)} identities of the LFW test split are in the training data "
            f"(e.g. {leaked[:3]}); remove them -- training on test identities is not allowed"
        )
    if limit:
        rels = rels[:limit]
    faces = (
        aligned_crops(image_root, rels, detector) if lfw is None else lfw_crops(lfw, rels, detector)
    )
    return FaceSet(image_root, rels, [identity_of(r) for r in rels], faces)


def holdout_identities(lfw: LFW, folds: tuple[int, ...]) -> frozenset[str]:
    """Identities of the pairs of the official (1-based) ``folds``."""
    return frozenset(identity_of(rel) for p in lfw.pairs_in_folds(folds) for rel in (p.a, p.b))


def training_images(lfw: LFW, holdout_folds: tuple[int, ...] = ()) -> list[str]:
    """The train split's images, minus every identity of the held-out ``holdout_folds``."""
    held = holdout_identities(lfw, holdout_folds)
    return [r for r in lfw.train_images() if identity_of(r) not in held]


def lfw_crops(lfw: LFW, rels: list[str], detector: str = DEFAULT_DETECTOR) -> np.ndarray:
    """Crops for ``rels``: from the whole-LFW cache (shared with the evaluators) when it
    exists or most of LFW is needed; a small subset is aligned on its own."""
    from ..datasets.facecache import cache_file

    if len(rels) < 2000 and not cache_file(lfw.image_dir, lfw.all_images, detector).is_file():
        return aligned_crops(lfw.image_dir, rels, detector)["crops"]
    allc = aligned_crops(lfw.image_dir, lfw.all_images, detector)
    index = {p: i for i, p in enumerate(allc["paths"].tolist())}
    return allc["crops"][[index[r] for r in rels]]


def _test_identities(test_pairs: str | Path | None) -> frozenset[str]:
    import os

    cands = [Path(test_pairs)] if test_pairs else []
    home = os.environ.get("LRFACE_HOME")
    if home:
        cands.append(Path(home) / "data" / "lfw")
    for c in cands:
        try:
            return LFW(c.parent if c.name == "pairs.txt" else c).test_identities
        except DatasetError:
            continue
    return frozenset()


def targets_cache_file(
    teacher_name: str, teacher_sha256: str, root: Path, paths: list[str]
) -> Path:
    """Where :func:`teacher_targets` keeps the targets of ``paths`` (relative to ``root``)."""
    key = digest(teacher_name, teacher_sha256, Path(root).resolve(), *paths)
    return cache_dir() / f"targets-{teacher_name}-{key}.npz"


def teacher_targets(faces: FaceSet, teacher) -> tuple[np.ndarray, np.ndarray]:
    """Teacher embeddings of every HR crop and of its mirror image, cached on disk.

    Returns two float32 (N, D) L2-normalised arrays (plain, mirrored).  The teacher is
    run without flip fusion, so each target matches exactly the view the student sees.
    """
    fn = targets_cache_file(teacher.name, teacher.sha256, faces.root, faces.paths)
    if fn.is_file():
        with np.load(fn) as z:
            return z["plain"], z["mirror"]
    flip = teacher.flip
    teacher.flip = False
    try:
        plain = teacher.embed_crops(list(faces.crops))
        mirror = teacher.embed_crops([c[:, ::-1] for c in faces.crops])
    finally:
        teacher.flip = flip
    save_npz_atomic(fn, plain=plain, mirror=mirror)
    return plain, mirror


class DistillDataset(torch.utils.data.Dataset):
    """``(x, target, size, hr, idx)`` samples: degraded student input, teacher target, LR
    size, the HR view (uint8 (112, 112, 3) BGR for online targets, else empty) and the
    face's index in the :class:`FaceSet` (for its identity label; -1 for a blend).

    ``p_mix`` (online targets only): probability that the HR view is a blend
    ``w * a + (1 - w) * b`` of two augmented training faces, ``w`` uniform in [0, 1]
    ("function matching": the teacher embeds the same blend the student sees degraded,
    which widens the inputs on which the student learns the teacher's function).

    ``x``: float32 (3, S, S) normalised RGB for a student of input side S (112 for the
    MobileFaceNet student: degraded crops are upsampled back with bicubic; 16/24/32 for a
    native student: the LR crop is resized to S).  ``target``: float32 (D,).
    """

    def __init__(
        self,
        faces: FaceSet,
        plain: np.ndarray,
        mirror: np.ndarray,
        input_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        degradation: RandomDegradation,
        seed: int = 0,
        p_flip: float = 0.5,
        p_jitter: float = 0.5,
        online: bool = False,
        p_mix: float = 0.0,
    ) -> None:
        if p_mix and not online:
            raise ValueError("blended views need online teacher targets")
        self.faces, self.plain, self.mirror = faces, plain, mirror
        self.input_size = input_size
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.deg = degradation
        self.seed, self.epoch = seed, 0
        self.p_flip, self.p_jitter = p_flip, p_jitter
        self.online = online
        self.p_mix = p_mix

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.faces.crops)

    def __getitem__(self, idx: int):
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        crop = self.faces.crops[idx]
        flipped = rng.random() < self.p_flip
        if flipped:
            crop = np.ascontiguousarray(crop[:, ::-1])
        if self.online:
            # consistent teaching: a stronger augmentation, and the teacher embeds this
            # exact HR view in the training loop (``target`` here is a placeholder)
            crop = self._online_augment(crop, rng)
            if self.p_mix and rng.random() < self.p_mix:
                other = self.faces.crops[int(rng.integers(len(self.faces.crops)))]
                if rng.random() < self.p_flip:
                    other = np.ascontiguousarray(other[:, ::-1])
                other = self._online_augment(other, rng)
                w = rng.uniform(0.0, 1.0)
                blend = w * crop.astype(np.float32) + (1.0 - w) * other.astype(np.float32)
                crop = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
                idx = -1
        elif rng.random() < self.p_jitter:
            crop = jitter_alignment(crop, rng)
        d = self.deg.sample(rng, hr_size=crop.shape[0])
        lr = degrade(crop, d, rng)
        x = resize_to(lr, self.input_size)
        x = (x[:, :, ::-1].astype(np.float32) - self.mean) / self.std
        target = self.mirror[idx] if flipped else self.plain[idx]
        hr = torch.from_numpy(np.ascontiguousarray(crop)) if self.online else torch.zeros(0)
        return (
            torch.from_numpy(x.transpose(2, 0, 1).copy()),
            torch.from_numpy(target),
            d.size,
            hr,
            idx,
        )

    @staticmethod
    def _online_augment(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Alignment jitter (p 0.8) and brightness/contrast (p 0.5) of a uint8 BGR crop."""
        if rng.random() < 0.8:
            crop = jitter_alignment(crop, rng, shift=0.04, scale=0.06, angle=6.0)
        if rng.random() < 0.5:
            gain, bias = rng.uniform(0.75, 1.25), rng.uniform(-20, 20)
            crop = np.clip(crop.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
        return crop
