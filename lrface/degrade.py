"""Low-resolution simulation, shared by the evaluators and the distillation trainer.

The evaluation recipe (the one behind the LFW tables in ``../shared/data/lfw/README.md``):
take the aligned 112x112 crop, reduce it to ``s x s`` with **area** interpolation, then
either hand the ``s x s`` crop to a native low-resolution model, or upsample it back to
the model's input size with **bicubic** interpolation (``cv2.INTER_CUBIC``).  Models
receive ``s x s`` crops and do the upsampling themselves
(:meth:`lrface.models.embedder.Embedder.preprocess`), so the two routes are one code path.

Optional extras, applied in this order after the reduction: Gaussian blur (sigma in
pixels of the reduced crop), additive Gaussian noise (std in 0-255 units), JPEG
re-encoding at a quality.  Everything is deterministic given a seed.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

INTERPOLATIONS = {
    "area": cv2.INTER_AREA,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}


@dataclasses.dataclass(frozen=True)
class Degradation:
    """One degradation recipe.

    ``size``: side of the reduced crop (8..112).  ``down``: interpolation used to reduce.
    ``blur_sigma``: Gaussian blur sigma after reduction (0 = none).  ``noise_std``:
    Gaussian noise std, 0-255 units (0 = none).  ``jpeg_quality``: re-encode (None = no).
    ``up_to``: if set, upsample back to this side with bicubic; None keeps ``size``.
    """

    size: int
    down: str = "area"
    blur_sigma: float = 0.0
    noise_std: float = 0.0
    jpeg_quality: int | None = None
    up_to: int | None = None

    def describe(self) -> str:
        parts = [f"{self.down}-down to {self.size}px"]
        if self.blur_sigma:
            parts.append(f"blur sigma {self.blur_sigma:g}")
        if self.noise_std:
            parts.append(f"noise std {self.noise_std:g}")
        if self.jpeg_quality:
            parts.append(f"JPEG q{self.jpeg_quality}")
        parts.append(f"bicubic-up to {self.up_to}" if self.up_to else "model resizes (bicubic up)")
        return ", ".join(parts)


def degrade(
    crop: np.ndarray, deg: Degradation, seed: int | np.random.Generator | None = 0
) -> np.ndarray:
    """Apply ``deg`` to one uint8 BGR crop (H, W, 3); returns uint8 (s, s, 3) or (up_to, up_to, 3).

    ``seed`` only matters when noise is added (an int seed or a Generator).
    """
    if not 2 <= deg.size <= 4096:
        raise ValueError(f"degradation size must be in 2..4096, got {deg.size}")
    if deg.down not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {deg.down!r}; choose {', '.join(INTERPOLATIONS)}")
    out = crop
    if crop.shape[0] != deg.size or crop.shape[1] != deg.size:
        out = cv2.resize(crop, (deg.size, deg.size), interpolation=INTERPOLATIONS[deg.down])
    if deg.blur_sigma > 0:
        out = cv2.GaussianBlur(out, (0, 0), deg.blur_sigma)
    if deg.noise_std > 0:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        noisy = out.astype(np.float32) + rng.normal(0.0, deg.noise_std, out.shape).astype(
            np.float32
        )
        out = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
    if deg.jpeg_quality:
        _, enc = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(deg.jpeg_quality)])
        out = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    if deg.up_to and deg.up_to != deg.size:
        out = cv2.resize(out, (deg.up_to, deg.up_to), interpolation=cv2.INTER_CUBIC)
    return out


def degrade_batch(crops: np.ndarray, deg: Degradation, seed: int = 0) -> np.ndarray:
    """:func:`degrade` every crop of a (N, H, W, 3) uint8 batch (crop i uses seed + i)."""
    return np.stack([degrade(c, deg, seed + i) for i, c in enumerate(crops)])


@dataclasses.dataclass(frozen=True)
class RandomDegradation:
    """The training-time distribution of degradations.

    Size is drawn uniformly from ``[min_size, max_size]``; with probability ``p_hr`` the
    crop is left at full resolution (keeps the student good on HR input too).  The
    reduction interpolation is drawn from ``interpolations``; blur (sigma up to
    ``max_blur`` px, with probability ``p_blur``), noise (std up to ``max_noise``, with
    probability ``p_noise``) and JPEG (quality 30-95, probability ``p_jpeg``) are added
    independently.
    """

    min_size: int = 8
    max_size: int = 32
    p_hr: float = 0.1
    interpolations: tuple[str, ...] = ("area", "area", "bilinear", "bicubic", "nearest")
    p_blur: float = 0.2
    max_blur: float = 1.0
    p_noise: float = 0.2
    max_noise: float = 8.0
    p_jpeg: float = 0.2

    def sample(self, rng: np.random.Generator, hr_size: int = 112) -> Degradation:
        if rng.random() < self.p_hr:
            return Degradation(size=hr_size)
        size = int(rng.integers(self.min_size, self.max_size + 1))
        return Degradation(
            size=size,
            down=str(rng.choice(self.interpolations)),
            blur_sigma=float(rng.uniform(0.3, self.max_blur))
            if rng.random() < self.p_blur
            else 0.0,
            noise_std=float(rng.uniform(1.0, self.max_noise))
            if rng.random() < self.p_noise
            else 0.0,
            jpeg_quality=int(rng.integers(30, 96)) if rng.random() < self.p_jpeg else None,
        )


def jitter_alignment(
    crop: np.ndarray,
    rng: np.random.Generator,
    shift: float = 0.02,
    scale: float = 0.03,
    angle: float = 3.0,
) -> np.ndarray:
    """Small random similarity warp of an aligned crop (simulates landmark error at LR).

    ``shift`` is a fraction of the side; ``scale`` a relative change; ``angle`` degrees.
    """
    s = crop.shape[0]
    a = rng.uniform(-angle, angle)
    sc = 1.0 + rng.uniform(-scale, scale)
    m = cv2.getRotationMatrix2D((s / 2, s / 2), a, sc)
    m[:, 2] += rng.uniform(-shift, shift, 2) * s
    return cv2.warpAffine(crop, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
