"""5-point face alignment to the ArcFace template, at any output size.

Landmark order everywhere in lrface (image coordinates, x right, y down): left eye,
right eye, nose tip, left mouth corner, right mouth corner -- "left" meaning the left
side of the *image*.  The template is insightface's 112x112 ArcFace template, scaled
by ``size / 112`` for other sizes.
"""

from __future__ import annotations

import cv2
import numpy as np

ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
TEMPLATE_SIZE = 112
_TEMPLATE_EYE_DIST = float(np.linalg.norm(ARCFACE_TEMPLATE[1] - ARCFACE_TEMPLATE[0]))


def template(size: int = TEMPLATE_SIZE) -> np.ndarray:
    """The ArcFace landmark template for a ``size`` x ``size`` crop, float32 (5, 2)."""
    return ARCFACE_TEMPLATE * (size / TEMPLATE_SIZE)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama 1991) mapping ``src`` onto ``dst``.

    ``src``, ``dst``: float (K, 2) point sets, K >= 2.  Returns a float32 (2, 3) matrix
    ``M`` with ``dst ~= src @ M[:, :2].T + M[:, 2]`` (rotation, uniform scale, shift).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    rot = u @ np.diag(d) @ vt
    var_s = (s0**2).sum() / len(src)
    scale = (sig * d).sum() / var_s if var_s > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m.astype(np.float32)


def native_face_size(landmarks: np.ndarray) -> float:
    """The side (px) of the aligned crop that would keep the face at its source resolution.

    That is ``112 * eye_distance / template_eye_distance``: a face whose eyes are 35 px
    apart in the photo yields ~112; a face 16 px wide in a CCTV frame yields ~16-20.
    """
    lm = np.asarray(landmarks, dtype=np.float32).reshape(5, 2)
    src = similarity_transform(template(TEMPLATE_SIZE), lm)
    scale = float(np.sqrt(abs(np.linalg.det(src[:, :2]))))
    return TEMPLATE_SIZE * scale


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: int = TEMPLATE_SIZE,
    border: str = "constant",
) -> np.ndarray:
    """Warp ``image`` so that ``landmarks`` land on the ArcFace template at ``size``.

    ``image``: uint8 BGR (H, W, 3); ``landmarks``: (5, 2) float in image pixels.
    Returns uint8 BGR (size, size, 3).  Sizes below 112 are produced by warping to
    112 x 112 first and reducing with area interpolation (the same recipe as
    :mod:`lrface.faces.degrade`), which avoids aliasing.
    """
    lm = np.asarray(landmarks, dtype=np.float32).reshape(5, 2)
    work = max(int(size), TEMPLATE_SIZE)
    m = similarity_transform(lm, template(work))
    mode = cv2.BORDER_CONSTANT if border == "constant" else cv2.BORDER_REPLICATE
    crop = cv2.warpAffine(image, m, (work, work), flags=cv2.INTER_LINEAR, borderMode=mode)
    if work != size:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return crop


def align_native(image: np.ndarray, landmarks: np.ndarray, max_size: int = 112) -> np.ndarray:
    """Align at the face's own resolution (see :func:`native_face_size`), capped at ``max_size``.

    Used for small faces in surveillance frames: the crop is not invented detail but the
    pixels the camera gave, ready for a low-resolution model or bicubic upsampling.
    """
    side = int(round(min(max(native_face_size(landmarks), 8.0), float(max_size))))
    lm = np.asarray(landmarks, dtype=np.float32).reshape(5, 2)
    m = similarity_transform(lm, template(side))
    return cv2.warpAffine(
        image, m, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )
