"""``lrface watch``, the tracker and templates, on a clip generated from real photos.

The clip (MJPG .avi, 352x288, 25 frames/s) shows two LFW faces of tests/data about 40 px
wide, moving in opposite directions; the gallery holds *other* photos of the same two
people and a third person.  Real detector (the shipped YuNet) and real models.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from lrface.cli.main import main
from lrface.errors import LrfaceError
from lrface.faces.pipeline import CropOptions, prepare_face
from lrface.models.loader import load_embedder
from lrface.search.gallery import FlatGallery
from lrface.search.templates import build_template, face_quality, fuse_template
from lrface.video.tracks import SortTracker
from lrface.video.watch import WatchSettings, watch_frames

PHOTOS = Path(__file__).resolve().parent / "data"
N_FRAMES = 30
#: (probe photo in the clip, its identity, top-left corner at frame 0, motion per frame)
WALKERS = (
    ("Abel_Pacheco_0004", "Abel_Pacheco", (10, 40), (3, 0)),
    ("George_W_Bush_0002", "George_W_Bush", (240, 150), (-2, 0)),
)
ENROLLED = ("Abel_Pacheco_0001", "George_W_Bush_0001", "Colin_Powell_0001")


def clip_frames(n: int = N_FRAMES) -> list[np.ndarray]:
    """uint8 BGR (288, 352, 3) frames: the WALKERS' photos at 0.3x (faces ~40 px) on grey."""
    faces = [
        cv2.resize(cv2.imread(str(PHOTOS / f"{p}.jpg")), (75, 75), interpolation=cv2.INTER_AREA)
        for p, _, _, _ in WALKERS
    ]
    frames = []
    for i in range(n):
        f = np.full((288, 352, 3), 90, np.uint8)
        for im, (_, _, (x, y), (dx, dy)) in zip(faces, WALKERS):
            x, y = x + dx * i, y + dy * i
            f[y : y + 75, x : x + 75] = im
        frames.append(f)
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "walk.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (352, 288))
    for f in clip_frames():
        w.write(f)
    w.release()
    return path


@pytest.fixture(scope="module")
def gallery_file(tmp_path_factory) -> Path:
    teacher = load_embedder("mobilefacenet-arcface")
    g = FlatGallery.for_embedder(teacher)
    opts = CropOptions(detector="yunet")
    for name in ENROLLED:
        crop = prepare_face(PHOTOS / f"{name}.jpg", opts).crop
        g.add(name.rsplit("_", 1)[0], teacher.embed_crops([crop]), [name])
    path = tmp_path_factory.mktemp("gallery") / "watchlist.npz"
    g.save(path)
    return path


def test_watch_cli_tracks_and_identifies(clip, gallery_file, tmp_path, capsys):
    out = tmp_path / "tracks.json"
    args = [
        "watch", clip, "--gallery", gallery_file, "--out", out, "--csv", tmp_path / "t.csv",
        "--save-crops", tmp_path / "crops", "--annotate", tmp_path / "ann.avi", "--quiet",
    ]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    result = json.loads(out.read_text())
    tracks = result["tracks"]
    assert result["frames_read"] == N_FRAMES == result["frames_processed"]
    assert result["detector"] == "yunet"
    assert sorted(t["identity"] for t in tracks) == ["Abel_Pacheco", "George_W_Bush"]
    for t in tracks:
        assert t["n_frames"] >= N_FRAMES - 2  # followed through the clip, not re-started
        assert t["first_frame"] <= 1 and t["last_frame"] >= N_FRAMES - 2
        assert t["end_s"] == pytest.approx(t["last_frame"] / 25.0, abs=1e-3)
        assert t["candidates"][0]["identity"] == t["identity"]
        assert t["score"] >= t["threshold"]
        assert t["model"] == "lrface-mbf"  # faces ~30-40 px: the student, as verify picks
        crop = cv2.imread(t["best_crop_file"])
        assert crop.shape == (112, 112, 3)
    # the Abel track moves right: its boxes follow the face
    abel = next(t for t in tracks if t["identity"] == "Abel_Pacheco")
    assert abel["best_box"][0] > 10
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert sorted(r["identity"] for r in rows) == ["Abel_Pacheco", "George_W_Bush"]
    cap = cv2.VideoCapture(str(tmp_path / "ann.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == N_FRAMES
    ok, first = cap.read()
    cap.release()
    assert ok and first.shape == (288, 352, 3)
    printed = capsys.readouterr().out
    assert "Abel_Pacheco" in printed and "George_W_Bush" in printed


def test_watch_frames_api_every_and_unknown(gallery_file):
    g = FlatGallery.load(gallery_file)
    report = watch_frames(clip_frames(), g, WatchSettings(every=2), fps=25.0)
    assert report.frames_read == N_FRAMES and report.frames_processed == N_FRAMES // 2
    assert sorted(t.identity for t in report.tracks) == ["Abel_Pacheco", "George_W_Bush"]
    assert all(f % 2 == 0 for t in report.tracks for f in t.frames)
    t = report.tracks[0]
    assert t.template.shape == (g.embedding_size,)
    assert np.linalg.norm(t.template) == pytest.approx(1.0, abs=1e-5)
    # a watchlist without these people: both tracks are unknown (open set)
    g.remove("Abel_Pacheco")
    g.remove("George_W_Bush")
    report = watch_frames(clip_frames(12), g, WatchSettings())
    assert [t.identity for t in report.tracks] == ["unknown", "unknown"]
    assert report.tracks[0].start_s is None  # no frame rate given


def test_ctrl_c_ends_reading_and_keeps_the_tracks(gallery_file):
    def camera():  # a stream that never ends until the user presses Ctrl-C
        yield from clip_frames(8)
        raise KeyboardInterrupt

    report = watch_frames(camera(), str(gallery_file))
    assert report.interrupted and report.frames_read == 8
    assert sorted(t.identity for t in report.tracks) == ["Abel_Pacheco", "George_W_Bush"]


def test_watchlist_folder_is_enrolled_with_the_teacher(tmp_path):
    for name in ENROLLED[:2]:
        person = tmp_path / "watchlist" / name.rsplit("_", 1)[0]
        person.mkdir(parents=True)
        (person / f"{name}.jpg").write_bytes((PHOTOS / f"{name}.jpg").read_bytes())
    report = watch_frames(clip_frames(10), tmp_path / "watchlist")
    assert sorted(t.identity for t in report.tracks) == ["Abel_Pacheco", "George_W_Bush"]


def test_tracker_keeps_ids_of_crossing_free_boxes():
    tr = SortTracker(max_misses=2)
    ids_seen = []
    for i in range(10):
        boxes = np.array([[10 + 4 * i, 10, 30 + 4 * i, 30], [200 - 3 * i, 100, 216 - 3 * i, 116]])
        ids, ended = tr.update(boxes)
        ids_seen.append(ids.tolist())
        assert ended == []
    assert all(ids == ids_seen[0] for ids in ids_seen) and len(set(ids_seen[0])) == 2
    # one face leaves: its track ends after max_misses + 1 frames without it
    ended_at = None
    for i in range(4):
        _, ended = tr.update(np.array([[50.0 + 4 * i, 10, 70 + 4 * i, 30]]))
        if ended:
            ended_at = (i, ended)
            break
    assert ended_at == (2, [ids_seen[0][1]])
    assert tr.finish() == [ids_seen[0][0]]


def test_fused_template_on_real_photos():
    student = load_embedder("lrface-mbf")
    teacher = load_embedder("mobilefacenet-arcface")
    opts = CropOptions(detector="yunet")
    gallery = teacher.embed_crops(
        [prepare_face(PHOTOS / f"{n}.jpg", opts).crop for n in ("George_W_Bush_0001",)]
    )[0]
    lr = []
    for name in ("George_W_Bush_0002", "George_W_Bush_0001"):
        crop = prepare_face(PHOTOS / f"{name}.jpg", opts).crop
        small = cv2.resize(crop, (16, 16), interpolation=cv2.INTER_AREA)
        lr.append(cv2.resize(small, (112, 112), interpolation=cv2.INTER_CUBIC))
    e = student.embed_crops(lr)
    w = np.array([face_quality(c, 16.0, 0.9) for c in lr])
    assert np.all((w > 0) & (w <= 0.25))  # a 16 px face is at most 16/64 of full quality
    t = fuse_template(e, w)
    expected = (w[:, None] * e.astype(np.float64)).sum(0)
    np.testing.assert_allclose(t, expected / np.linalg.norm(expected), atol=1e-6)
    np.testing.assert_allclose(fuse_template(e, np.array([1.0, 0.0])), e[0], atol=1e-6)
    # the fused template is at least as close to the enrolled photo as the worse image
    assert float(t @ gallery) >= float((e @ gallery).min())
    with pytest.raises(LrfaceError, match="weights"):
        fuse_template(e, np.array([1.0, -1.0]))


def test_build_template_reports_a_bad_image(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    tpl = build_template(
        [PHOTOS / "Colin_Powell_0001.jpg", bad], load_embedder("lrface-mbf"),
        CropOptions(detector="yunet"),
    )  # fmt: skip
    assert len(tpl.sources) == 1 and tpl.failures[0][0] == str(bad)
    with pytest.raises(LrfaceError, match="none of its 1 image"):
        build_template([bad], load_embedder("lrface-mbf"))


def test_identify_templates_one_answer_per_folder(gallery_file, tmp_path, capsys):
    for name, ident in (("George_W_Bush_0002", "bush"), ("Abel_Pacheco_0004", "abel")):
        (tmp_path / ident).mkdir(exist_ok=True)
        im = cv2.imread(str(PHOTOS / f"{name}.jpg"))
        for side in (60, 80):  # two small stills of the same subject
            small = cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(tmp_path / ident / f"{name}_{side}.png"), small)
    args = ["identify", "--templates", tmp_path / "bush", tmp_path / "abel"]
    args += ["--gallery", gallery_file, "--detector", "yunet", "--json"]
    assert main([str(a) for a in args]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [(r["identity"], r["n_images"]) for r in res] == [
        ("George_W_Bush", 2),
        ("Abel_Pacheco", 2),
    ]


@pytest.mark.parametrize(
    "case, message",
    [
        ("unreadable", "OpenCV cannot open it as a video|no frame could be decoded"),
        ("missing_video", "no such file"),
        ("missing_gallery", "no such gallery"),
        ("not_json", "give it a .json name"),
    ],
)
def test_watch_bad_inputs_one_line_exit_2(case, message, clip, gallery_file, tmp_path, capsys):
    video, gallery, out = clip, gallery_file, tmp_path / "t.json"
    if case == "unreadable":
        video = tmp_path / "clip.mp4"
        video.write_bytes(b"\x00" * 2048)
    elif case == "missing_video":
        video = tmp_path / "none.mp4"
    elif case == "missing_gallery":
        gallery = tmp_path / "none.npz"
    else:
        out = tmp_path / "t.txt"
    rc = main([str(a) for a in ["watch", video, "--gallery", gallery, "--out", out, "--quiet"]])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: ") and re.search(message, err[0])
    assert not out.exists()
