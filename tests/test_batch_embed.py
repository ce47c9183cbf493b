"""Resumable batch embedding on real LFW images: resume, failures, sharding, merging."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from conftest import LFW_IMAGES as LFW

from lrface.batch_embed import (
    collect_paths,
    embed_paths,
    load_embeddings,
    merge_outputs,
    parse_shard,
    read_npz,
    shard,
    shard_range,
    write_npz,
)
from lrface.errors import LrfaceError

SHARD = 8


@pytest.fixture(scope="module")
def teacher():
    from lrface.models.loader import load_embedder

    return load_embedder("mobilefacenet-arcface")


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
    """An uninterrupted reference run; returns (out_dir, summary)."""
    out = tmp_path_factory.mktemp("full") / "emb"
    summary = embed_paths(
        inputs[0], teacher, out, shard_size=SHARD, batch_size=5, workers=2, progress=False
    )
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
    paths, _ = inputs
    out = tmp_path / "resumed"
    first = embed_paths(
        paths, teacher, out, shard_size=SHARD, batch_size=5, workers=2, progress=False, max_shards=3
    )
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
