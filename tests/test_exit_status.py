"""The CLI's exit-status contract (module docstring of :mod:`lrface.cli.main`), per command.

0 success; 1 negative answer (verify: different people; detect: no face); 2 error or
every input of a batch failed; 3 some inputs of a batch failed.  Every failure is one
line on stderr naming the file (once) and no traceback.  Real LFW photos, real models;
commands run in-process through :func:`lrface.cli.main.main` (one subprocess checks that the
status reaches the shell).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import LFW_IMAGES as LFW

from lrface.cli.main import main

MODEL = "mobilefacenet-arcface"


def run(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    assert "Traceback" not in out.err, out.err
    return rc, out.out, out.err


def argparse_error(capsys, *args) -> str:
    """Run a command that argparse must refuse (exit 2); returns stderr."""
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.fixture
def files(tmp_path):
    """Two LFW photos of one person, two unreadable files, a face-less image, a file."""
    bad1, bad2 = tmp_path / "bad1.jpg", tmp_path / "bad2.png"
    bad1.write_bytes(b"not an image")
    bad2.write_bytes(b"neither is this")
    noface = tmp_path / "noface.png"
    noise = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    cv2.imwrite(str(noface), noise)
    a_file = tmp_path / "a_file"
    a_file.write_text("I am a file, not a directory")
    bush = LFW / "George_W_Bush"
    return {
        "good": [bush / "George_W_Bush_0001.jpg", bush / "George_W_Bush_0002.jpg"],
        "bad": [bad1, bad2],
        "noface": noface,
        "file": a_file,
    }


def _failure_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("failed: ")]


# ---------------------------------------------------------------------- embed


def test_embed_success_partial_total(capsys, files, tmp_path):
    good, bad = files["good"], files["bad"]
    rc, out, err = run(capsys, "embed", *good, "--out", tmp_path / "a.npz", "--model", MODEL)
    assert rc == 0 and '"n_embedded": 2' in out and not _failure_lines(err)

    rc, out, err = run(
        capsys, "embed", good[0], bad[0], "--out", tmp_path / "b.npz", "--model", MODEL
    )
    assert rc == 3, err
    (line,) = _failure_lines(err)
    assert line.startswith(f"failed: {bad[0]}: ") and line.count(str(bad[0])) == 1
    assert "not a readable image" in line

    rc, out, err = run(capsys, "embed", *bad, "--out", tmp_path / "c", "--model", MODEL)
    assert rc == 2
    assert len(_failure_lines(err)) == 2
    assert err.strip().splitlines()[-1].startswith("error: all 2 images failed")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--detector", "bogus"], "unknown detector; choose one of"),
        (["--det-thresh", "5"], "between 0 and 1"),
        (["--det-thresh", "nan"], "between 0 and 1"),
        (
            ["--no-detect", "--crop-mode", "aligned", "--det-thresh", "0.5"],
            "--det-thresh only appl",
        ),
        (["--crop-mode", "box"], "--crop-mode box applies to pre-cut crops"),
        (["--no-detect", "--face-index", "0"], "--face-index only appl"),
        (["--face-index", "-1"], ">= 0"),
    ],
)
def test_embed_refuses_bad_crop_options_before_work(capsys, files, tmp_path, args, needle):
    """Issue 17 family 9: these options were parsed and ignored (exit 0)."""
    out = tmp_path / "out.npz"
    rc, _, err = run(capsys, "embed", files["good"][0], "--out", out, "--model", MODEL, *args)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not out.exists() and not (tmp_path / "out.npz.work").exists()


def test_embed_face_index_out_of_range_is_total_failure(capsys, files, tmp_path):
    rc, _, err = run(
        capsys, "embed", files["good"][0], "--out", tmp_path / "o", "--model", MODEL,
        "--face-index", "7",
    )  # fmt: skip
    assert rc == 2 and "--face-index 7 out of range, 1 face(s) found" in err


def test_embed_no_images_is_an_error(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    rc, _, err = run(capsys, "embed", tmp_path / "empty", "--out", tmp_path / "o.npz")
    assert rc == 2 and "no image files found" in err


def test_unwritable_outputs_fail_before_work(capsys, files, tmp_path):
    """Issue 17 family 6: one line naming the output, exit 2, nothing embedded first."""
    under_file = files["file"] / "sub" / "x.npz"
    for out in (under_file, files["file"] / "dir_out"):
        rc, _, err = run(capsys, "embed", *files["good"], "--out", out, "--model", MODEL)
        assert rc == 2 and err.startswith(f"error: {out}: cannot be created, ")
        assert f"{files['file']} is a file, not a directory" in err and len(err.splitlines()) == 1
    # a directory that cannot hold files, whoever runs the test (root included)
    rc, _, err = run(capsys, "embed", *files["good"], "--out", "/proc/lrface-test/o.npz")
    assert rc == 2 and "/proc/lrface-test/o.npz" in err and len(err.splitlines()) == 1
    # gallery build: the output is checked before the (missing) root is even looked at
    rc, _, err = run(capsys, "gallery", "build", tmp_path / "no_root", "--out", under_file)
    assert rc == 2 and str(under_file) in err and "no_root" not in err
    rc, _, err = run(capsys, "gallery", "build", tmp_path, "--out", tmp_path)
    assert rc == 2 and "is a directory" in err
    # export: checked before torch/onnx work; the card may not overwrite the model
    rc, _, err = run(capsys, "export", "--model", "lrface-mbf", "--onnx", under_file)
    assert rc == 2 and "is a file, not a directory" in err
    rc, _, err = run(capsys, "export", "--model", "lrface-mbf", "--onnx", tmp_path / "m.json")
    assert rc == 2 and "must not end in .json" in err
    # detect --save-crops
    rc, _, err = run(capsys, "detect", files["good"][0], "--save-crops", under_file)
    assert rc == 2 and "is a file, not a directory" in err


# ---------------------------------------------------------------------- gallery / identify


@pytest.fixture
def tree(tmp_path):
    """ROOT/<person>/<2 LFW photos> for two people."""
    root = tmp_path / "root"
    for name in ("Colin_Powell", "Tony_Blair"):
        (root / name).mkdir(parents=True)
        for p in sorted((LFW / name).glob("*.jpg"))[:2]:
            (root / name / p.name).symlink_to(p)
    return root


def test_gallery_build_statuses(capsys, tree, tmp_path):
    out = tmp_path / "g.npz"
    rc, stdout, err = run(capsys, "gallery", "build", tree, "--out", out, "--model", MODEL)
    assert rc == 0 and "enrolled 2 identities (4 images)" in stdout and out.is_file()

    broken = tree / "Tony_Blair" / "zz_broken.jpg"
    broken.write_bytes(b"not an image")
    rc, stdout, err = run(capsys, "gallery", "build", tree, "--out", out, "--model", MODEL)
    assert rc == 3 and "1 file(s) failed" in stdout
    (line,) = _failure_lines(err)
    assert line.startswith(f"failed: {broken}: ") and line.count(str(broken)) == 1

    junk = tmp_path / "junk"
    (junk / "Nobody").mkdir(parents=True)
    (junk / "Nobody" / "a.jpg").write_bytes(b"x")
    (junk / "Nobody" / "b.jpg").write_bytes(b"y")
    out2 = tmp_path / "g2.npz"
    rc, _, err = run(capsys, "gallery", "build", junk, "--out", out2, "--model", MODEL)
    assert rc == 2 and len(_failure_lines(err)) == 2 and not out2.exists()
    assert err.strip().splitlines()[-1].startswith(f"error: {junk}: none of its 2 images")

    rc, _, err = run(
        capsys, "gallery", "build", tree, "--out", out2, "--no-detect", "--crop-mode", "box",
        "--det-thresh", "0.5",
    )  # fmt: skip
    assert rc == 2 and "--det-thresh only appl" in err and not out2.exists()


def test_identify_statuses(capsys, tree, files, tmp_path):
    gfile = tmp_path / "g.npz"
    assert run(capsys, "gallery", "build", tree, "--out", gfile, "--model", MODEL)[0] == 0
    probe = sorted((LFW / "Colin_Powell").glob("*.jpg"))[-1]
    bad = files["bad"][0]

    rc, out, err = run(capsys, "identify", probe, "--gallery", gfile)
    assert rc == 0 and out.startswith(f"{probe}: Colin_Powell") and not err

    rc, out, err = run(capsys, "identify", probe, bad, "--gallery", gfile)
    assert rc == 3 and out.startswith(f"{probe}: Colin_Powell")
    (line,) = _failure_lines(err)
    assert line.startswith(f"failed: {bad}: ") and line.count(str(bad)) == 1

    rc, out, err = run(capsys, "identify", *files["bad"], files["noface"], "--gallery", gfile)
    assert rc == 2 and not out and len(_failure_lines(err)) == 3
    assert "no face found" in err and err.strip().splitlines()[-1].startswith("error: all 3")

    empty = tmp_path / "empty_dir"
    empty.mkdir()
    rc, _, err = run(capsys, "identify", probe, empty, "--gallery", gfile)
    assert rc == 3 and f"failed: {empty}: holds no image files" in err

    # a corrupt gallery is one line naming it and the fix
    cut = tmp_path / "cut.npz"
    cut.write_bytes(gfile.read_bytes()[:-100])
    rc, out, err = run(capsys, "identify", probe, "--gallery", cut)
    assert rc == 2 and err.startswith(f"error: {cut}: ") and len(err.splitlines()) == 1
    assert "lrface gallery build" in err

    # options are honoured or refused
    rc, _, err = run(capsys, "identify", probe, "--gallery", gfile, "--face-index", "3")
    assert rc == 2 and "--face-index 3 out of range" in err
    rc, _, err = run(capsys, "identify", probe, "--gallery", gfile, "--detector", "bogus")
    assert rc == 2 and "unknown detector" in err
    for bad_thr in ("nan", "inf", "1.5", "-2", "abc"):
        err = argparse_error(capsys, "identify", probe, "--gallery", gfile, "--threshold", bad_thr)
        assert "--threshold" in err
    assert "--top-k" in argparse_error(
        capsys, "identify", probe, "--gallery", gfile, "--top-k", "0"
    )


# ---------------------------------------------------------------------- detect / verify


def test_detect_statuses(capsys, files, tmp_path):
    rc, out, err = run(capsys, "detect", files["good"][0])
    assert rc == 0 and "1 face(s)" in out and not err
    rc, out, err = run(capsys, "detect", files["noface"], "--json")
    assert rc == 1 and '"faces": []' in out  # the negative answer
    assert len(err.splitlines()) == 1 and err.startswith(f"{files['noface']}: no face found")
    rc, _, err = run(capsys, "detect", files["good"][0], "--detector", "bogus")
    assert rc == 2 and "unknown detector" in err
    rc, _, err = run(capsys, "detect", files["good"][0], "--det-thresh", "2")
    assert rc == 2 and "--det-thresh" in err
    rc, _, err = run(capsys, "detect", files["bad"][0])
    assert rc == 2 and err.startswith(f"error: {files['bad'][0]}: ")


def test_verify_threshold_refused_at_parse_time(capsys, files):
    for bad_thr in ("nan", "inf", "1.01"):
        err = argparse_error(capsys, "verify", *files["good"], "--threshold", bad_thr)
        assert "--threshold" in err


def test_exit_status_reaches_the_shell(files, tmp_path):
    """`python -m lrface embed` with one bad input: exit 3 in a real process."""
    proc = subprocess.run(
        [sys.executable, "-m", "lrface", "embed", files["good"][0], files["bad"][0], "--out",
         tmp_path / "o.npz", "--model", MODEL, "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and Path(tmp_path / "o.npz").is_file()
