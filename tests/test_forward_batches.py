"""Bounded onnxruntime calls: any batch size gives bit-identical embeddings (real models,
real crops), and no call exceeds the pixel budget."""

import numpy as np
import pytest

from lrface.faces.pipeline import prepare_face
from lrface.models.loader import load_embedder
from lrface.models.onnx_embedder import FORWARD_PIXELS


@pytest.fixture(scope="module")
def crops(same_pair, diff_pair, lfw_image):
    """40 aligned 112x112 crops (80 rows with their mirrors: two calls of a 112 px model):
    4 real faces, each also mirrored, shifted and dimmed."""
    base = [prepare_face(p, detect=False).crop for p in {*same_pair, *diff_pair, lfw_image}]
    out = []
    for i in range(40):
        c = base[i % len(base)]
        c = np.roll(c, i % 7 - 3, axis=1) if i % 2 else c[:, ::-1]
        out.append(np.ascontiguousarray((c * (0.6 + 0.4 * (i % 5) / 4)).astype(np.uint8)))
    return out


@pytest.mark.parametrize("name", ["lrface-mbf", "mobilefacenet-arcface"])
def test_any_batch_size_gives_identical_embeddings(name, crops):
    ref = load_embedder(name, batch_size=1).embed_crops(crops)
    for batch in (7, 100_000):
        emb = load_embedder(name, batch_size=batch)
        assert emb.batch_size <= emb.forward_rows
        assert np.array_equal(emb.embed_crops(crops), ref), (name, batch)


def test_calls_stay_within_the_pixel_budget(crops):
    emb = load_embedder("lrface-mbf", batch_size=100_000)
    seen: list[int] = []
    run = emb._forward_call
    emb._forward_call = lambda batch: (seen.append(len(batch)), run(batch))[1]
    try:
        emb.embed_crops(crops)
    finally:
        del emb._forward_call
    assert emb.forward_rows == FORWARD_PIXELS // (112 * 112) == 64
    assert max(seen) <= 64 and sum(seen) == 2 * len(crops)  # crops and their mirrors
