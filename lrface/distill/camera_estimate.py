"""Estimate a camera's degradation from its unlabelled faces (``lrface adapt
--method degradation-match``, step 1).

The candidates are a grid over the parameters of the realistic recipe
(:mod:`lrface.faces.degrade`: Gaussian blur, motion blur, read + shot noise, JPEG):
:data:`GRID`, equally spaced over each range of :data:`~lrface.faces.degrade.REALISTIC`.
Every face -- the camera's, and reference HR faces degraded by each candidate -- is
area-reduced to the student's side ``s`` and summarised on its luma and chroma by
:func:`summaries` (132 numbers: the 8x8 DCT log power and near-zero share of each of the
64 coefficients, the chroma channels' high-frequency power, and the 8x8 blockiness).
The estimate is the candidate whose mean summary over the reference faces is nearest the
camera faces' mean summary, each feature's squared difference divided by the sum of the
two means' squared standard errors (:func:`estimate_camera`).

Reference faces are degraded in stages shared by the candidates (blur, then noise with
one fixed standard-normal field per face, then JPEG), with the very operations of
:func:`lrface.faces.degrade.apply_realistic`, so a candidate's reference faces are what
``apply_realistic`` makes of them with that noise field.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import cv2
import numpy as np

from lrface.faces.degrade import RealisticDraw, jpeg_roundtrip, motion_kernel

#: Number of summary features per face.
N_FEATURES = 64 + 64 + 2 + 2
#: DCT coefficients below this magnitude (0-255 luma units, orthonormal DCT) count as zeroed.
ZERO_BELOW = 1.0
#: Added to powers before the log (0-255 units squared).
LOG_EPS = 0.1


@dataclasses.dataclass(frozen=True)
class Grid:
    """Candidate values of each realistic parameter (units as :class:`RealisticDraw`).

    Motion angles apply only to lengths > 1 (length 1 is no motion)."""

    gauss_sigma: tuple[float, ...] = (0.3, 0.45, 0.6, 0.75, 0.9)
    motion_length: tuple[float, ...] = (1.0, 2.0, 3.0)
    motion_angle: tuple[float, ...] = (0.0, 45.0, 90.0, 135.0)
    read_std: tuple[float, ...] = (1.0, 3.0, 5.0)
    shot_gain: tuple[float, ...] = (0.02, 0.135, 0.25)
    jpeg_quality: tuple[int, ...] = (30, 40, 50, 60, 70)

    def blurs(self) -> list[tuple[float, float, float]]:
        """Every (sigma, motion length, angle) candidate; length 1 once, at angle 0."""
        out = []
        for sigma, length in itertools.product(self.gauss_sigma, self.motion_length):
            for angle in self.motion_angle if length > 1.0 else (0.0,):
                out.append((sigma, length, angle))
        return out

    def noises(self) -> list[tuple[float, float]]:
        """Every (read std, shot gain) candidate."""
        return list(itertools.product(self.read_std, self.shot_gain))

    def __len__(self) -> int:
        return len(self.blurs()) * len(self.noises()) * len(self.jpeg_quality)

    def card(self) -> dict[str, Any]:
        return {f.name: list(getattr(self, f.name)) for f in dataclasses.fields(self)}


#: The grid of ``lrface adapt --method degradation-match`` (2,025 candidates).
GRID = Grid()


def reduce_to(crops: np.ndarray, side: int) -> np.ndarray:
    """(N, H, W, 3) uint8 BGR faces -> (N, side, side, 3) uint8, area interpolation (a
    crop already ``side`` px is returned as is)."""
    if crops.shape[1] == side and crops.shape[2] == side:
        return crops
    return np.stack([cv2.resize(c, (side, side), interpolation=cv2.INTER_AREA) for c in crops])


def _dct_matrix(n: int = 8) -> np.ndarray:
    """Orthonormal DCT-II matrix, float64 (n, n): ``D @ x`` transforms a column."""
    k = np.arange(n)[:, None]
    m = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT8 = _dct_matrix(8)


def summaries(faces: np.ndarray) -> np.ndarray:
    """Per-face summary features, float64 (N, :data:`N_FEATURES`).

    ``faces``: (N, s, s, 3) uint8 BGR, ``s`` a multiple of 8 (the student's side).  On the
    luma Y (BT.601, 0-255): for each of the 64 coefficients of the orthonormal 8x8 block
    DCT, log(mean c^2 + eps) over the face's blocks and the share of blocks with
    |c| < :data:`ZERO_BELOW`; the log mean squared Laplacian of Cr and Cb; and, along x
    and along y, log(mean |step| across block borders / mean |step| inside blocks).
    """
    n, s = faces.shape[0], faces.shape[1]
    if s % 8 or faces.shape[2] != s:
        raise ValueError(f"summaries need square faces of a multiple of 8 px, got {faces.shape}")
    ycc = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2YCrCb) for f in faces]).astype(np.float64)
    y = ycc[..., 0]
    b = s // 8
    blocks = y.reshape(n, b, 8, b, 8).transpose(0, 1, 3, 2, 4).reshape(n, b * b, 8, 8)
    coef = _DCT8 @ blocks @ _DCT8.T  # (n, blocks, 8, 8)
    power = np.log((coef**2).mean(1).reshape(n, 64) + LOG_EPS)
    zero = (np.abs(coef) < ZERO_BELOW).mean(1).reshape(n, 64)
    chroma = []
    for c in (1, 2):
        lap = np.stack([cv2.Laplacian(ch, cv2.CV_64F) for ch in ycc[..., c]])
        chroma.append(np.log((lap**2).mean((1, 2)) + LOG_EPS))
    block = []
    for axis in (2, 1):  # steps along x, then along y
        step = np.abs(np.diff(y, axis=axis))  # step k: between pixel k and k + 1
        border = np.arange(step.shape[axis]) % 8 == 7
        across = np.take(step, np.flatnonzero(border), axis=axis).mean((1, 2))
        inside = np.take(step, np.flatnonzero(~border), axis=axis).mean((1, 2))
        block.append(np.log((across + 0.01) / (inside + 0.01)))
    return np.concatenate([power, zero, np.stack(chroma, 1), np.stack(block, 1)], axis=1)


def _moments(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and squared standard error of the mean of (N, F) features."""
    n = len(feats)
    return feats.mean(0), feats.var(0, ddof=1) / n if n > 1 else np.zeros(feats.shape[1])


@dataclasses.dataclass(frozen=True)
class CameraEstimate:
    """The grid candidate nearest a camera's faces: ``draw`` (its parameters),
    ``distance`` (the standardised squared distance, summed over features), the runner-up
    distance, and the faces used."""

    draw: RealisticDraw
    distance: float
    runner_up: float
    camera_faces: int
    reference_faces: int
    side: int

    def card(self) -> dict[str, Any]:
        return {
            "gauss_sigma": self.draw.gauss_sigma,
            "motion_length": self.draw.motion_length,
            "motion_angle": self.draw.motion_angle,
            "read_std": self.draw.read_std,
            "shot_gain": self.draw.shot_gain,
            "jpeg_quality": self.draw.jpeg_quality,
            "described": self.draw.describe(),
            "distance": round(self.distance, 3),
            "runner_up_distance": round(self.runner_up, 3),
            "camera_faces": self.camera_faces,
            "reference_faces": self.reference_faces,
            "side_px": self.side,
        }


def estimate_camera(
    camera: np.ndarray,
    reference: np.ndarray,
    side: int,
    grid: Grid = GRID,
    seed: int = 0,
) -> CameraEstimate:
    """The :data:`GRID` candidate whose degraded ``reference`` faces look most like
    ``camera``.

    ``camera``: (N, H, W, 3) uint8 BGR faces of the camera (aligned crops of any side, or
    already ``side`` px); ``reference``: (M, H', W', 3) uint8 BGR clean HR faces (aligned
    112x112 crops); both area-reduced to ``side`` (a multiple of 8: the student's input
    side).  ``seed`` fixes the reference faces' noise fields.  Deterministic.
    """
    if len(camera) < 2 or len(reference) < 2:
        raise ValueError(
            f"need >= 2 camera and reference faces, got {len(camera)}, {len(reference)}"
        )
    cam_mean, cam_se2 = _moments(summaries(reduce_to(camera, side)))
    ref = reduce_to(reference, side)
    rng = np.random.default_rng(seed)
    fields = rng.standard_normal(ref.shape).astype(np.float32)  # one noise field per face
    best: list[tuple[float, RealisticDraw]] = []
    for sigma, length, angle in grid.blurs():
        blurred = _blur(ref, sigma, length, angle).astype(np.float32)
        for read, shot in grid.noises():
            std = np.sqrt(read**2 + shot * blurred)
            noisy = np.clip(blurred + fields * std + 0.5, 0, 255).astype(np.uint8)
            for q in grid.jpeg_quality:
                out = np.stack([jpeg_roundtrip(f, q) for f in noisy])
                mean, se2 = _moments(summaries(out))
                d = float((((mean - cam_mean) ** 2) / (se2 + cam_se2 + 1e-9)).sum())
                best.append((d, RealisticDraw(sigma, length, angle, read, shot, q)))
    best.sort(key=lambda t: t[0])
    return CameraEstimate(
        draw=best[0][1],
        distance=best[0][0],
        runner_up=best[1][0] if len(best) > 1 else float("nan"),
        camera_faces=len(camera),
        reference_faces=len(reference),
        side=side,
    )


def _blur(faces: np.ndarray, sigma: float, length: float, angle: float) -> np.ndarray:
    """The blur stages of :func:`apply_realistic` on (N, s, s, 3) uint8 faces."""
    ker = motion_kernel(length, angle) if length > 1.0 else None
    out = []
    for f in faces:
        g = cv2.GaussianBlur(f, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        if ker is not None:
            g = cv2.filter2D(g, -1, ker, borderType=cv2.BORDER_REFLECT)
        out.append(g)
    return np.stack(out)
