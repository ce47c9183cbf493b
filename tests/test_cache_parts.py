"""Caches that take minutes are built in parts: a build killed half-way resumes from its
finished parts (real photos of tests/data, the default detector, the shipped teacher)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import PHOTOS, REPO

from lrface.datasets import facecache
from lrface.distill.faces import FaceSet, teacher_targets
from lrface.faces.detect import DEFAULT_DETECTOR, resolve_detector
from lrface.io import cache as io_cache
from lrface.io.cache import NpzCache

LFW_PHOTOS = sorted(p for p in PHOTOS.glob("*.jpg") if p.name != "t1.jpg")


def _photos(root: Path, n: int) -> list[str]:
    """``n`` real face photos (copies of the committed LFW ones) under ``root``."""
    root.mkdir(parents=True)
    rels = []
    for i in range(n):
        src = LFW_PHOTOS[i % len(LFW_PHOTOS)]
        rel = f"p{i:03d}_{src.name}"
        shutil.copy(src, root / rel)
        rels.append(rel)
    return rels


_BUILD = """
import sys
from pathlib import Path
import lrface.io.cache as cache
cache.CROP_PART_ROWS = 2
from lrface.datasets.facecache import aligned_crops
root = Path(sys.argv[1])
rels = sys.argv[2:]
aligned_crops(root, rels, workers=0, progress=False, tight_crops=True)
print("FINISHED")
"""


def test_a_killed_crop_cache_build_resumes_from_its_parts(tmp_path, monkeypatch):
    """SIGKILL a real `aligned_crops` build (parts of 2 photos) once a part is on disk:
    the rerun detects only the photos of the missing parts, and the rows it took from a
    part equal a fresh detection."""
    rels = _photos(tmp_path / "photos", 16)
    cache = tmp_path / "cache"
    env = {**os.environ, "LRFACE_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", _BUILD, str(tmp_path / "photos"), *rels]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    monkeypatch.setenv("LRFACE_CACHE", str(cache))
    detector = resolve_detector(DEFAULT_DETECTOR)
    fn = facecache.cache_file(tmp_path / "photos", rels, detector, tight_crops=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list(NpzCache(fn).parts_dir.glob("*.npz"))) >= 1:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not fn.is_file(), "the build finished before it could be killed"
    kept = len(list(NpzCache(fn).parts_dir.glob("*.npz")))
    assert 1 <= kept < 8

    calls = []
    real = facecache._align_photo

    def counting(path, options):
        calls.append(path)
        return real(path, options)

    monkeypatch.setattr(io_cache, "CROP_PART_ROWS", 2)
    monkeypatch.setattr(facecache, "_align_photo", counting)
    resumed = facecache.aligned_crops(tmp_path / "photos", rels, workers=0, progress=False,
                                      tight_crops=True)  # fmt: skip
    assert len(calls) == 16 - 2 * kept  # only the photos of the missing parts
    assert fn.is_file() and not NpzCache(fn).parts_dir.exists()  # joined, parts removed
    assert not resumed["fallback"].any()

    options = facecache.dataset_photo_options(detector, True)
    paths = [str(tmp_path / "photos" / r) for r in rels[:2]]  # the first part: from disk
    fresh = facecache._detect_align(paths, options, 0, False)
    for key, col in zip(("landmarks", "fallback", "crops", "unreadable"), fresh):
        assert np.array_equal(resumed[key][:2], col), key


class _Crops:
    """Crops that fail (like a killed process) when row ``fail_at`` is read."""

    def __init__(self, crops: np.ndarray, fail_at: int | None) -> None:
        self.crops, self.fail_at = crops, fail_at

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int) -> np.ndarray:
        if i == self.fail_at:
            raise KeyboardInterrupt
        return self.crops[i]


def test_interrupted_teacher_targets_resume_and_a_damaged_part_is_redone(tmp_path, monkeypatch):
    from lrface.models.loader import load_embedder

    monkeypatch.setenv("LRFACE_CACHE", str(tmp_path / "cache"))
    rels = _photos(tmp_path / "photos", 6)
    crops = facecache.aligned_crops(tmp_path / "photos", rels, workers=0, progress=False)["crops"]
    teacher = load_embedder("mobilefacenet-arcface", flip=False)
    names = [""] * len(rels)

    def faces(fail_at):
        return FaceSet(tmp_path / "photos", rels, names, _Crops(crops, fail_at), recipe="r")

    with pytest.raises(KeyboardInterrupt):
        teacher_targets(faces(5), teacher, chunk=2)
    from lrface.distill.faces import targets_cache_file

    fn = targets_cache_file(teacher.name, teacher.sha256, tmp_path / "photos", rels, "r")
    done = sorted(p.name for p in NpzCache(fn).parts_dir.glob("*.npz"))
    assert done == ["00000000-00000002.npz", "00000002-00000004.npz"]
    # a damaged part is computed again, never trusted
    (NpzCache(fn).parts_dir / done[1]).write_bytes(b"damaged")
    plain, mirror = teacher_targets(faces(None), teacher, chunk=2)
    want = teacher.embed_crops(crops, flip=False)
    assert np.allclose(plain, want, atol=1e-5)
    assert np.allclose(mirror, teacher.embed_crops(crops[:, :, ::-1].copy(), flip=False), atol=1e-5)
    assert fn.is_file() and not NpzCache(fn).parts_dir.exists()


# ---------------------------------------------------------------- the one cache helper


def test_cache_keys_are_versioned_and_version_1_is_the_key_caches_always_had(tmp_path, monkeypatch):
    from lrface.io.cache import cache_key, digest

    monkeypatch.setenv("LRFACE_CACHE", str(tmp_path))
    parts_ = ("root", "scrfd-2.5g", "a.jpg", "b.jpg")
    v1 = NpzCache.entry("faces", *parts_, label="scrfd-2.5g")
    assert v1.path == tmp_path / f"faces-scrfd-2.5g-{digest(*parts_)}.npz"  # old files resolve
    v2 = NpzCache.entry("faces", *parts_, label="scrfd-2.5g", version=2)
    assert v2.path != v1.path and cache_key(*parts_, version=2) in v2.path.name
    unlabelled = NpzCache.entry("faces", *parts_, version=2)
    assert unlabelled.path.name == f"faces-{cache_key(*parts_, version=2)}.npz"
    with pytest.raises(ValueError):
        cache_key("x", version=0)


def _crops_of_tests_data() -> np.ndarray:
    from lrface.eval.protocols.common import prepare_crops

    return prepare_crops(sorted(PHOTOS.glob("*.jpg")), progress=False, use_cache=False)[0]


def test_an_old_embedding_cache_file_is_read_not_recomputed(tmp_path, monkeypatch):
    """A file written the way ``embed_cached`` wrote its files before the helper (its name
    from ``digest`` of the model key, n and the key parts; plain ``np.savez``) is found
    and returned as it is: the warm caches stay valid."""
    from lrface.eval.protocols.common import embed_cached, model_key
    from lrface.io.cache import digest
    from lrface.models.loader import load_embedder

    monkeypatch.setenv("LRFACE_CACHE", str(tmp_path))
    model = load_embedder("lrface-mbf")
    old = np.random.default_rng(0).standard_normal((3, model.embedding_size)).astype(np.float32)
    np.savez(tmp_path / f"emb-lrface-mbf-{digest(model_key(model), 3, 'old', 'run')}.npz", emb=old)

    def load(start, stop):
        raise AssertionError("an old cache file must be read, not recomputed")

    assert np.array_equal(embed_cached(model, 3, load, ("old", "run"), progress=False), old)


def test_an_interrupted_embedding_cache_resumes_from_its_parts(tmp_path, monkeypatch):
    """Real crops embedded in parts of 2: a run interrupted at crop 5 keeps parts 0-1 and
    2-3; the rerun embeds only the crops of the missing parts and equals a fresh run."""
    from lrface.eval.protocols import common
    from lrface.models.loader import load_embedder

    monkeypatch.setenv("LRFACE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(common, "EMBED_CHUNK", 2)
    crops = _crops_of_tests_data()
    model = load_embedder("lrface-mbf")
    asked: list[int] = []

    def load(fail_at):
        def chunk(start, stop):
            asked.extend(range(start, stop))
            if fail_at is not None and fail_at < stop:
                raise KeyboardInterrupt
            return list(crops[start:stop])

        return chunk

    key = ("tests/data", "resume")
    with pytest.raises(KeyboardInterrupt):
        common.embed_cached(model, len(crops), load(5), key, progress=False)
    entry = NpzCache.entry("emb", common.model_key(model), len(crops), *key, label=model.name)
    assert sorted(p.name for p in entry.parts_dir.glob("*.npz")) == [
        "00000000-00000002.npz",
        "00000002-00000004.npz",
    ]
    asked.clear()
    got = common.embed_cached(model, len(crops), load(None), key, progress=False)
    assert asked == list(range(4, len(crops)))  # only the missing parts
    assert entry.exists() and not entry.parts_dir.exists()
    fresh = common.embed_cached(model, len(crops), load(None), key, progress=False, use_cache=False)
    assert np.array_equal(got, fresh)
