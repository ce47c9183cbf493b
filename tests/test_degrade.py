"""Low-resolution simulation: recipe, determinism, options."""

import cv2
import numpy as np
import pytest

from lrface.degrade import Degradation, RandomDegradation, degrade, degrade_batch, jitter_alignment


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
