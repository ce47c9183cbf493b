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
#: Real photos committed with the tests (tests/data/README.md: origin and terms).
PHOTOS = REPO / "tests" / "data"

HAVE_LFW = (LFW_ROOT / "pairs.txt").is_file() and LFW_IMAGES.is_dir()
HAVE_SCRFD = (SHARED / "models" / "scrfd_2.5g_bnkps.onnx").is_file()
#: Tests that need all of LFW (or its cached crops) or the non-commercial SCRFD files:
#: they skip on a clone without ../shared; CI has ../shared and runs them.
needs_shared = pytest.mark.skipif(
    not (HAVE_LFW and HAVE_SCRFD),
    reason="needs ../shared (all of LFW in shared/data/lfw and SCRFD in shared/models; "
    "set LRFACE_HOME=../shared)",
)


def pytest_collection_modifyitems(config, items):
    """Where ../shared is absent, skip (with the reason) every test of a module that
    imports SHARED, LFW_ROOT or LFW_IMAGES from here: it reads all of LFW or the SCRFD
    files.  Single tests elsewhere carry ``@needs_shared`` themselves."""
    if HAVE_LFW and HAVE_SCRFD:
        return
    shared_paths = (SHARED, LFW_ROOT, LFW_IMAGES)
    for item in items:
        names = vars(item.module).values()
        if any(any(v is p for p in shared_paths) for v in names):
            item.add_marker(needs_shared)


@pytest.fixture(scope="session")
def lfw_image():
    """Path of a real LFW photo (250x250 RGB JPEG, one centred face), committed."""
    return PHOTOS / "Aaron_Eckhart_0001.jpg"


@pytest.fixture(scope="session")
def same_pair():
    return (PHOTOS / "George_W_Bush_0001.jpg", PHOTOS / "George_W_Bush_0002.jpg")


@pytest.fixture(scope="session")
def diff_pair():
    return (PHOTOS / "George_W_Bush_0001.jpg", PHOTOS / "Colin_Powell_0001.jpg")


@pytest.fixture(scope="session")
def multi_face_image():
    """insightface's t1.jpg (six faces; it ships inside the insightface package), committed."""
    return PHOTOS / "t1.jpg"


@pytest.fixture(scope="session")
def teacher():
    """The ONNX teacher (mobilefacenet-arcface, flip fusion on), shipped in weights/."""
    from lrface.models.loader import load_embedder

    return load_embedder("mobilefacenet-arcface")


@pytest.fixture(scope="session")
def aligned_crop(lfw_image):
    from lrface.faces.pipeline import prepare_face

    return prepare_face(lfw_image).crop


@pytest.fixture
def rng():
    return np.random.default_rng(0)
