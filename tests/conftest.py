"""Shared fixtures: real models and faces from ../shared (set LRFACE_HOME or use ../shared)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LRFACE_HOME", REPO.parent / "shared"))
os.environ.setdefault("LRFACE_HOME", str(SHARED))
LFW_ROOT = SHARED / "data" / "lfw"
LFW_IMAGES = LFW_ROOT / "lfw-deepfunneled"


@pytest.fixture(scope="session")
def lfw_image():
    """Path of a real LFW photo (250x250 RGB JPEG, one centred face)."""
    return LFW_IMAGES / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"


@pytest.fixture(scope="session")
def same_pair():
    return (
        LFW_IMAGES / "George_W_Bush" / "George_W_Bush_0001.jpg",
        LFW_IMAGES / "George_W_Bush" / "George_W_Bush_0002.jpg",
    )


@pytest.fixture(scope="session")
def diff_pair():
    return (
        LFW_IMAGES / "George_W_Bush" / "George_W_Bush_0001.jpg",
        LFW_IMAGES / "Colin_Powell" / "Colin_Powell_0001.jpg",
    )


@pytest.fixture(scope="session")
def multi_face_image():
    """insightface's t1.jpg (six faces), shipped inside the insightface package."""
    import insightface

    return Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"


@pytest.fixture(scope="session")
def aligned_crop(lfw_image):
    from lrface.pipeline import prepare_face

    return prepare_face(lfw_image).crop


@pytest.fixture
def rng():
    return np.random.default_rng(0)
