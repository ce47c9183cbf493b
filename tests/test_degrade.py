"""Low-resolution simulation: recipe, determinism, options."""

import cv2
import numpy as np
import pytest

from lrface.faces.degrade import (
    Degradation,
    RandomDegradation,
    degrade,
    degrade_batch,
    jitter_alignment,
)


def test_area_down_matches_opencv(aligned_crop):
    out = degrade(aligned_crop, Degradation(size=16))
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(
        out, cv2.resize(aligned_crop, (16, 16), interpolation=cv2.INTER_AREA)
    )


def test_up_to_restores_size_with_bicubic(aligned_crop):
    out = degrade(aligned_crop, Degradation(size=12, up_to=112))
    small = cv2.resize(aligned_crop, (12, 12), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(out, cv2.resize(small, (112, 112), interpolation=cv2.INTER_CUBIC))


@pytest.mark.parametrize("interp", ["area", "bilinear", "bicubic", "nearest"])
def test_interpolations_differ_and_are_deterministic(aligned_crop, interp):
    a = degrade(
        aligned_crop, Degradation(size=20, down=interp, noise_std=5, jpeg_quality=50), seed=3
    )
    b = degrade(
        aligned_crop, Degradation(size=20, down=interp, noise_std=5, jpeg_quality=50), seed=3
    )
    c = degrade(
        aligned_crop, Degradation(size=20, down=interp, noise_std=5, jpeg_quality=50), seed=4
    )
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_blur_noise_jpeg_change_pixels(aligned_crop):
    base = degrade(aligned_crop, Degradation(size=24))
    for d in (
        Degradation(size=24, blur_sigma=1.0),
        Degradation(size=24, noise_std=8),
        Degradation(size=24, jpeg_quality=20),
    ):
        out = degrade(aligned_crop, d, seed=0)
        assert out.shape == base.shape
        assert np.abs(out.astype(int) - base).mean() > 0.5, d.describe()


def test_bad_arguments(aligned_crop):
    with pytest.raises(ValueError):
        degrade(aligned_crop, Degradation(size=1))
    with pytest.raises(ValueError):
        degrade(aligned_crop, Degradation(size=16, down="lanczos9"))


def test_batch_and_random_sampler(aligned_crop):
    batch = degrade_batch(np.stack([aligned_crop] * 3), Degradation(size=8))
    assert batch.shape == (3, 8, 8, 3)
    sampler = RandomDegradation(8, 32, p_hr=0.0)
    sizes = [sampler.sample(np.random.default_rng(i)).size for i in range(200)]
    assert min(sizes) >= 8 and max(sizes) <= 32 and len(set(sizes)) > 15
    hr = RandomDegradation(8, 32, p_hr=1.0).sample(np.random.default_rng(0))
    assert hr.size == 112
    j = jitter_alignment(aligned_crop, np.random.default_rng(0))
    assert j.shape == aligned_crop.shape and not np.array_equal(j, aligned_crop)


# ------------------------------------------------------------------ realistic degradation


def test_realistic_is_fixed_by_index_and_differs_between_indices(aligned_crop):
    from lrface.faces.degrade import REALISTIC, degrade_realistic, realistic_rng

    deg = Degradation(size=16)
    a = degrade_realistic(aligned_crop, deg, realistic_rng(7, 16, 1))
    b = degrade_realistic(aligned_crop, deg, realistic_rng(7, 16, 1))
    clean = degrade(aligned_crop, deg)
    assert a.shape == (16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    others = [
        degrade_realistic(aligned_crop, deg, realistic_rng(*key))
        for key in ((8, 16, 1), (7, 16, 0), (7, 12, 1))
    ]
    assert not any(np.array_equal(a, o) for o in others)  # index, side and size all count
    # degraded, not a copy of the clean reduction: blur + noise + JPEG move pixels
    assert np.abs(a.astype(int) - clean).mean() > 2.0
    # the draws cover the documented ranges
    draws = [REALISTIC.sample(realistic_rng(i, 16)) for i in range(400)]
    q = [d.jpeg_quality for d in draws]
    assert min(q) >= 30 and max(q) <= 70 and len(set(q)) > 30
    sig = [d.gauss_sigma for d in draws]
    assert 0.3 <= min(sig) < 0.35 and 0.85 < max(sig) <= 0.9
    assert all(1.0 <= d.motion_length <= 3.0 and 0 <= d.motion_angle < 180 for d in draws)
    assert all(1 <= d.read_std <= 5 and 0.02 <= d.shot_gain <= 0.25 for d in draws)


def test_realistic_keeps_up_to_and_rejects_negative_index(aligned_crop):
    from lrface.faces.degrade import degrade_realistic, realistic_rng

    up = degrade_realistic(aligned_crop, Degradation(size=12, up_to=112), realistic_rng(0, 12))
    assert up.shape == (112, 112, 3)
    with pytest.raises(ValueError):
        realistic_rng(-1, 16)


def test_realistic_noise_grows_with_intensity():
    """Shot noise: brighter pixels get more noise (the Poisson-like term)."""
    from lrface.faces.degrade import RealisticDraw, apply_realistic

    draw = RealisticDraw(0.01, 1.0, 0.0, 1.0, 0.25, 100)  # noise only (JPEG q100)
    dark = np.full((64, 64, 3), 20, np.uint8)
    bright = np.full((64, 64, 3), 230, np.uint8)
    sd_dark = apply_realistic(dark, draw, np.random.default_rng(0)).astype(float).std()
    sd_bright = apply_realistic(bright, draw, np.random.default_rng(0)).astype(float).std()
    # noise stds sqrt(1 + 0.25 x): 2.5 at x = 20, 7.6 at x = 230 (ratio 3.0) before JPEG,
    # whose 4:2:0 chroma subsampling averages part of it away even at q100
    assert sd_dark > 1.0 and 2.3 < sd_bright / sd_dark < 3.7


def test_motion_kernel_is_a_normalised_line():
    from lrface.faces.degrade import motion_kernel

    np.testing.assert_array_equal(motion_kernel(1.0, 33.0), np.ones((1, 1), np.float32))
    k = motion_kernel(3.0, 0.0)
    assert k.shape == (3, 3) and abs(k.sum() - 1) < 1e-6
    assert np.all(k[[0, 2]] == 0) and k[1, 0] == pytest.approx(k[1, 2]) and k[1, 0] > 0.2
    np.testing.assert_allclose(motion_kernel(3.0, 90.0), k.T, atol=1e-6)


# ------------------------------------------------------------------------------ box crops


def test_box_crop_is_square_around_the_face_and_differs_from_aligned(lfw_image, aligned_crop):
    from lrface.faces.degrade import BOX_MARGIN, box_crop, square_box
    from lrface.faces.detect import load_detector

    image = cv2.imread(str(lfw_image))
    face = load_detector().detect(image)[0]
    x0, y0, side = square_box(face.box)
    w, h = face.box[2] - face.box[0], face.box[3] - face.box[1]
    assert side == round(BOX_MARGIN * max(w, h))
    crop = box_crop(image, face.box)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    # the face (box centre, nose tip) lies in the middle of the crop
    f = 112 / side
    cx, cy = ((face.box[0] + face.box[2]) / 2 - x0) * f, ((face.box[1] + face.box[3]) / 2 - y0) * f
    assert abs(cx - 56) <= 1 and abs(cy - 56) <= 1
    nx, ny = (face.landmarks[2] - (x0, y0)) * f
    assert 30 < nx < 82 and 30 < ny < 82
    # a different cut from the template-aligned crop (more context, no rotation/scale fit)
    assert np.abs(crop.astype(int) - aligned_crop).mean() > 10
    np.testing.assert_array_equal(
        degrade(crop, Degradation(size=16)),
        cv2.resize(crop, (16, 16), interpolation=cv2.INTER_AREA),
    )


def test_box_crop_outside_the_image_replicates_the_edge():
    from lrface.faces.degrade import box_crop

    image = np.zeros((50, 50, 3), np.uint8)
    image[:, :25] = 200  # left half bright
    crop = box_crop(image, np.array([-20, 10, 20, 40], np.float32), size=44)
    assert crop.shape == (44, 44, 3)
    # the part left of the image repeats the bright edge, never black padding
    assert crop[:, :10].min() == 200
    with pytest.raises(ValueError, match="empty box"):
        box_crop(image, np.array([5, 5, 5, 9], np.float32))
