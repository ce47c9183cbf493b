"""Issue 29: outputs and caches under hostile conditions, through the CLI.

Family 1: an ``OSError`` on an output or cache path (a file where a directory should be, a
name too long, a cache that cannot be created, a full disk mid-run) is one ``error:``
line naming the path and the fix, exit status 2, no traceback.  Real photos
(``tests/data``), real models.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PHOTOS, REPO

from lrface.cli import main

MODEL = "mobilefacenet-arcface"
FACES = sorted(p for p in PHOTOS.glob("*.jpg") if p.name != "t1.jpg")


def run(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    assert "Traceback" not in out.err, out.err
    return rc, out.out, out.err


def one_error(err: str) -> str:
    """The single ``error:`` line of ``err`` (asserting there is exactly one line)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def tree(tmp_path) -> Path:
    """ROOT/<identity>/<photos> from tests/data: two people, two photos each."""
    root = tmp_path / "tree"
    for name in ("Abel_Pacheco", "George_W_Bush"):
        (root / name).mkdir(parents=True)
        for p in sorted(PHOTOS.glob(f"{name}_000[0-9].jpg")):
            shutil.copy(p, root / name / p.name)
    return root


# ---------------------------------------------------------------- family 1: OS errors


def test_out_under_a_file_is_one_line(capsys, tmp_path, tree):
    a_file = tmp_path / "a.jpg"
    a_file.write_bytes(PHOTOS.joinpath("Abel_Pacheco_0001.jpg").read_bytes())
    out = a_file / "run"
    rc, _, err = run(capsys, "distill", "--data", tree, "--out", out, "--quiet")
    line = one_error(err)
    assert rc == 2 and str(out) in line and "not a directory" in line.lower()
    assert a_file.is_file()


def test_out_name_too_long_is_one_line(capsys, tmp_path, tree):
    long = tmp_path / ("x" * 300)
    for args in (
        ["embed", FACES[0], "--out", f"{long}.npz", "--model", MODEL],
        ["embed", FACES[0], "--out", long, "--model", MODEL],
        ["gallery", "build", tree, "--out", f"{long}.npz", "--quiet"],
        ["detect", FACES[0], "--save-crops", long],
        ["benchmark", "--protocol", "folder", "--data", tree, "--out", long],
    ):
        rc, _, err = run(capsys, *args)
        line = one_error(err)
        assert rc == 2 and "File name too long" in line and "use a shorter name" in line, args
        assert str(long) in line


def test_cache_that_cannot_be_created_is_one_line(capsys, tmp_path, tree, monkeypatch):
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("x")
    monkeypatch.setenv("LRFACE_CACHE", str(blocker))
    rc, _, err = run(
        capsys, "benchmark", "--protocol", "folder", "--data", tree, "--out", tmp_path / "b",
        "--model", MODEL, "--no-progress",
    )  # fmt: skip
    line = one_error(err)
    assert rc == 2 and f"the cache directory {blocker}: " in line and "LRFACE_CACHE" in line
    assert blocker.read_text() == "x"


def _embed_argv(out: Path) -> list[str]:
    return [
        "embed", *map(str, FACES), "--out", str(out), "--shard-size", "1", "--quiet",
        "--model", MODEL,
    ]  # fmt: skip


def test_file_size_limit_mid_run_is_one_line_and_resumes(tmp_path):
    """RLIMIT_FSIZE makes a write fail mid-run (EFBIG, like a full disk's ENOSPC, and
    without root): one line naming the file, exit 2; rerun without the limit: done."""
    out = tmp_path / "emb"

    def limit() -> None:  # the manifest outgrows 1200 bytes after a few shards
        resource.setrlimit(resource.RLIMIT_FSIZE, (1200, 1200))

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "lrface", *_embed_argv(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, preexec_fn=limit,
                       env=env)  # fmt: skip
    line = one_error(p.stderr)
    assert p.returncode == 2 and f"cannot write {out}" in line and "File too large" in line
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0 and '"complete": true' in p.stdout, p.stderr


@contextlib.contextmanager
def _tiny_tmpfs(where: Path, free: int):
    """A tmpfs at ``where`` with about ``free`` bytes left (skips where mounting is not
    allowed: it needs root with CAP_SYS_ADMIN)."""
    where.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)],
                       capture_output=True, text=True)  # fmt: skip
    if p.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root with CAP_SYS_ADMIN ({p.stderr.strip()})")
    try:
        st = os.statvfs(where)
        (where / "filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - free))
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_full_disk_mid_run_is_one_line(capsys, tmp_path):
    """A real full disk (ENOSPC) on a tiny tmpfs while embedding."""
    with _tiny_tmpfs(tmp_path / "mnt", free=24 * 1024) as mnt:
        rc, _, err = run(capsys, *_embed_argv(mnt / "emb"))
        line = one_error(err)
        assert rc == 2 and f"cannot write {mnt / 'emb'}" in line
        assert "No space left on device; free space there" in line


# ---------------------------------------------------------------- family 4: checks first


@pytest.fixture
def read_only_dir(tmp_path):
    """An existing directory that refuses new files, whoever runs the test: mode 0555 for
    a normal user; for root (who ignores modes) a read-only tmpfs (skips where mounting
    is not allowed: it needs CAP_SYS_ADMIN)."""
    d = tmp_path / "read-only"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(d)],
                       capture_output=True, text=True)  # fmt: skip
    if p.returncode != 0:
        pytest.skip(f"root needs CAP_SYS_ADMIN to mount a read-only tmpfs ({p.stderr.strip()})")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=True)


def test_benchmark_refuses_read_only_out_before_running(capsys, tmp_path, tree, read_only_dir,
                                                        monkeypatch):  # fmt: skip
    cache = tmp_path / "cache"
    monkeypatch.setenv("LRFACE_CACHE", str(cache))
    rc, out, err = run(
        capsys, "benchmark", "--protocol", "folder", "--data", tree, "--out", read_only_dir,
        "--model", MODEL, "--no-progress",
    )  # fmt: skip
    line = one_error(err)
    assert rc == 2 and not out
    assert line.startswith(f"error: {read_only_dir}: directory {read_only_dir} does not accept")
    assert not cache.exists() or not any(cache.iterdir())  # nothing embedded or cached


def test_every_writing_command_checks_its_output_first(capsys, tmp_path, tree, read_only_dir):
    """The output is refused before any image is read: the inputs named here do not exist,
    and the error names the output, not them."""
    missing = tmp_path / "no-such-input.jpg"
    for args in (
        ["embed", missing, "--out", read_only_dir / "e.npz"],
        ["embed", missing, "--out", read_only_dir / "e"],
        ["gallery", "build", tmp_path / "no-root", "--out", read_only_dir / "g.npz"],
        ["gallery", "build", tmp_path / "no-root", "--out", read_only_dir / "ivf",
         "--index", "ivf-sq8"],
        ["detect", missing, "--save-crops", read_only_dir / "crops"],
        ["export", "--model", "lrface-tiny-16", "--onnx", read_only_dir / "m.onnx"],
        ["benchmark", "--protocol", "folder", "--data", tmp_path / "no-root", "--out",
         read_only_dir / "b"],
    ):  # fmt: skip
        rc, _, err = run(capsys, *args)
        line = one_error(err)
        assert rc == 2 and str(read_only_dir) in line and "no-such-input" not in line, args
        assert "no-root" not in line, args
