"""The `lrface` CLI as a user runs it: verify, detect, embed; exit codes; bad input."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from lrface.faces.align import align_face
from lrface.faces.detect import load_detector
from lrface.io.images import read_image


def run(*args, check=None):
    proc = subprocess.run(
        [sys.executable, "-m", "lrface", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check is not None:
        assert proc.returncode == check, proc.stderr
    return proc


def test_verify_same_and_different(same_pair, diff_pair):
    p = run("verify", *same_pair, "--json", "--model", "mobilefacenet-arcface", check=0)
    res = json.loads(p.stdout)
    assert res["same"] is True and res["similarity"] >= res["threshold"]
    assert res["models"] == ["mobilefacenet-arcface", "mobilefacenet-arcface"]
    for im in res["images"]:
        assert len(im["box"]) == 4 and len(im["landmarks"]) == 5 and 0 < im["score"] <= 1
        assert im["faces_found"] >= 1
    p = run("verify", *diff_pair, "--model", "mobilefacenet-arcface", check=1)
    assert p.stdout.startswith("different people: similarity") and "threshold" in p.stdout


def test_verify_small_face_in_frame(tmp_path, same_pair):
    img = read_image(same_pair[1])
    face = load_detector("auto").detect(img)[0]
    small = cv2.resize(align_face(img, face.landmarks, 112), (24, 24), interpolation=cv2.INTER_AREA)
    frame = np.full((240, 320, 3), 127, np.uint8)
    frame[60:84, 200:224] = small
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), frame)
    p = run("verify", same_pair[0], path, "--json")
    assert p.returncode in (0, 1), p.stderr
    res = json.loads(p.stdout)
    box = res["images"][1]["box"]
    assert 195 <= (box[0] + box[2]) / 2 <= 229 and 55 <= (box[1] + box[3]) / 2 <= 89
    assert res["images"][1]["face_size_px"] < 64
    assert res["models"] == ["mobilefacenet-arcface", "lrface-mbf"]  # per-face choice
    assert [im["crop"] for im in res["images"]] == ["aligned-5pt"] * 2  # the small one too
    assert res["same"] and p.returncode == 0


def test_verify_pre_cut_crops(tmp_path, same_pair):
    crops = []
    for i, src in enumerate(same_pair):
        img = read_image(src)
        face = load_detector("auto").detect(img)[0]
        crop = align_face(img, face.landmarks, 112)
        crops.append(tmp_path / f"c{i}.png")
        cv2.imwrite(str(crops[-1]), crop)
    res = json.loads(
        run(
            "verify", *crops, "--no-detect", "--crop-mode", "aligned", "--json",
            "--model", "mobilefacenet-arcface",
        ).stdout
    )  # fmt: skip
    assert res["same"] is True
    assert [im["crop"] for im in res["images"]] == ["given", "given"]
    assert [im["crop_mode"] for im in res["images"]] == ["aligned", "aligned"]
    # the default crop mode (auto) finds the landmarks inside the aligned crops and aligns
    res = json.loads(run("verify", *crops, "--no-detect", "--json").stdout)
    assert res["same"] is True
    assert [im["crop"] for im in res["images"]] == ["aligned-5pt", "aligned-5pt"]
    assert [im["crop_mode"] for im in res["images"]] == ["auto", "auto"]
    assert all(im["found_by"] and im["found_with"] for im in res["images"])
    assert res["models"] == ["mobilefacenet-arcface"] * 2  # 112-px faces: the teacher


def test_crop_modes_per_crop_tight_box_crops(tmp_path, same_pair):
    """Unaligned box crops (the detector's box, 1.1x, 200 px, as a CCTV system cuts them):
    auto aligns inside them, box embeds them as boxes with the box model, and --json says
    per crop which path was used and which model embedded it."""
    from lrface.faces.degrade import box_crop

    crops = []
    for i, src in enumerate(same_pair):
        img = read_image(src)
        face = load_detector("auto").detect(img)[0]
        crops.append(tmp_path / f"b{i}.png")
        cv2.imwrite(str(crops[-1]), box_crop(img, face.box, margin=1.1, size=200))
    auto = json.loads(run("verify", *crops, "--no-detect", "--json").stdout)
    assert [im["crop"] for im in auto["images"]] == ["aligned-5pt"] * 2
    assert auto["same"] is True
    box = json.loads(run("verify", *crops, "--no-detect", "--crop-mode", "box", "--json").stdout)
    assert [im["crop"] for im in box["images"]] == ["box", "box"]
    assert box["models"] == ["lrface-box", "lrface-box"]  # no landmarks: the box model
    assert auto["similarity"] != box["similarity"]
    bad = run("verify", *crops, "--crop-mode", "box")
    assert bad.returncode == 2 and "--crop-mode box applies to pre-cut crops" in bad.stderr


@pytest.mark.parametrize("command", ["verify", "embed"])
def test_help_says_which_crop_every_model_expects(command):
    """verify/embed -h: the aligned crop every model expects, the retries, and how
    --no-detect crops are read (--crop-mode)."""
    text = " ".join(run(command, "-h", check=0).stdout.split())
    assert "expects a face aligned to the 5-point ArcFace template at 112x112" in text
    assert "aligned by their 5 landmarks" in text and "then with the other detector" in text
    assert "--crop-mode {auto,aligned,box}" in text
    assert "auto (default: look for the face's landmarks inside" in text
    if command == "embed":
        assert "lrface.choose_model" in text and "face_models" in text


def _bad_inputs(tmp_path, lfw_image):
    text = tmp_path / "notes.txt"
    text.write_text("this is not an image\n")
    trunc = tmp_path / "truncated.jpg"
    trunc.write_bytes(lfw_image.read_bytes()[:2500])
    one = tmp_path / "one.png"
    cv2.imwrite(str(one), np.zeros((1, 1, 3), np.uint8))
    noface = tmp_path / "noface.png"
    cv2.imwrite(
        str(noface), np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    )
    return {
        "text": (text, "not a readable image"),
        "truncated": (trunc, "truncated"),
        "1x1": (one, "too small"),
        "missing": (tmp_path / "missing.jpg", "no such file"),
        "directory": (tmp_path, "directory"),
        "no face": (noface, "--no-detect"),
    }


def test_bad_inputs_exit_2_with_one_line(tmp_path, lfw_image):
    for label, (path, needle) in _bad_inputs(tmp_path, lfw_image).items():
        p = run("verify", lfw_image, path)
        assert p.returncode == 2, (label, p.stdout, p.stderr)
        # one error line (plus, without SCRFD installed, the one detector notice)
        lines = [ln for ln in p.stderr.strip().splitlines() if "lrface models fetch" not in ln]
        assert len(lines) == 1 and "Traceback" not in p.stderr, (label, p.stderr)
        assert str(path) in lines[0] and needle in lines[0], (label, lines[0])


def test_detect_json_and_crops(tmp_path, multi_face_image):
    p = run(
        "detect",
        multi_face_image,
        "--json",
        "--save-crops",
        tmp_path / "crops",
        "--size",
        "32",
        check=0,
    )
    faces = json.loads(p.stdout)["faces"]
    assert len(faces) == 6
    saved = sorted((tmp_path / "crops").glob("*.png"))
    assert len(saved) == 6 and cv2.imread(str(saved[0])).shape == (32, 32, 3)


def test_verify_reports_several_faces(multi_face_image, lfw_image):
    p = run("verify", multi_face_image, lfw_image, "--model", "mobilefacenet-arcface")
    assert p.returncode == 1
    assert "6 faces found, used face 0" in p.stderr


def test_embed_npz_keeps_going_after_bad_files(tmp_path, same_pair, lfw_image):
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    out = tmp_path / "emb.npz"
    p = run(
        "embed",
        same_pair[0],
        bad,
        same_pair[1],
        "--out",
        out,
        "--model",
        "mobilefacenet-arcface",
        "--workers",
        "1",
        "--quiet",
    )
    assert p.returncode == 3, p.stderr  # partial batch failure (lrface.cli.main docstring)
    assert "bad.jpg" in p.stderr
    with np.load(out) as z:
        assert z["embeddings"].shape == (2, 128)
        assert [str(x) for x in z["paths"]] == [str(same_pair[0]), str(same_pair[1])]


@pytest.mark.parametrize("cmd", [["models", "list"], ["--version"]])
def test_misc_commands(cmd):
    assert run(*cmd).returncode == 0


def test_crop_options_reach_the_crops_from_the_command_line(tmp_path, multi_face_image, same_pair):
    """Issue 20's bug: ``embed --detector/--det-thresh/--face-index`` and ``verify
    --det-thresh`` were parsed and ignored.  In-process runs of the real CLI: each option
    changes what is embedded, and the output's settings record it."""
    from lrface.cli.main import main

    image = read_image(multi_face_image)
    faces = load_detector("yunet").detect(image)
    outs = {}
    for idx in (0, 2):
        out = tmp_path / f"face{idx}.npz"
        args = ["embed", multi_face_image, "--out", out, "--quiet", "--detector", "yunet"]
        assert main([str(a) for a in [*args, "--det-thresh", "0.7", "--face-index", idx]]) == 0
        with np.load(out, allow_pickle=False) as z:
            outs[idx] = z["embeddings"][0]
            settings = json.loads(str(z["meta"]))["settings"]
        assert settings["detector"] == "yunet" and settings["det_thresh"] == 0.7
        assert settings["face_index"] == idx
    assert float(outs[0] @ outs[2]) < 0.5  # two different people of the photo
    # a threshold above every face's score: nothing is found, so it was applied
    high = min(1.0, max(f.score for f in faces) + 1e-3)
    out = tmp_path / "none.npz"
    args = ["embed", multi_face_image, "--out", out, "--quiet", "--detector", "yunet"]
    assert main([str(a) for a in [*args, "--det-thresh", f"{high:.4f}"]]) == 2
    p = run("verify", *same_pair, "--detector", "yunet", "--det-thresh", "0.9999")
    assert p.returncode == 2 and "no face found" in p.stderr
    assert run("verify", *same_pair, "--detector", "yunet", "--det-thresh", "0.3").returncode == 0
