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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrface.cli.main import main

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


def test_read_only_cache_is_one_line_before_work(capsys, tmp_path, tree, read_only_dir,
                                                monkeypatch):  # fmt: skip
    monkeypatch.setenv("LRFACE_CACHE", str(read_only_dir))
    rc, _, err = run(
        capsys, "benchmark", "--protocol", "folder", "--data", tree, "--out", tmp_path / "b",
        "--model", MODEL, "--no-progress",
    )  # fmt: skip
    line = one_error(err)
    assert rc == 2 and line.startswith(f"error: the cache directory {read_only_dir}: ")
    assert "set LRFACE_CACHE to a writable directory" in line


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


# ---------------------------------------------------------------- family 2: no clobbering


@pytest.fixture
def outputs(capsys, tmp_path, tree) -> dict[str, Path]:
    """A real gallery, a real embeddings file and a photo, each in its own file."""
    gallery, emb = tmp_path / "gallery.npz", tmp_path / "emb.npz"
    assert run(capsys, "gallery", "build", tree, "--out", gallery, "--quiet")[0] == 0
    assert run(capsys, "embed", FACES[0], "--out", emb, "--model", MODEL, "--quiet")[0] == 0
    photo = tmp_path / "photo.npz"  # a JPEG under an .npz name
    photo.write_bytes(FACES[1].read_bytes())
    return {"gallery": gallery, "embeddings": emb, "photo": photo}


def _refused(capsys, target: Path, *args) -> str:
    """Run a command that must refuse to replace ``target``: exit 2, one line naming it,
    ``target`` byte for byte unchanged."""
    before = target.read_bytes()
    rc, _, err = run(capsys, *args)
    line = one_error(err)
    assert rc == 2 and line.startswith(f"error: {target}: exists and is "), line
    assert "delete it first" in line or "choose a" in line
    assert target.read_bytes() == before
    return line


def test_embed_never_replaces_a_gallery_or_a_photo(capsys, outputs):
    g = outputs["gallery"]
    line = _refused(capsys, g, "embed", FACES[0], "--out", g, "--model", MODEL, "--quiet")
    assert "is an lrface gallery" in line and "not an lrface embeddings file" in line
    line = _refused(capsys, outputs["photo"], "embed", FACES[0], "--out", outputs["photo"])
    assert "a file that is not an lrface output" in line
    assert not Path(f"{g}.work").exists()
    # its own kind is replaced: rerunning the same command works
    e = outputs["embeddings"]
    assert run(capsys, "embed", *FACES[:2], "--out", e, "--model", MODEL, "--quiet")[0] == 0


def test_gallery_build_never_replaces_embeddings(capsys, outputs, tree, tmp_path):
    e = outputs["embeddings"]
    line = _refused(capsys, e, "gallery", "build", tree, "--out", e, "--quiet")
    assert "is an lrface embeddings file" in line and "not an lrface gallery" in line
    ivf = tmp_path / "ivf"
    ivf.mkdir()
    (ivf / "notes.txt").write_text("mine")
    # refused before the (missing) root is looked at
    rc, _, err = run(capsys, "gallery", "build", tmp_path / "no-root", "--out", ivf, "--index",
                     "ivf-sq8")  # fmt: skip
    line = one_error(err)
    assert rc == 2 and line.startswith(f"error: {ivf}: exists and is a directory, not an empty")
    assert [p.name for p in ivf.iterdir()] == ["notes.txt"]
    g = outputs["gallery"]
    assert run(capsys, "gallery", "build", tree, "--out", g, "--quiet")[0] == 0  # rebuilt


def test_api_writers_never_replace_another_kind(outputs):
    from lrface.batch.embed import read_npz, write_npz
    from lrface.errors import LrfaceError
    from lrface.search.gallery import FlatGallery

    g, e = outputs["gallery"], outputs["embeddings"]
    with pytest.raises(LrfaceError, match="exists and is an lrface gallery"):
        write_npz(g, *read_npz(e))
    with pytest.raises(LrfaceError, match="exists and is an lrface embeddings file"):
        FlatGallery.load(g).save(e)
    FlatGallery.load(g).save(g)  # its own kind


def test_embed_dir_benchmark_distill_refuse_unrelated_directories(capsys, tmp_path, tree):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.json").write_text('{"my": "notes"}')
    rc, _, err = run(capsys, "embed", FACES[0], "--out", mine, "--model", MODEL)
    assert rc == 2 and "not an lrface embedding directory" in one_error(err)
    _refused(capsys, mine / "results.json", "benchmark", "--protocol", "folder", "--data", tree,
             "--out", mine, "--model", MODEL, "--no-progress")  # fmt: skip
    rc, _, err = run(capsys, "distill", "--data", tree, "--out", mine, "--quiet")
    line = one_error(err)
    assert rc == 2 and f"{mine}: exists and is a directory, not an lrface distill run" in line
    assert sorted(p.name for p in mine.iterdir()) == ["results.json"]


def test_detect_save_crops_never_replaces_a_photo(capsys, tmp_path):
    crops = tmp_path / "crops"
    face = PHOTOS / "Abel_Pacheco_0001.jpg"
    assert run(capsys, "detect", face, "--save-crops", crops)[0] == 0
    assert run(capsys, "detect", face, "--save-crops", crops)[0] == 0  # its own crops
    target = crops / "Abel_Pacheco_0001_face0.png"
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(target), cv2.imread(str(face)))  # a user's 250x250 PNG of that name
    rc, _, err = run(capsys, "detect", face, "--save-crops", crops)
    line = one_error(err)
    assert rc == 2 and line.startswith(f"error: {target}: exists and is not a 112x112 PNG crop")
    assert cv2.imread(str(target)).shape == (250, 250, 3)


def test_export_never_replaces_a_foreign_model(capsys, tmp_path):
    from lrface.models.registry import PACKAGE_WEIGHTS

    teacher = PACKAGE_WEIGHTS / "mobilefacenet_arcface.onnx"
    rc, _, err = run(capsys, "export", "--model", "lrface-tiny-16", "--onnx", teacher)
    assert rc == 2 and "shipped models' directory" in one_error(err)
    other = tmp_path / "model.onnx"
    other.write_bytes(teacher.read_bytes())  # a model without a card beside it
    rc, _, err = run(capsys, "export", "--model", "lrface-tiny-16", "--onnx", other)
    assert rc == 2 and "is not an earlier export to this name" in one_error(err)
    notes = tmp_path / "m.json"
    notes.write_text('{"notes": 1}')
    _refused(capsys, notes, "export", "--model", "lrface-tiny-16", "--onnx", tmp_path / "m.onnx")


# ---------------------------------------------------------------- family 3: resource caps


def _argparse_refusal(capsys, *args) -> str:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_resource_options_above_their_caps_are_refused_at_parse_time(capsys, tmp_path, tree):
    from lrface.io.validation import resource_range

    cap = int(resource_range("workers")[1])
    face, out = FACES[0], tmp_path / "o.npz"
    for option, value, args in (
        ("--workers", cap + 1, ["embed", face, "--out", out]),
        ("--workers", 999, ["gallery", "build", tree, "--out", out]),
        ("--workers", 999, ["identify", face, "--gallery", out]),
        ("--batch-size", 100000, ["embed", face, "--out", out]),
        ("--shard-size", 100000, ["embed", face, "--out", out]),
        ("--ray-actors", 5000, ["embed", face, "--out", out, "--engine", "ray"]),
        ("--ray-cpus-per-actor", 1e6, ["embed", face, "--out", out, "--engine", "ray"]),
        ("--nlist", 100000, ["gallery", "build", tree, "--out", out, "--index", "ivf-sq8"]),
        ("--nprobe", 100000, ["gallery", "build", tree, "--out", out, "--index", "ivf-sq8"]),
        ("--part-size", 10**9, ["gallery", "build", tree, "--out", out, "--index", "ivf-sq8"]),
        ("--top-k", 5000, ["identify", face, "--gallery", out]),
        ("--size", 5000, ["detect", face]),
    ):
        line = _argparse_refusal(capsys, *args, option, value)
        assert line.startswith(f"lrface {args[0]}: error: argument {option}: ") or (
            line.startswith(f"lrface {args[0]} {args[1]}: error: argument {option}: ")
        ), line
        assert "is above the limit of" in line and "or less" in line, line
    assert not out.exists()
    # at the cap: accepted (parsed, nothing run)
    from lrface.cli.main import build_parser

    ns = build_parser().parse_args(["embed", str(face), "--out", str(out), "--workers", str(cap)])
    assert ns.workers == cap


def test_distill_and_api_use_the_same_caps(capsys, tmp_path, tree):
    from lrface.batch.embed import embed_paths
    from lrface.errors import LrfaceError
    from lrface.faces.pipeline import CropOptions, CropPreparer
    from lrface.io.workers import WorkerPool
    from lrface.models.loader import load_embedder

    rc, _, err = run(capsys, "distill", "--data", tree, "--out", tmp_path / "d",
                     "--batch-size", "100000", "--quiet")  # fmt: skip
    line = one_error(err)
    assert rc == 2 and "--batch-size: 100000 is above the limit of 4096" in line
    emb = load_embedder(MODEL)
    with pytest.raises(LrfaceError, match="batch_size: 100000 is above the limit of 4096"):
        embed_paths([str(FACES[0])], emb, tmp_path / "e", batch_size=100000)
    with pytest.raises(LrfaceError, match="workers: 999 is above the limit"):
        CropPreparer(CropOptions(), workers=999)
    with pytest.raises(LrfaceError, match="workers: 999 is above the limit"):
        WorkerPool(999)
    assert not (tmp_path / "e").exists() and not (tmp_path / "d").exists()


def test_readme_lists_every_cap():
    from lrface.io.validation import RESOURCE_LIMITS, resource_range

    readme = (REPO / "README.md").read_text()
    limits = readme[readme.index("### Exit status and limits") :].split("\n## ", 1)[0]
    for name, (_, high, _) in RESOURCE_LIMITS.items():
        row = next((ln for ln in limits.splitlines() if f"`{name}`" in ln), None)
        assert row is not None, f"README's limits table lacks {name}"
        if not callable(high):
            assert f"{resource_range(name)[1]:,.0f}" in row or f"{high:g}" in row, row


# ---------------------------------------------------------------- family 5: bad file names


@pytest.fixture
def bad_names(tmp_path) -> dict[str, Path]:
    """A folder with ok.jpg, a photo whose name holds a line break, one whose name holds
    a byte that is not UTF-8, and a .txt list naming all three (the last line as raw
    bytes)."""
    d = tmp_path / "photos"
    d.mkdir()
    shutil.copy(PHOTOS / "Abel_Pacheco_0001.jpg", d / "ok.jpg")
    shutil.copy(PHOTOS / "George_W_Bush_0001.jpg", d / "bad\nname.jpg")
    undecodable = os.fsdecode(os.fsencode(d) + b"/und\xff.jpg")
    shutil.copy(PHOTOS / "Colin_Powell_0001.jpg", undecodable)
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"photos/ok.jpg\nphotos/und\xff.jpg\n")
    return {"dir": d, "list": listing, "ok": d / "ok.jpg"}


ESCAPED = {"bad\\nname.jpg", "und\\xff.jpg"}


def _failed_names(err: str) -> set[str]:
    names = set()
    for line in err.splitlines():
        assert line.startswith(("failed: ", "{")) or line.startswith("error: "), line
        if line.startswith("failed: "):
            names.add(line.split(": ")[1].rsplit("/", 1)[1])
    return names


def test_embed_a_folder_with_bad_names_fails_them_alone(capsys, bad_names, tmp_path):
    from lrface.batch.embed import read_npz

    for out in (tmp_path / "e.npz", tmp_path / "edir"):
        rc, stdout, err = run(capsys, "embed", bad_names["dir"], "--out", out, "--model", MODEL,
                              "--quiet")  # fmt: skip
        assert rc == 3 and '"n_embedded": 1' in stdout and '"n_failed": 2' in stdout, err
        assert _failed_names(err) == ESCAPED
        assert "line break" in err and "not valid UTF-8" in err
    names, emb, failures = read_npz(tmp_path / "e.npz")
    assert names == [str(bad_names["ok"])] and emb.shape == (1, 128)
    assert {p.rsplit("/", 1)[1] for p, _ in failures} == ESCAPED
    rows = (tmp_path / "edir" / "failures.tsv").read_text(encoding="utf-8").splitlines()
    assert {r.split("\t")[0].rsplit("/", 1)[1] for r in rows} == ESCAPED
    assert all(len(r.split("\t")) == 2 for r in rows)
    # the resumable directory reopens (paths.txt holds the escaped names, one per line)
    rc, stdout, _ = run(capsys, "embed", bad_names["dir"], "--out", tmp_path / "edir",
                        "--model", MODEL, "--quiet")  # fmt: skip
    assert rc == 3 and '"shards_skipped": 1' in stdout
    # a .txt list with an undecodable line: that path fails, the list is read
    rc, _, err = run(capsys, "embed", bad_names["list"], "--out", tmp_path / "l.npz",
                     "--model", MODEL, "--quiet")  # fmt: skip
    assert rc == 3 and _failed_names(err) == {"und\\xff.jpg"}


def test_gallery_build_and_identify_fail_bad_names_alone(capsys, bad_names, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(bad_names["dir"], root / "Someone")
    (root / "Other").mkdir()
    shutil.copy(PHOTOS / "Colin_Powell_0001.jpg", root / "Other" / "a.jpg")
    g = tmp_path / "g.npz"
    rc, stdout, err = run(capsys, "gallery", "build", root, "--out", g, "--quiet")
    assert rc == 3 and "enrolled 2 identities (2 images)" in stdout
    assert _failed_names(err) == ESCAPED
    rc, stdout, err = run(capsys, "identify", bad_names["dir"], "--gallery", g)
    lines = stdout.splitlines()
    assert rc == 3 and len(lines) == 1 and lines[0].startswith(f"{bad_names['ok']}: Someone")
    assert _failed_names(err) == ESCAPED


def test_path_text_escapes_every_line_breaking_character():
    from lrface.io.pathnames import name_problem, path_text

    for bad in ("a\nb", "a\rb", "a\tb", "a\x0bb", "a\x1cb", "a\x85b", "a\u2028b", "a\u2029b"):
        assert name_problem(bad) and len(path_text(bad).splitlines()) == 1, repr(bad)
        assert path_text(bad).isprintable()
    assert path_text("plain/é ü.jpg") == "plain/é ü.jpg" and name_problem("é.jpg") is None
    assert path_text(os.fsdecode(b"x\xff")) == "x\\xff"
    assert path_text(os.fsdecode(b"x\xff")).encode("utf-8")  # writable as UTF-8


# ---------------------------------------------------------------- fuzz: output paths


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(st.characters(codec="utf-8") | st.sampled_from("\n\r\t\x85\u2028"))
                  .map(lambda t: t.replace("\x00", "")))  # fmt: skip
def test_fuzz_path_text_is_one_utf8_line(name):
    from lrface.io.pathnames import name_problem, path_text

    shown = path_text(name)
    shown.encode("utf-8")  # raises for a lone surrogate
    assert len(shown.splitlines()) <= 1
    assert (shown == name) == (name_problem(name) is None)


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.binary(max_size=512), st.sampled_from(["embeddings", "gallery"]))
def test_fuzz_check_output_never_accepts_foreign_bytes(tmp_path, data, kind):
    """Random bytes (sometimes behind a zip header) under an .npz name are never taken
    for an lrface output: refused with one line, left as they were."""
    from lrface.errors import LrfaceError
    from lrface.io.outputs import check_output

    target = tmp_path / "x.npz"
    target.write_bytes(data)
    with pytest.raises(LrfaceError) as exc:
        check_output(target, kind)
    assert "\n" not in str(exc.value) and str(target) in str(exc.value)
    assert target.read_bytes() == data
