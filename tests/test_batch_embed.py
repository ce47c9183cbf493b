"""Resumable batch embedding on real LFW images: resume, failures, sharding, merging."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import LFW_IMAGES as LFW

from lrface.batch.embed import (
    collect_paths,
    embed_paths,
    expand_inputs,
    load_embeddings,
    merge_outputs,
    parse_shard,
    read_npz,
    shard,
    shard_range,
    write_npz,
)
from lrface.errors import LrfaceError
from lrface.faces import pipeline
from lrface.faces.pipeline import CropOptions, prepare_face

SHARD = 8


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """40 real LFW images with one corrupt file at position 13; returns (paths, bad)."""
    people = sorted(d for d in LFW.iterdir() if d.name.startswith("Al"))[:25]
    imgs = [str(p) for d in people for p in sorted(d.glob("*.jpg"))][:39]
    bad = tmp_path_factory.mktemp("bad") / "corrupt.jpg"
    bad.write_bytes(b"not an image, just some bytes")
    paths = [*imgs[:13], str(bad), *imgs[13:]]
    assert len(paths) == 40
    return paths, str(bad)


@pytest.fixture(scope="module")
def full_run(inputs, teacher, tmp_path_factory):
    """An uninterrupted reference run, its crops prepared by 2 worker processes (forced:
    40 paths are below POOL_MIN_PATHS); returns (out_dir, summary)."""
    out = tmp_path_factory.mktemp("full") / "emb"
    saved, pipeline.POOL_MIN_PATHS = pipeline.POOL_MIN_PATHS, 0
    try:
        summary = embed_paths(
            inputs[0], teacher, out, shard_size=SHARD, batch_size=5, workers=2, progress=False
        )
    finally:
        pipeline.POOL_MIN_PATHS = saved
    assert summary["workers"] == 2
    return out, summary


def _shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.suffix in (".npy", ".tsv")}


def _assert_same(a: Path, b: Path) -> None:
    pa, ea, fa = load_embeddings(a)
    pb, eb, fb = load_embeddings(b)
    assert pa == pb and fa == fb
    assert ea.dtype == eb.dtype == np.float32 and np.array_equal(ea, eb)
    assert _shard_bytes(a) == _shard_bytes(b)
    assert (a / "paths.txt").read_bytes() == (b / "paths.txt").read_bytes()


def test_full_run_layout_and_failures(full_run, inputs):
    out, summary = full_run
    paths, bad = inputs
    assert summary["complete"] and summary["n_shards"] == 5 and summary["shards_written"] == 5
    assert summary["n_embedded"] == 39 and summary["n_failed"] == 1
    assert (out / "paths.txt").read_text().splitlines() == paths
    got_paths, emb, failures = load_embeddings(out)
    assert got_paths == [p for p in paths if p != bad]
    assert emb.shape == (39, 128) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert len(failures) == 1 and failures[0][0] == bad and "not a readable image" in failures[0][1]
    assert (out / "failures.tsv").read_text() == f"{bad}\t{failures[0][1]}\n"
    assert np.load(out / "idx-00001.npy").tolist() == [8, 9, 10, 11, 12, 14, 15]
    assert sorted(p.name for p in out.glob("emb-*.npy")) == [f"emb-0000{k}.npy" for k in range(5)]
    assert not list(out.glob("*.part"))


def test_interrupted_run_resumes_byte_identical(full_run, inputs, teacher, tmp_path):
    """Also: crops prepared in this process (40 paths < POOL_MIN_PATHS, so no workers
    start) give byte-identical output to the worker-pool reference run."""
    paths, _ = inputs
    out = tmp_path / "resumed"
    first = embed_paths(
        paths, teacher, out, shard_size=SHARD, batch_size=5, workers=2, progress=False, max_shards=3
    )
    assert first["workers"] == 0
    assert not first["complete"] and first["shards_written"] == 3
    with pytest.raises(LrfaceError, match="incomplete run"):
        load_embeddings(out)
    partial_paths, partial, _ = load_embeddings(out, allow_partial=True)
    assert len(partial_paths) == 23 and partial.shape == (23, 128)
    # a crash after writing shard 2's files but before/while recording it: redone on resume
    (out / "idx-00002.npy").unlink()
    second = embed_paths(
        paths, teacher, out, shard_size=SHARD, batch_size=5, workers=2, progress=False
    )
    assert second["complete"] and second["shards_skipped"] == 2 and second["shards_written"] == 3
    _assert_same(out, full_run[0])
    third = embed_paths(
        paths, teacher, out, shard_size=SHARD, batch_size=5, workers=2, progress=False
    )
    assert third["shards_written"] == 0 and third["shards_skipped"] == 5
    _assert_same(out, full_run[0])


def test_resume_refuses_other_inputs(full_run, inputs, teacher, tmp_path):
    out = full_run[0]
    paths, _ = inputs
    with pytest.raises(LrfaceError, match=r"path list differs.*new --out"):
        embed_paths(paths[:-1], teacher, out, shard_size=SHARD, batch_size=5, progress=False)
    with pytest.raises(LrfaceError, match="settings differ"):
        embed_paths(paths, teacher, out, shard_size=16, batch_size=5, progress=False)
    from lrface.models.loader import load_embedder

    no_flip = load_embedder("mobilefacenet-arcface", flip=False)
    with pytest.raises(LrfaceError, match=r"model differs.*delete"):
        embed_paths(paths, no_flip, out, shard_size=SHARD, batch_size=5, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(LrfaceError, match="not an lrface embedding directory"):
        embed_paths(paths, teacher, foreign, shard_size=SHARD, progress=False)


def test_shards_merge_to_full_run(full_run, inputs, teacher, tmp_path):
    paths, _ = inputs
    dirs = []
    for i in range(2):
        d = tmp_path / f"shard{i}"
        s = embed_paths(
            paths,
            teacher,
            d,
            shard_size=SHARD,
            batch_size=5,
            workers=2,
            progress=False,
            shard_of=(i, 2),
        )
        assert s["complete"]
        dirs.append(d)
    assert len(load_embeddings(dirs[0])[0]) + len(load_embeddings(dirs[1])[0]) == 39
    merged = tmp_path / "merged"
    summary = merge_outputs(dirs[::-1], merged)  # order restored from the manifests
    assert summary["n_embedded"] == 39 and summary["n_failed"] == 1
    _assert_same(merged, full_run[0])
    npz = tmp_path / "merged.npz"
    merge_outputs(dirs, npz)
    p_full, e_full, f_full = load_embeddings(full_run[0])
    p_npz, e_npz, f_npz = read_npz(npz)
    assert p_npz == p_full and f_npz == f_full and np.array_equal(e_npz, e_full)
    with pytest.raises(LrfaceError, match="exactly once"):
        merge_outputs(dirs[:1], tmp_path / "half")
    # issue 29 (10): the same directory twice (also through a symlink), a split mixed
    # with a whole run: refused before anything is written
    (tmp_path / "link").symlink_to(dirs[1])
    for bad, needle in [
        ([dirs[0], dirs[1], dirs[0]], "given twice"),
        ([dirs[0], tmp_path / "link", dirs[1]], "given twice"),
        ([dirs[0], full_run[0]], "is a --shard output but"),
    ]:
        with pytest.raises(LrfaceError, match=needle):
            merge_outputs(bad, tmp_path / "bad-merge")
        assert not (tmp_path / "bad-merge").exists()


def test_merge_refuses_the_same_run_twice_and_overlapping_runs(full_run, tmp_path):
    """Issue 29 (10): merging a directory with itself gave 78 rows for 39 paths."""
    with pytest.raises(LrfaceError, match="given twice"):
        merge_outputs([full_run[0], full_run[0]], tmp_path / "twice.npz")
    copy = tmp_path / "copy"
    shutil.copytree(full_run[0], copy)
    with pytest.raises(LrfaceError, match=r"overlap \(both embed .*Al.*\.jpg\)"):
        merge_outputs([full_run[0], copy], tmp_path / "overlap.npz")
    assert not (tmp_path / "twice.npz").exists() and not (tmp_path / "overlap.npz").exists()


def _flip_bit(path: Path, offset: int = -20) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x04
    path.write_bytes(bytes(data))


def test_bit_flipped_shard_is_refused_on_load_and_redone_on_resume(
    full_run, inputs, teacher, tmp_path, caplog
):
    """Issue 29 (10): a finished shard whose floats changed on disk (still a valid .npy)
    was accepted on resume and merge.  Its sha256 in the manifest now catches it: reading
    or merging refuses it (one line naming the file), a resumed run embeds it again."""
    out = tmp_path / "flipped"
    shutil.copytree(full_run[0], out)
    entry = json.loads((out / "manifest.json").read_text())["completed_shards"][2]
    assert set(entry["sha256"]) == {"emb", "idx", "failures"}
    _flip_bit(out / "emb-00002.npy")
    np.load(out / "emb-00002.npy")  # the flip leaves a loadable file: only the hash sees it
    for read in (lambda: load_embeddings(out), lambda: merge_outputs([out], tmp_path / "m.npz")):
        with pytest.raises(LrfaceError) as exc:
            read()
        msg = str(exc.value)
        assert "\n" not in msg and f"{out / 'emb-00002.npy'}: does not match the sha256" in msg
        assert "rerun the `lrface embed` command" in msg
    paths, _ = inputs
    with caplog.at_level("WARNING", logger="lrface"):
        summary = embed_paths(
            paths, teacher, out, shard_size=SHARD, batch_size=5, workers=2, progress=False
        )
    assert summary["shards_written"] == 1 and summary["shards_skipped"] == 4
    assert "emb-00002.npy: does not match the sha256" in caplog.text
    assert "embedding shard 2 again" in caplog.text
    _assert_same(out, full_run[0])


def test_outputs_written_before_checksums_still_load(full_run, tmp_path, caplog):
    """Backward compatibility: a manifest without shard checksums loads, with a warning
    that its shards are not verified."""
    out = tmp_path / "old"
    shutil.copytree(full_run[0], out)
    man = json.loads((out / "manifest.json").read_text())
    for entry in man["completed_shards"]:
        del entry["sha256"]
    (out / "manifest.json").write_text(json.dumps(man))
    with caplog.at_level("WARNING", logger="lrface"):
        paths, emb, _ = load_embeddings(out)
    assert paths == load_embeddings(full_run[0])[0] and emb.shape == (39, 128)
    assert "5 shard(s) were written by an lrface that recorded no checksums" in caplog.text


def test_shard_ranges_are_contiguous_whole_blocks():
    for n_paths in (0, 1, 7, 40, 41, 1000):
        for n in (1, 2, 3, 7):
            ranges = [shard_range(n_paths, i, n, block=8) for i in range(n)]
            assert ranges[0][0] == 0 and ranges[-1][1] == n_paths
            assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
            assert all(start % 8 == 0 or start == n_paths for start, _ in ranges)
    items = [str(i) for i in range(40)]
    assert [x for i in range(3) for x in shard(items, i, 3, block=8)] == items
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "-1/2"):
        with pytest.raises(LrfaceError):
            parse_shard(bad)


def test_collect_paths_order(tmp_path):
    d = tmp_path / "imgs"
    (d / "b").mkdir(parents=True)
    (d / "a").mkdir()
    for rel in ("b/2.jpg", "a/9.png", "b/1.jpg"):
        (d / rel).write_bytes(b"x")
    (d / "a" / "notes.md").write_text("not an image")
    single = tmp_path / "one.jpg"
    single.write_bytes(b"x")
    lst = tmp_path / "list.txt"
    lst.write_text(f"# comment\n{single}\n\nrel/missing.jpg\n")
    got = collect_paths([str(single), str(d), str(lst)])
    assert got == [
        str(single),
        str(d / "a/9.png"),
        str(d / "b/1.jpg"),
        str(d / "b/2.jpg"),
        str(single),
        str(tmp_path / "rel/missing.jpg"),
    ]
    with pytest.raises(LrfaceError, match="no such file"):
        collect_paths([str(tmp_path / "nope")])


def test_expand_inputs_reports_empty_inputs_and_keeps_missing_probes(tmp_path):
    """`lrface identify`'s expansion: the same rules as collect_paths, but a folder or list
    without images is a failure and a missing path is kept (it fails when read)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    lst = tmp_path / "none.txt"
    lst.write_text("# nothing listed\n")
    one = tmp_path / "one.jpg"
    one.write_bytes(b"x")
    missing = str(tmp_path / "gone.jpg")
    paths, failures = expand_inputs([str(empty), str(one), missing, str(lst)], must_exist=False)
    assert paths == [str(one), missing]
    assert failures == [(str(empty), "holds no image files"), (str(lst), "holds no image files")]
    with pytest.raises(LrfaceError, match="no such file"):
        expand_inputs([missing])


def test_write_npz_roundtrip(tmp_path):
    emb = np.eye(3, 4, dtype=np.float32)
    out = tmp_path / "e.npz"
    write_npz(out, ["a.jpg", "b.jpg", "c.jpg"], emb, [("d.jpg", "no face found")])
    paths, got, failures = read_npz(out)
    assert paths == ["a.jpg", "b.jpg", "c.jpg"] and np.array_equal(got, emb)
    assert failures == [("d.jpg", "no face found")]
    write_npz(out, [], np.zeros((0, 4), np.float32), [])
    assert read_npz(out)[1].shape == (0, 4)
    with pytest.raises(LrfaceError):
        write_npz(out, ["a.jpg"], emb, [])


def test_read_npz_refuses_corrupt_files(tmp_path):
    out = tmp_path / "e.npz"
    write_npz(out, ["a.jpg"], np.eye(1, 4, dtype=np.float32), [])
    data = out.read_bytes()
    for name, blob in [("empty", b""), ("half", data[: len(data) // 2]), ("text", b"nope")]:
        bad = tmp_path / f"{name}.npz"
        bad.write_bytes(blob)
        with pytest.raises(LrfaceError, match=r"not an lrface embeddings file") as exc:
            read_npz(bad)
        assert str(bad) in str(exc.value) and "\n" not in str(exc.value)


# ------------------------------------------------------------------ crop options


def test_crop_options_are_used_and_recorded(teacher, multi_face_image, tmp_path):
    """detector, threshold and face index reach the crops (issue 17 family 9)."""
    runs = {}
    for idx in (0, 2):
        opts = CropOptions(detector="scrfd-500m", det_thresh=0.4, face_index=idx)
        out = tmp_path / f"face{idx}"
        s = embed_paths([str(multi_face_image)], teacher, out, progress=False, options=opts)
        assert s["n_embedded"] == 1 and s["workers"] == 0  # one image: no worker processes
        settings = json.loads((out / "manifest.json").read_text())["settings"]
        assert settings["detector"] == "scrfd-500m" and settings["det_thresh"] == 0.4
        assert settings["face_index"] == idx
        runs[idx] = load_embeddings(out)[1][0]
        ref = prepare_face(multi_face_image, CropOptions(**{**opts.__dict__, "size": 112}))
        np.testing.assert_array_equal(runs[idx], teacher.embed_crops([ref.crop])[0])
    assert float(runs[0] @ runs[2]) < 0.5  # two different people of the group photo
    with pytest.raises(LrfaceError, match="settings differ"):
        embed_paths(
            [str(multi_face_image)],
            teacher,
            tmp_path / "face0",
            progress=False,
            options=CropOptions(detector="scrfd-500m", det_thresh=0.4, face_index=1),
        )
    # out of range: every image fails, with the reason, and the path once
    s = embed_paths(
        [str(multi_face_image)],
        teacher,
        tmp_path / "face9",
        progress=False,
        options=CropOptions(face_index=9),
    )
    assert s["n_embedded"] == 0 and s["n_failed"] == 1
    ((path, msg),) = load_embeddings(tmp_path / "face9")[2]
    assert path == str(multi_face_image) and str(multi_face_image) not in msg
    assert "--face-index 9 out of range, 6 face(s) found" in msg


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"detector": "bogus"}, "unknown detector; choose one of"),
        ({"det_thresh": 5.0}, "between 0 and 1"),
        ({"det_thresh": float("nan")}, "between 0 and 1"),
        ({"face_index": -1}, ">= 0"),
        ({"size": 4}, "crop size"),
        ({"detect": False, "crop_mode": "aligned", "det_thresh": 0.5}, "--det-thresh only appl"),
        ({"detect": False, "face_index": 0}, "--face-index only appl"),
        ({"detect": False, "crop_mode": "box", "detector": "yunet"}, "--detector only appl"),
        ({"crop_mode": "aligned"}, "--crop-mode aligned applies to pre-cut crops"),
    ],
)
def test_crop_options_refuse_bad_or_unused_values(kwargs, needle):
    with pytest.raises(LrfaceError, match=needle) as exc:
        CropOptions(**kwargs)
    assert "\n" not in str(exc.value)


# ------------------------------------------------------------------ worker processes


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, ...), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            st = _proc_stat(int(d.name))
            if st is not None and int(st[1]) == pid:
                kids.append(int(d.name))
    return kids


def _alive(pid: int) -> bool:
    st = _proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_of_embed_leaves_no_worker_alive(tmp_path):
    """SIGKILL of a running `lrface embed` (2 workers, 200 LFW images): every child
    process it started is gone within a few seconds (no ~250 MB orphans)."""
    people = sorted(d for d in LFW.iterdir() if d.name.startswith("B"))
    imgs = [str(p) for d in people for p in sorted(d.glob("*.jpg"))][:200]
    assert len(imgs) == 200
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{p}\n" for p in imgs))
    cmd = [sys.executable, "-m", "lrface", "embed", str(lst), "--out", str(tmp_path / "out")]
    cmd += ["--workers", "2", "--model", "mobilefacenet-arcface", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            kids = _children(proc.pid)
            workers = [k for k in kids if b"spawn_main" in _cmdline(k)]
            if len(workers) == 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None and len(workers) == 2, "the workers never started"
        time.sleep(1.5)  # they import lrface and start preparing crops
        kids = sorted(set(kids) | set(_children(proc.pid)))
        assert all(_alive(k) for k in workers)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline and any(_alive(k) for k in kids):
        time.sleep(0.1)
    survivors = [k for k in kids if _alive(k)]
    for k in survivors:  # do not leave them behind when the test fails
        os.kill(k, signal.SIGKILL)
    assert not survivors, f"{len(survivors)} of {len(kids)} child processes outlived the parent"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_of_embed_exits_143_quietly_and_resumes(tmp_path):
    """Issue 29 (6): SIGTERM of `lrface embed` with 2 workers printed multiprocessing's
    "leaked semaphore" warning (exit -15).  Now: exit 143, the one line "terminated
    (SIGTERM)", no worker left, and the finished shards kept: the same command resumes."""
    people = sorted(d for d in LFW.iterdir() if d.name.startswith("B"))
    imgs = [str(p) for d in people for p in sorted(d.glob("*.jpg"))][:80]
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{p}\n" for p in imgs))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lrface", "embed", str(lst), "--out", str(out), "--workers",
           "2", "--model", "mobilefacenet-arcface", "--quiet", "--shard-size", "8"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        done: list = []
        while time.monotonic() < deadline and proc.poll() is None and not done:
            if (out / "manifest.json").is_file():
                done = json.loads((out / "manifest.json").read_text())["completed_shards"]
            time.sleep(0.05)
        assert done and proc.poll() is None, "no shard finished while the workers ran"
        workers = [k for k in _children(proc.pid) if b"spawn_main" in _cmdline(k)]
        assert len(workers) == 2
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=30)[1].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and err == "terminated (SIGTERM)\n", (proc.returncode, err)
    time.sleep(0.5)
    assert not [k for k in workers if _alive(k)]
    man = json.loads((out / "manifest.json").read_text())
    kept = {e["shard"]: e["sha256"] for e in man["completed_shards"]}
    assert kept and not man["complete"] and not list(out.glob(".*.part"))
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] and man["n_embedded"] == 80
    after = {e["shard"]: e["sha256"] for e in man["completed_shards"]}
    assert all(after[k] == sha for k, sha in kept.items())  # kept, not embedded again


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
