"""What the student sees: :class:`DistillDataset`, degraded views of the training faces
with their teacher targets, and :func:`training_dataset`, the dataset of a run.

Randomness is a pure function of ``(seed, epoch, key)``, so a resumed run sees exactly
the same data.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from lrface.distill.config import DistillConfig
from lrface.distill.data import TrainingData
from lrface.distill.faces import FaceSet
from lrface.distill.views import BoxViews, build_box_views, read_as_given
from lrface.errors import LrfaceError
from lrface.faces.degrade import RandomDegradation, degrade, degrade_realistic, jitter_alignment
from lrface.faces.detect import DEFAULT_DETECTOR
from lrface.models.preprocess import InputFormat, resize_crop, to_input
from lrface.models.registry import ModelSpec

log = logging.getLogger("lrface")


def training_dataset(
    cfg: DistillConfig,
    td: TrainingData,
    spec: ModelSpec,
    progress: bool = True,
    verbose: bool = True,
) -> DistillDataset:
    """The dataset of a run: the faces of ``td`` with their cached targets (flip-fused
    ones for ``--targets fused``), degraded as ``cfg`` says, converted in the teacher's
    colour order with its mean/std (its registry entry ``spec``); with ``p_box``, the
    faces' detector boxes are found first (``td.views`` records them)."""
    box_views = None
    if cfg.p_box or cfg.p_given:
        box_views = build_box_views(td.parts, DEFAULT_DETECTOR, progress=progress)
        if not box_views.covered:
            raise LrfaceError(
                "--p-box/--p-given: no training face has a detector box (RecordIO packs "
                "are pre-aligned); box views need photo sources (an LFW copy or folders)"
            )
        td.views = box_views.card()
        if verbose:
            log.info("box views: %d of %d faces", box_views.covered, len(box_views.row))
    fused = cfg.targets == "fused"
    return DistillDataset(
        td.faces,
        td.fused if fused else td.plain,
        td.fused if fused else td.mirror,
        cfg.resolved_input_size(),
        tuple(spec.mean),
        tuple(spec.std),
        RandomDegradation(cfg.min_size, cfg.max_size, p_hr=cfg.p_hr),
        seed=cfg.seed,
        online=cfg.online_targets,
        p_mix=cfg.mixup,
        box_views=box_views,
        p_box=cfg.p_box,
        p_given=cfg.p_given,
        p_realistic=cfg.p_realistic,
        color=spec.color,
        student_view=cfg.lr_teacher is not None,
    )


class DistillDataset(torch.utils.data.Dataset):
    """``(x, target, size, hr, idx, view)`` samples: degraded student input, teacher
    target, LR size, the HR view (uint8 (112, 112, 3) BGR for online targets, else empty),
    the face's index in the :class:`FaceSet` (for its identity label
    ``faces.labels[idx]``, itself -1 for an unlabelled face; ``idx`` is -1 for a blend)
    and, with ``student_view``, the student's input before conversion (uint8 (S, S, 3)
    BGR, what ``--lr-teacher`` embeds; else empty).  Keys ``idx + r * N``
    (N faces) give the r-th differently augmented draw of face ``idx`` in an epoch.

    ``p_mix`` (online targets only): probability that the HR view is a blend
    ``w * a + (1 - w) * b`` of two augmented training faces, ``w`` uniform in [0, 1]
    ("function matching": the teacher embeds the same blend the student sees degraded,
    which widens the inputs on which the student learns the teacher's function).

    ``p_box`` (cached targets): probability that the view is the face's detector box,
    jittered as on small faces (``box_views``: :class:`lrface.distill.views.BoxViews`),
    instead of its aligned crop; the target stays the teacher's embedding of the aligned
    crop.  ``p_realistic``: probability that a reduced view gets the evaluators' realistic
    degradation (:data:`lrface.faces.degrade.REALISTIC`: blur, motion blur, sensor noise, JPEG
    q30-70) instead of the light training extras.  Both 0 (default): the random draws are
    those of earlier versions.

    ``x``: float32 (3, S, S) for a student of input side S, converted by
    :func:`lrface.models.preprocess.to_input` in the teacher's colour order (``color``,
    "RGB" or "BGR") with its ``mean``/``std`` (112 for the MobileFaceNet student: degraded
    crops are upsampled back with bicubic; 16/24/32 for a native student: the LR crop is
    resized to S).  ``target``: float32 (D,).
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
        box_views: BoxViews | None = None,
        p_box: float = 0.0,
        p_given: float = 0.0,
        p_realistic: float = 0.0,
        color: str = "RGB",
        student_view: bool = False,
    ) -> None:
        if p_mix and not online:
            raise ValueError("blended views need online teacher targets")
        if (p_box or p_given or p_realistic) and online:
            raise ValueError("box, given and realistic views use cached targets, not online ones")
        if (p_box or p_given) and box_views is None:
            raise ValueError("p_box/p_given > 0 need the faces' box views (views.build_box_views)")
        self.faces, self.plain, self.mirror = faces, plain, mirror
        self.input_size = input_size
        self.input_format = InputFormat(input_size, color, mean, std)
        self.deg = degradation
        self.seed, self.epoch = seed, 0
        self.p_flip, self.p_jitter = p_flip, p_jitter
        self.online = online
        self.p_mix = p_mix
        self.box_views, self.p_box, self.p_realistic = box_views, p_box, p_realistic
        self.p_given = p_given
        self.student_view = student_view

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.faces.crops)

    def __getitem__(
        self, key: int
    ) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor, int, torch.Tensor]:
        """Sample ``key`` (``idx + r * N``: the r-th draw of face ``idx`` in an epoch) as
        ``(x, target, size, hr, idx, view)`` (class docstring).  The generator's draws
        come in a fixed order: box view, flip, augmentation (online: jitter, colour,
        blend; cached: jitter), degradation -- resumed runs see the same data."""
        idx, rng = self._generator(key)
        crop, kind = self._view_of(idx, rng)
        flipped = rng.random() < self.p_flip
        if flipped:
            crop = np.ascontiguousarray(crop[:, ::-1])
        if self.online:
            crop, idx = self._online_view(crop, idx, rng)
        elif kind == "aligned" and rng.random() < self.p_jitter:
            crop = jitter_alignment(crop, rng)
        size, lr = self._degrade(crop, rng)
        if kind == "given":
            lr = read_as_given(lr, self.input_size)
        # the student's view at its input side (to_input would resize lr the same way)
        view = resize_crop(lr, self.input_size) if self.student_view else lr
        x = to_input(view, self.input_format)[0]
        target = self.mirror[idx] if flipped else self.plain[idx]
        hr = torch.from_numpy(np.ascontiguousarray(crop)) if self.online else torch.zeros(0)
        return (
            torch.from_numpy(x),
            torch.from_numpy(target),
            size,
            hr,
            idx,
            torch.from_numpy(view) if self.student_view else torch.zeros(0),
        )

    def _generator(self, key: int) -> tuple[int, np.random.Generator]:
        """``(idx, rng)`` for key ``idx + r * N``: the face's index in the :class:`FaceSet`
        and the generator of its r-th draw, seeded by ``(seed, epoch, idx[, r])`` (no ``r``
        for r = 0, the seeding of earlier versions)."""
        # key = idx + r * N: the r-th draw of face idx in an epoch (sources of weight > 1)
        n = len(self.faces.crops)
        idx, rep = int(key) % n, int(key) // n
        rng = np.random.default_rng([self.seed, self.epoch, idx] + ([rep] if rep else []))
        return idx, rng

    def _view_of(self, idx: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """``(crop, kind)``: face ``idx``'s jittered detector-box view (uint8 BGR
        (112, 112, 3)) with probability ``p_box`` ("box") or ``p_given`` ("given": read as
        a pre-cut crop once reduced) when it has a box, else its aligned crop (uint8 BGR
        (112, 112, 3), "aligned").  Draws from ``rng`` only when ``p_box + p_given`` > 0
        and the face has a box (one uniform draw: the draws of earlier versions when
        ``p_given`` is 0)."""
        views = self.box_views
        p = self.p_box + self.p_given
        if p and views is not None and views.has(idx):
            u = rng.random()
            if u < p:
                return views.view(idx, rng), "box" if u < self.p_box else "given"
        return self.faces.crops[idx], "aligned"

    def _online_view(
        self, crop: np.ndarray, idx: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, int]:
        """``(crop, idx)`` for online targets: the uint8 BGR (112, 112, 3) ``crop`` more
        strongly augmented and, with probability ``p_mix``, blended with another
        augmented training face (``idx`` then -1: a blend has no identity)."""
        # consistent teaching: a stronger augmentation, and the teacher embeds this
        # exact HR view in the training loop (``target`` here is a placeholder)
        crop = self._online_augment(crop, rng)
        if self.p_mix and rng.random() < self.p_mix:
            return self._blend(crop, rng), -1
        return crop, idx

    def _blend(self, crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """uint8 BGR (112, 112, 3) ``w * crop + (1 - w) * other``, rounded: ``other`` a
        random training face, flipped with probability ``p_flip`` and augmented as
        :meth:`_online_augment` does, ``w`` uniform in [0, 1]."""
        other = self.faces.crops[int(rng.integers(len(self.faces.crops)))]
        if rng.random() < self.p_flip:
            other = np.ascontiguousarray(other[:, ::-1])
        other = self._online_augment(other, rng)
        w = rng.uniform(0.0, 1.0)
        blend = w * crop.astype(np.float32) + (1.0 - w) * other.astype(np.float32)
        return np.clip(blend + 0.5, 0, 255).astype(np.uint8)

    def _degrade(self, crop: np.ndarray, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        """``(size, lr)``: a random degradation of the uint8 BGR (H, H, 3) ``crop`` to
        the uint8 BGR (size, size, 3) ``lr`` -- the evaluators' realistic recipe with
        probability ``p_realistic`` when it reduces the crop, else the light training
        extras.  Draws the realistic coin only when ``p_realistic`` > 0 and size < H."""
        d = self.deg.sample(rng, hr_size=crop.shape[0])
        if self.p_realistic and d.size < crop.shape[0] and rng.random() < self.p_realistic:
            # the evaluators' realistic recipe instead of the light training extras
            plain_reduction = dataclasses.replace(
                d, blur_sigma=0.0, noise_std=0.0, jpeg_quality=None
            )
            return d.size, degrade_realistic(crop, plain_reduction, rng)
        return d.size, degrade(crop, d, rng)

    @staticmethod
    def _online_augment(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Alignment jitter (p 0.8) and brightness/contrast (p 0.5) of a uint8 BGR crop."""
        if rng.random() < 0.8:
            crop = jitter_alignment(crop, rng, shift=0.04, scale=0.06, angle=6.0)
        if rng.random() < 0.5:
            gain, bias = rng.uniform(0.75, 1.25), rng.uniform(-20, 20)
            crop = np.clip(crop.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
        return crop
