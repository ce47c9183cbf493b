"""The Python API: verify/embed/detect on real faces; model choice by face size."""

import cv2
import numpy as np

import lrface
from lrface.degrade import Degradation, degrade


def test_verify_fields_and_decision(same_pair, diff_pair):
    res = lrface.verify(*same_pair, model="mobilefacenet-arcface")
    assert res["same"] is True and res["model"] == "mobilefacenet-arcface"
    assert set(res) >= {"same", "similarity", "threshold", "model", "images"}
    assert lrface.verify(*diff_pair, model="mobilefacenet-arcface")["same"] is False


def test_embed_pre_cut_crops_of_any_size(aligned_crop):
    crops = [degrade(aligned_crop, Degradation(size=s)) for s in (8, 12, 16, 24, 32)] + [
        aligned_crop
    ]
    emb = lrface.load_embedder("mobilefacenet-arcface")
    out = lrface.embed(crops, model=emb, detect=False)
    assert out.shape == (6, 128) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # the 32-px copy is still close to the original; the 8-px one much less so
    assert out[4] @ out[5] > out[0] @ out[5]


def test_detect_api(multi_face_image):
    faces = lrface.detect(multi_face_image)
    assert len(faces) == 6 and set(faces[0]) == {"box", "landmarks", "score"}


def test_default_model_follows_face_size(same_pair, tmp_path):
    assert lrface.choose_model([120.0, 130.0]) == "mobilefacenet-arcface"
    small = lrface.choose_model([120.0, 20.0])
    assert small in ("lrface-mbf", "mobilefacenet-arcface")
    img = cv2.imread(str(same_pair[1]))
    tiny = cv2.resize(img, (40, 40), interpolation=cv2.INTER_AREA)
    res = lrface.verify(same_pair[0], tiny)
    assert res["model"] == small
    assert res["images"][1]["face_size_px"] < 64


def test_benchmark_student_hr_side_is_its_teacher(tmp_path, capsys):
    """--hr-model auto (default): hr-lr compares teacher HR embeddings with student LR ones,
    while hr-hr stays student vs student."""
    import json

    from conftest import LFW_ROOT

    from lrface.cli import main

    rc = main(
        [
            "benchmark",
            "--protocol",
            "lfw",
            "--data",
            str(LFW_ROOT),
            "--split",
            "test",
            "--mode",
            "hr-hr,hr-lr",
            "--sizes",
            "12",
            "--model",
            "lrface-mbf",
            "--max-pairs-per-fold",
            "20",
            "--out",
            str(tmp_path),
            "--json",
            "--no-progress",
        ]
    )
    assert rc == 0
    res = json.loads((tmp_path / "results.json").read_text())
    rows = {r["mode"]: r for r in res["results"]}
    assert rows["hr-lr"]["hr_model"] == "mobilefacenet-arcface"
    assert rows["hr-hr"]["hr_model"] is None
    # the student at 12 px beats the teacher's ~72 % by a wide margin even on 100 pairs
    assert rows["hr-lr"]["metrics"]["accuracy_mean"] > 0.85
    capsys.readouterr()
