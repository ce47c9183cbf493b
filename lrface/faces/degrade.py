"""Low-resolution simulation, shared by the evaluators and the distillation trainer.

The evaluation recipe (the one behind the LFW tables in ``../shared/data/lfw/README.md``):
take the aligned 112x112 crop, reduce it to ``s x s`` with **area** interpolation, then
either hand the ``s x s`` crop to a native low-resolution model, or upsample it back to
the model's input size with **bicubic** interpolation (``cv2.INTER_CUBIC``).  Models
receive ``s x s`` crops and do the upsampling themselves
(:meth:`lrface.models.embedder.EmbedderBase.preprocess`), so the two routes are one code path.

Optional extras, applied in this order after the reduction: Gaussian blur (sigma in
pixels of the reduced crop), additive Gaussian noise (std in 0-255 units), JPEG
re-encoding at a quality.  Everything is deterministic given a seed.

**Realistic degradation** (``lrface benchmark --degrade realistic``; :data:`REALISTIC`,
:func:`degrade_realistic`): what a surveillance camera adds to a face that is already
small.  After the area reduction to ``s x s``, in this order, with every parameter drawn
independently and uniformly from its range (all in pixels of the ``s x s`` crop, or 0-255
intensity units):

1. Gaussian blur (optics, focus): sigma in [0.3, 0.9] px;
2. motion blur: a line kernel of length L in [1, 3] px (1 = no motion; the kernel spreads
   each pixel evenly along a segment of L - 1 px, splatted bilinearly) at an angle in
   [0, 180) degrees;
3. sensor noise, per pixel and channel: Gaussian with variance
   ``read_std**2 + shot_gain * x`` for a pixel of intensity x (read noise plus the
   Poisson-like shot noise of a photon count, in its Gaussian approximation), read_std
   in [1, 5] and shot_gain in [0.02, 0.25]; at mid-grey (x = 128) the noise std is
   between 1.9 and 7.5, at x = 255 between 2.5 and 9.4;
4. JPEG re-encoding at an integer quality in [30, 70] (OpenCV, 4:2:0 chroma).

In the evaluators each probe's draw is fixed by its index: :func:`realistic_rng` seeds
numpy's generator with ``(index, size, side)`` (LFW: the pair's index among the 6,000
official pairs, side 0 = first image, 1 = second), so every run, and every subset of
pairs, scores identical inputs; the parameters are drawn in the order above and the
noise field after them.

**Box crops** (``--probe-crop box``; :func:`box_crop`): the face as a detector hands it
over, without landmarks: the detector's box made square around its centre with side
``1.1 x max(width, height)`` (:data:`BOX_MARGIN`), cut from the photo (pixels outside it
replicate the edge), brought to 112x112 with area interpolation (the same "HR crop" size
as the aligned route; cubic if the square is smaller), and then reduced like an aligned
crop.
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
        out = jpeg_roundtrip(out, int(deg.jpeg_quality))
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


# --------------------------------------------------------------------------------------
# realistic degradation (evaluation condition ``--degrade realistic``)
# --------------------------------------------------------------------------------------

#: ``--degrade`` values: ``clean`` = area reduction only, ``realistic`` = :data:`REALISTIC`.
DEGRADE_CHOICES = ("clean", "realistic")
#: ``--probe-crop`` values: ``aligned`` = 5-point ArcFace template, ``box`` = detector box,
#: ``given`` = the detector box, reduced, then handed to the default crop mode of pre-cut
#: crops (:mod:`lrface.faces.given_crop`: aligned by the landmarks found inside it, else as a box).
PROBE_CROPS = ("aligned", "box", "given")
#: Square side of a box crop, as a multiple of the longer side of the detector's box.
BOX_MARGIN = 1.1
#: Side at which box crops are kept before reduction (same as the aligned HR crop).
BOX_HR_SIDE = 112
#: Salt of :func:`realistic_rng` (changing it changes every realistic draw).
REALISTIC_SALT = 21


@dataclasses.dataclass(frozen=True)
class RealisticDraw:
    """One draw of the realistic recipe (see the module docstring).

    ``gauss_sigma`` and ``motion_length`` in px of the reduced crop; ``motion_angle`` in
    degrees; ``read_std`` in 0-255 units; ``shot_gain`` = noise variance per unit of
    intensity; ``jpeg_quality`` an OpenCV JPEG quality.
    """

    gauss_sigma: float
    motion_length: float
    motion_angle: float
    read_std: float
    shot_gain: float
    jpeg_quality: int

    def describe(self) -> str:
        return (
            f"gauss sigma {self.gauss_sigma:.2f}, motion {self.motion_length:.2f}px at "
            f"{self.motion_angle:.0f} deg, noise read {self.read_std:.2f} + shot "
            f"{self.shot_gain:.3f}*x, JPEG q{self.jpeg_quality}"
        )


@dataclasses.dataclass(frozen=True)
class RealisticRecipe:
    """Ranges of the realistic degradation; every parameter uniform in its range."""

    gauss_sigma: tuple[float, float] = (0.3, 0.9)
    motion_length: tuple[float, float] = (1.0, 3.0)
    read_std: tuple[float, float] = (1.0, 5.0)
    shot_gain: tuple[float, float] = (0.02, 0.25)
    jpeg_quality: tuple[int, int] = (30, 70)

    def sample(self, rng: np.random.Generator) -> RealisticDraw:
        """Draw the parameters, in this order: gauss sigma, motion length, motion angle, read
        std, shot gain, JPEG quality."""
        return RealisticDraw(
            gauss_sigma=float(rng.uniform(*self.gauss_sigma)),
            motion_length=float(rng.uniform(*self.motion_length)),
            motion_angle=float(rng.uniform(0.0, 180.0)),
            read_std=float(rng.uniform(*self.read_std)),
            shot_gain=float(rng.uniform(*self.shot_gain)),
            jpeg_quality=int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)),
        )

    def describe(self) -> str:
        """One line for results files and captions."""
        return (
            f"realistic: gauss blur sigma {self.gauss_sigma[0]:g}-{self.gauss_sigma[1]:g}px, "
            f"motion blur {self.motion_length[0]:g}-{self.motion_length[1]:g}px at 0-180 deg, "
            f"noise N(0, read^2 + shot*x) read {self.read_std[0]:g}-{self.read_std[1]:g} "
            f"shot {self.shot_gain[0]:g}-{self.shot_gain[1]:g}, JPEG q{self.jpeg_quality[0]}-"
            f"{self.jpeg_quality[1]}; seeded per probe index and size"
        )


#: The recipe of ``--degrade realistic``.
REALISTIC = RealisticRecipe()


def realistic_rng(index: int, size: int, side: int = 0) -> np.random.Generator:
    """The generator of probe ``index`` at ``size`` px (``side`` 0/1: which image of a pair).

    ``index`` is any non-negative integer (LFW: the official pair index; folder: a stable
    hash of the probe's path), so the draw never depends on which other probes are scored.
    """
    if index < 0 or size < 0 or side < 0:
        raise ValueError(f"realistic_rng needs non-negative ints, got {index}, {size}, {side}")
    return np.random.default_rng([REALISTIC_SALT, int(index), int(size), int(side)])


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """Normalised float32 (k, k) line kernel: a segment of ``length - 1`` px at ``angle``
    degrees through the centre, sampled densely and splatted bilinearly (k odd; length 1
    gives the 1x1 identity)."""
    half = max(0.0, (float(length) - 1.0) / 2.0)
    k = 2 * int(np.ceil(half)) + 1
    ker = np.zeros((k + 1, k + 1), np.float64)  # one spare row/col for the splat
    c = k // 2
    t = np.linspace(-half, half, max(2, int(np.ceil(16 * half)) + 1))
    rad = np.deg2rad(angle)
    xs, ys = c + t * np.cos(rad), c - t * np.sin(rad)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, w in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        np.add.at(ker, (y0 + dy, x0 + dx), w)
    ker = ker[:k, :k]
    return (ker / ker.sum()).astype(np.float32)


def apply_realistic(small: np.ndarray, draw: RealisticDraw, rng: np.random.Generator) -> np.ndarray:
    """Blur, noise and JPEG of ``draw`` on a uint8 BGR (s, s, 3) crop; same shape out.

    ``rng`` gives the noise field (after the draw was taken from it).
    """
    out = cv2.GaussianBlur(small, (0, 0), draw.gauss_sigma, borderType=cv2.BORDER_REFLECT)
    if draw.motion_length > 1.0:
        ker = motion_kernel(draw.motion_length, draw.motion_angle)
        out = cv2.filter2D(out, -1, ker, borderType=cv2.BORDER_REFLECT)
    x: np.ndarray = out.astype(np.float32)
    std = np.sqrt(draw.read_std**2 + draw.shot_gain * x)
    x = x + rng.standard_normal(x.shape).astype(np.float32) * std
    out = np.clip(x + 0.5, 0, 255).astype(np.uint8)
    return jpeg_roundtrip(out, int(draw.jpeg_quality))


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` (uint8 BGR (h, w, 3)) JPEG-encoded at ``quality`` (OpenCV's encoder) and
    decoded again; same shape and dtype."""
    ok, enc = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    out = cv2.imdecode(enc, cv2.IMREAD_COLOR) if ok else None
    if out is None:  # pragma: no cover - OpenCV always round-trips a uint8 image
        raise ValueError(f"JPEG round trip of a {image.dtype} {image.shape} image failed")
    return out


def degrade_realistic(
    crop: np.ndarray,
    deg: Degradation,
    rng: np.random.Generator,
    recipe: RealisticRecipe = REALISTIC,
) -> np.ndarray:
    """``deg``'s reduction (and its own extras), then a draw of ``recipe``, then ``deg.up_to``.

    ``crop``: uint8 BGR (H, W, 3).  Returns uint8 (s, s, 3), or (up_to, up_to, 3).  For
    the evaluators' fixed draws pass ``realistic_rng(index, size, side)``; for training
    any generator.
    """
    small = degrade(crop, dataclasses.replace(deg, up_to=None), rng)
    out = apply_realistic(small, recipe.sample(rng), rng)
    if deg.up_to and deg.up_to != deg.size:
        out = cv2.resize(out, (deg.up_to, deg.up_to), interpolation=cv2.INTER_CUBIC)
    return out


# --------------------------------------------------------------------------------------
# box crops (evaluation condition ``--probe-crop box``)
# --------------------------------------------------------------------------------------


def square_box(box: np.ndarray, margin: float = BOX_MARGIN) -> tuple[int, int, int]:
    """``(x0, y0, side)`` in whole pixels: the square of side ``margin * max(w, h)`` around
    the centre of ``box`` (x1, y1, x2, y2; float image coordinates)."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, np.float64).reshape(4))
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"empty box {[x1, y1, x2, y2]}")
    side = max(2, int(round(margin * max(x2 - x1, y2 - y1))))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side


def box_crop(
    image: np.ndarray,
    box: np.ndarray,
    margin: float = BOX_MARGIN,
    size: int = BOX_HR_SIDE,
) -> np.ndarray:
    """The square box crop of :func:`square_box`, resized to ``size`` x ``size``.

    ``image``: uint8 BGR (H, W, 3); parts of the square outside the image replicate its
    edge.  Area interpolation when shrinking, cubic when enlarging.  Returns uint8 BGR
    (size, size, 3).  No landmarks are used.
    """
    x0, y0, side = square_box(box, margin)
    h, w = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    cut = image[y0 : y0 + side, x0 : x0 + side]
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_CUBIC
    return cv2.resize(cut, (size, size), interpolation=interp)
