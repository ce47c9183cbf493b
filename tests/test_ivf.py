"""On-disk FAISS IVF galleries (lrface.search.ivf) on real LFW faces embedded by a shipped model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import LFW_IMAGES as LFW

pytest.importorskip("faiss", reason="faiss-cpu is not installed (dev extra)")

from lrface.errors import LrfaceError
from lrface.faces.pipeline import CropOptions, prepare_crop
from lrface.search.gallery import FlatGallery
from lrface.search.ivf import IvfGallery, build_ivf, gallery_parts, model_meta

pytestmark = pytest.mark.timeout(120)
MODEL = "lrface-mbf"


@pytest.fixture(scope="module")
def faces():
    """(gallery: exact FlatGallery(aggregate='all') of 156 images, probes: (52, D), truth):
    the 52 LFW people whose names start with A with at least 4 images; 156 rows are
    enough to train 4 inverted lists (39 rows each)."""
    from lrface.models.loader import load_embedder

    emb = load_embedder(MODEL)
    people = [d for d in sorted(LFW.iterdir()) if d.name.startswith("A")]
    people = [d for d in people if len(list(d.glob("*.jpg"))) >= 4]
    assert len(people) == 52
    opts = CropOptions(detect=False, size=emb.input_size)
    g = FlatGallery.for_embedder(emb, "all")
    probes, truth = [], []
    for d in people:
        imgs = sorted(d.glob("*.jpg"))[:4]
        e = emb.embed_crops([prepare_crop(p, opts).crop for p in imgs])
        g.add(d.name, e[1:], [str(p) for p in imgs[1:]])
        probes.append(e[0])
        truth.append(d.name)
    return g, np.stack(probes), truth, emb


def _build(g: FlatGallery, path: Path, **kw):
    return build_ivf(path, gallery_parts(g, 40), model_meta(g), g.threshold, **kw)


def test_parts_merged_on_disk_answer_like_exact(faces, tmp_path):
    g, probes, _, _ = faces
    ivf = _build(g, tmp_path / "g.ivf", nlist=4, nprobe=4, shortlist=1000)
    meta = json.loads((tmp_path / "g.ivf" / "meta.json").read_text())
    assert len(meta["parts"]) == 4 and meta["merged"]["parts"] == [p["name"] for p in meta["parts"]]
    assert meta["merged"]["ntotal"] == g.n_images == ivf.n_images
    # every list visited and a shortlist covering all rows: identical to exact search
    assert ivf.search(probes, 5) == g.search(probes, 5, backend="numpy")
    # the directory can move (IO_FLAG_ONDISK_SAME_DIR) and opens without reading lists
    shutil.move(tmp_path / "g.ivf", tmp_path / "moved")
    again = IvfGallery.open(tmp_path / "moved")
    assert again.identify(probes, top_k=3) == g.identify(probes, top_k=3, backend="numpy")


def test_sq8_and_pq_recall_with_a_small_shortlist(faces, tmp_path):
    g, probes, _, _ = faces
    exact = [h[0][0] for h in g.search(probes, 1, backend="numpy")]
    for kind in ("ivf-sq8", "ivf-pq"):
        ivf = _build(g, tmp_path / kind, kind=kind, nlist=4, nprobe=2, shortlist=16)
        got = [h[0][0] if h else None for h in ivf.search(probes, 1)]
        recall = np.mean([a == b for a, b in zip(got, exact)])
        assert recall >= 0.8, (kind, recall)


def test_add_and_remove_identities(faces, tmp_path):
    g, probes, truth, _ = faces
    ivf = _build(g, tmp_path / "g.ivf", nlist=4, nprobe=4, shortlist=1000)
    # a new identity: a part of its own, searched before any merge
    newcomer = probes[0:1]
    ivf.add("Newcomer", newcomer, ["newcomer.jpg"])
    assert "Newcomer" in ivf and len(ivf) == len(g) + 1
    assert ivf.search(newcomer, 1)[0][0][0] == "Newcomer"
    reopened = IvfGallery.open(tmp_path / "g.ivf")
    assert reopened.search(newcomer, 1)[0][0][0] == "Newcomer"
    # remove the newcomer, then the identity the probe really belongs to
    assert reopened.remove("Newcomer") == 1
    assert reopened.search(newcomer, 1)[0][0][0] == truth[0]
    n = reopened.remove(truth[0])
    assert n == len(g.embeddings_of(truth[0])) and truth[0] not in reopened.identities
    hits = IvfGallery.open(tmp_path / "g.ivf").search(newcomer, 5)[0]
    assert truth[0] not in [h[0] for h in hits] and "Newcomer" not in [h[0] for h in hits]
    with pytest.raises(LrfaceError, match="not enrolled"):
        reopened.remove(truth[0])
    reopened.merge()  # the pending part folds into a new on-disk generation
    merged = IvfGallery.open(tmp_path / "g.ivf")
    assert len(merged.meta["merged"]["parts"]) == 5
    assert sorted(p.name for p in (tmp_path / "g.ivf").glob("merged-*")) == [
        "merged-00001.index",
        "merged-00001.ivfdata",
    ]
    assert merged.search(probes[1:], 1) == [h for h in g.search(probes[1:], 1, backend="numpy")]


@pytest.mark.parametrize("victim", ["part-00001.emb.npy", "merged-00000.ivfdata", "lab"])
def test_corrupt_part_is_a_one_line_error(faces, tmp_path, victim):
    g, _, _, _ = faces
    path = tmp_path / "g.ivf"
    _build(g, path, nlist=4)
    if victim == "lab":  # same size, wrong content: labels out of range
        f = path / "part-00002.lab.npy"
        a = np.load(f)
        a[:] = 10_000
        np.save(f, a)
        name = "part-00002"
    else:
        f = path / victim
        f.write_bytes(f.read_bytes()[:-100])
        name = victim
    with pytest.raises(LrfaceError) as exc:
        IvfGallery.open(path)
    msg = str(exc.value)
    assert "\n" not in msg and name in msg and "corrupt" in msg and "rebuild" in msg


def test_cli_build_and_identify(faces, tmp_path):
    """`gallery build --index ivf-sq8` then `identify` names the index it used."""
    root = tmp_path / "root"
    people = [d for d in sorted(LFW.iterdir()) if d.name.startswith("A")]
    people = [d for d in people if len(list(d.glob("*.jpg"))) >= 2][:20]
    for d in people:
        (root / d.name).mkdir(parents=True)
        for p in sorted(d.glob("*.jpg"))[:2]:
            shutil.copy(p, root / d.name / p.name)
    out = tmp_path / "g.ivf"
    lrface = [sys.executable, "-m", "lrface"]
    res = subprocess.run(
        [*lrface, "gallery", "build", str(root), "--model", MODEL, "--no-detect", "--quiet",
         "--out", str(out), "--index", "ivf-sq8", "--part-size", "10", "--workers", "0"],
        capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()  # our one line, no FAISS clustering warning
    assert len(lines) == 1 and lines[0].startswith("index: ivf-sq8 (IVF1,SQ8,"), res.stderr
    probe = next(iter(sorted((root / people[0].name).glob("*.jpg"))))
    res = subprocess.run(
        [*lrface, "identify", str(probe), "--gallery", str(out), "--no-detect", "--json",
         "--workers", "0", "--model", MODEL],
        capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "index: ivf-sq8 (IVF" in res.stderr
    (result,) = json.loads(res.stdout)  # nothing but JSON on stdout (FAISS prints muted)
    assert result["identity"] == people[0].name and result["score"] > 0.99
    (out / "part-00000.emb.npy").write_bytes(b"garbage")
    res = subprocess.run(
        [*lrface, "identify", str(probe), "--gallery", str(out), "--no-detect"],
        capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "part-00000.emb.npy" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--nlist", "1000"], "--nlist 1000: needs at least 39000 training rows (39 per "
         "list), there are 40; pass --nlist 1 or less, or leave it out"),
        (["--nlist", "2"], "--nlist 2: needs at least 78 training rows"),
        (["--nprobe", "3"], "--nprobe 3: more than the 1 inverted lists"),
        (["--index", "ivf-pq"], "--index ivf-pq: 40 rows are too few for an IVF index"),
    ],
)  # fmt: skip
def test_cli_nlist_is_checked_before_any_work(tmp_path, args, needle):
    """Issue 29 (6): `--nlist 100000` was clamped silently (to the training rows) and a
    small --nlist made FAISS print its clustering warning; now the plan is checked against
    the rows ROOT can give, before anything is embedded: one line, exit 2, nothing
    written, no FAISS noise."""
    root = tmp_path / "root"
    people = [d for d in sorted(LFW.iterdir()) if d.name.startswith("A")]
    for d in [d for d in people if len(list(d.glob("*.jpg"))) >= 2][:20]:
        (root / d.name).mkdir(parents=True)
        for p in sorted(d.glob("*.jpg"))[:2]:
            shutil.copy(p, root / d.name / p.name)
    out = tmp_path / "g.ivf"
    index = [] if "--index" in args else ["--index", "ivf-sq8"]
    res = subprocess.run(
        [sys.executable, "-m", "lrface", "gallery", "build", str(root), "--model", MODEL,
         "--no-detect", "--quiet", "--out", str(out), *index, *args],
        capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("error: ") and needle in res.stderr, res.stderr
    assert not out.exists()


def test_api_refuses_an_nlist_the_sample_cannot_train(faces, tmp_path):
    """The same check in the library (IvfGallery.create): 156 rows train at most 4 lists."""
    g = faces[0]
    with pytest.raises(LrfaceError, match=r"--nlist 5: needs at least 195 training rows"):
        _build(g, tmp_path / "g5", nlist=5)
    with pytest.raises(LrfaceError, match="--nprobe 5: more than the 4 inverted lists"):
        _build(g, tmp_path / "p5", nlist=4, nprobe=5)
    assert not (tmp_path / "g5").exists() and not (tmp_path / "p5").exists()


@pytest.fixture(params=["flat", "ivf"])
def either_gallery(request, faces, tmp_path):
    """The same 156 real LFW embeddings as each implementation of the Gallery protocol:
    the exact .npz gallery (aggregate 'all', saved and loaded) and an IVF directory
    (every list visited, shortlist over all rows: it answers as the exact search)."""
    from lrface.search.ivf import open_gallery

    g = faces[0]
    if request.param == "flat":
        g.save(tmp_path / "g.npz")
        return open_gallery(tmp_path / "g.npz")
    _build(g, tmp_path / "g.ivf", nlist=4, nprobe=4, shortlist=1000)
    return open_gallery(tmp_path / "g.ivf")


def test_both_galleries_keep_the_gallery_protocol(either_gallery, faces):
    """One contract, one test, both implementations: contents, model check, search and
    open-set decisions, enrolling and removing an identity."""
    from lrface.search.interface import Gallery

    g: Gallery = either_gallery
    exact, probes, truth, emb = faces
    assert isinstance(g, Gallery)
    assert (g.model_name, g.embedding_size, g.aggregate) == (MODEL, emb.embedding_size, "all")
    assert len(g) == 52 and g.identities == exact.identities and truth[0] in g
    assert g.n_images == 156 and g.image_counts() == exact.image_counts()
    assert (g.index_description is None) == isinstance(g, FlatGallery)
    g.check_model(emb)
    with pytest.raises(LrfaceError, match="not comparable"):  # another embedding size
        g.check_model(_other_size(emb))
    hits = g.search(probes, 3)
    assert hits == exact.search(probes, 3, backend="numpy")
    assert sum(h[0][0] == t for h, t in zip(hits, truth)) >= 40  # real faces: mostly right
    decided = g.identify(probes[:2], threshold=2.0)  # above any cosine: all unknown
    assert [d["identity"] for d in decided] == ["unknown", "unknown"]
    g.add("Newcomer", probes[:1], ["new.jpg"])
    assert "Newcomer" in g and g.search(probes[:1], 1)[0][0] == ("Newcomer", pytest.approx(1.0))
    assert g.remove(truth[1]) == 3 and truth[1] not in g and len(g) == 52


def _other_size(emb):
    """``emb`` as if it embedded into twice as many dimensions: not comparable."""
    import copy

    other = copy.copy(emb)
    other.embedding_size = 2 * emb.embedding_size
    return other
