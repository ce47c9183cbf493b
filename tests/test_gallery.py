"""FlatGallery enrolment/identification and the search backends, on real LFW faces."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import LFW_IMAGES as LFW

from lrface.errors import LrfaceError
from lrface.search.exact import search
from lrface.search.gallery import UNKNOWN, FlatGallery, build_gallery

PEOPLE = ["Abdoulaye_Wade", "Ai_Sugiyama", "Alan_Greenspan", "Alastair_Campbell", "Albert_Costa"]
STRANGER = LFW / "Adam_Sandler" / "Adam_Sandler_0001.jpg"
N_ENROL = 3


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """ROOT/<person>/<3 images> plus one corrupt file; returns (root, held-out paths, bad)."""
    root = tmp_path_factory.mktemp("gallery")
    held_out = {}
    for name in PEOPLE:
        imgs = sorted((LFW / name).glob("*.jpg"))
        (root / name).mkdir()
        for p in imgs[:N_ENROL]:
            (root / name / p.name).symlink_to(p)
        held_out[name] = imgs[-1]
    bad = root / PEOPLE[1] / "broken.jpg"
    bad.write_bytes(b"this is not an image at all")
    return root, held_out, bad


@pytest.fixture(scope="module")
def built(tree, teacher):
    root, _, _ = tree
    return build_gallery(root, teacher, detect=True, aggregate="mean", progress=False)


@pytest.fixture(scope="module")
def probes(tree, teacher):
    """Embeddings (5, D) of the held-out image of each person, in PEOPLE order."""
    from lrface.faces.pipeline import prepare_face

    _, held_out, _ = tree
    crops = [prepare_face(str(held_out[n]), size=teacher.input_size).crop for n in PEOPLE]
    return teacher.embed_crops(crops)


@pytest.fixture(scope="module")
def stranger(teacher):
    from lrface.faces.pipeline import prepare_face

    return teacher.embed_crops([prepare_face(str(STRANGER), size=teacher.input_size).crop])


def _copy(g: FlatGallery, aggregate: str | None = None) -> FlatGallery:
    out = FlatGallery(
        g.model_name, g.model_sha256, g.embedding_size, aggregate or g.aggregate, g.threshold
    )
    for name in g.identities:
        out.add(name, g.embeddings_of(name), g.sources_of(name))
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _teacher_under_card(teacher, folder: Path, name: str, /, **extra) -> dict:
    """A card for ``name``: the teacher's real weights copied to ``folder/<name>.onnx``,
    written to ``folder/<name>.json`` (``extra`` fields added); returns the card."""
    shutil.copy(teacher.path, folder / f"{name}.onnx")
    card = {
        "name": name,
        "kind": "student",
        "weights_file": f"{name}.onnx",
        "sha256": _sha256(folder / f"{name}.onnx"),
        "input_size": 112,
        "embedding_size": 128,
        "runtime": "onnx",
        **extra,
    }
    (folder / f"{name}.json").write_text(json.dumps(card))
    return card


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ------------------------------------------------------------------------- gallery


def test_build_reports_failure_and_enrols_all(built, tree, teacher):
    gallery, failures = built
    _, _, bad = tree
    assert gallery.identities == PEOPLE
    assert len(gallery) == 5 and gallery.n_images == 5 * N_ENROL
    assert [p for p, _ in failures] == [str(bad)]
    assert "not a readable image" in failures[0][1]
    assert gallery.model_name == teacher.name and gallery.model_sha256 == teacher.sha256
    for name in PEOPLE:
        e = gallery.embeddings_of(name)
        assert e.dtype == np.float32 and e.shape == (N_ENROL, 128)
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
        assert all(Path(s).parent.name == name for s in gallery.sources_of(name))


def test_build_in_worker_processes_is_identical(built, tree, teacher, monkeypatch):
    """The worker pool (forced: 16 images are below POOL_MIN_PATHS) gives the same gallery."""
    from lrface.faces import pipeline
    monkeypatch.setattr(pipeline, "POOL_MIN_PATHS", 0)
    root, _, _ = tree
    pooled, failures = build_gallery(root, teacher, progress=False, workers=2)
    assert failures == built[1] and pooled.identities == built[0].identities
    for name in PEOPLE:
        assert np.array_equal(pooled.embeddings_of(name), built[0].embeddings_of(name))


@pytest.mark.parametrize("aggregate", ["mean", "all"])
def test_identify_held_out_images(built, probes, aggregate):
    gallery = _copy(built[0], aggregate)
    results = gallery.identify(probes, top_k=3)
    assert [r["identity"] for r in results] == PEOPLE
    for r in results:
        assert r["score"] >= gallery.threshold
        assert len(r["candidates"]) == 3
        assert r["candidates"][0] == {"identity": r["identity"], "score": r["score"]}
        scores = [c["score"] for c in r["candidates"]]
        assert scores == sorted(scores, reverse=True)


def test_all_mode_scores_are_max_over_images(built, probes):
    gallery = _copy(built[0], "all")
    hits = gallery.search(probes, top_k=5)
    for p, row in zip(probes, hits):
        expect = {n: float((gallery.embeddings_of(n) @ p).max()) for n in PEOPLE}
        assert {n for n, _ in row} == set(PEOPLE)
        for name, score in row:
            assert score == pytest.approx(expect[name], abs=1e-6)


def test_mean_mode_scores_use_renormalised_mean(built, probes):
    gallery = built[0]
    for name in PEOPLE:
        m = gallery.embeddings_of(name).astype(np.float64).mean(0)
        np.testing.assert_allclose(gallery.template(name), m / np.linalg.norm(m), atol=1e-6)
    row = gallery.search(probes[:1], top_k=5)[0]
    for name, score in row:
        assert score == pytest.approx(float(gallery.template(name) @ probes[0]), abs=1e-6)


def test_unknown_below_threshold(built, stranger, probes):
    gallery = built[0]
    r = gallery.identify(stranger)[0]
    assert r["identity"] == UNKNOWN and r["score"] < gallery.threshold
    assert len(r["candidates"]) == 5  # candidates are listed even when rejected
    assert all(x["identity"] == UNKNOWN for x in gallery.identify(probes, threshold=1.01))
    assert gallery.search(stranger, threshold=gallery.threshold) == [[]]


def test_add_remove_without_reembedding(built, probes):
    gallery = _copy(built[0])
    before = {n: (gallery.embeddings_of(n).copy(), gallery.template(n)) for n in PEOPLE}
    removed = PEOPLE[2]
    emb, src = gallery.embeddings_of(removed).copy(), gallery.sources_of(removed)
    assert gallery.remove(removed) == N_ENROL
    assert removed not in gallery.identities and len(gallery) == 4
    for n in gallery.identities:
        assert np.array_equal(gallery.embeddings_of(n), before[n][0])
        assert np.array_equal(gallery.template(n), before[n][1])
    assert gallery.identify(probes[2:3])[0]["identity"] != removed
    gallery.add(removed, emb, src)
    assert gallery.identify(probes[2:3])[0]["identity"] == removed
    assert np.array_equal(gallery.template(removed), before[removed][1])
    # removing one image recomputes only that template, from the stored embeddings
    keep = gallery.sources_of(PEOPLE[0])[1:]
    assert gallery.remove(PEOPLE[0], sources=[gallery.sources_of(PEOPLE[0])[0]]) == 1
    assert gallery.sources_of(PEOPLE[0]) == keep
    m = before[PEOPLE[0]][0][1:].astype(np.float64).mean(0)
    np.testing.assert_allclose(gallery.template(PEOPLE[0]), m / np.linalg.norm(m), atol=1e-6)
    for n in PEOPLE[1:]:
        assert np.array_equal(gallery.embeddings_of(n), before[n][0])
    with pytest.raises(LrfaceError, match="not enrolled"):
        gallery.remove("Nobody")
    with pytest.raises(LrfaceError, match="reserved"):
        gallery.add(UNKNOWN, emb, src)


@pytest.mark.parametrize("aggregate", ["mean", "all"])
def test_save_load_roundtrip(built, probes, tmp_path, aggregate):
    gallery = _copy(built[0], aggregate)
    path = tmp_path / "g.npz"
    gallery.save(path)
    assert sorted(os.listdir(tmp_path)) == ["g.npz"]  # no temporary left behind
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        assert z["embeddings"].dtype == np.float32 and z["embeddings"].shape == (15, 128)
    assert meta["format"] == "lrface-gallery" and meta["identities"] == PEOPLE
    loaded = FlatGallery.load(path)
    assert (
        loaded.model_name,
        loaded.model_sha256,
        loaded.embedding_size,
        loaded.aggregate,
        loaded.threshold,
    ) == (
        gallery.model_name,
        gallery.model_sha256,
        gallery.embedding_size,
        aggregate,
        gallery.threshold,
    )
    assert loaded.identities == PEOPLE
    for n in PEOPLE:
        assert np.array_equal(loaded.embeddings_of(n), gallery.embeddings_of(n))
        assert loaded.sources_of(n) == gallery.sources_of(n)
    assert loaded.identify(probes) == gallery.identify(probes)
    (tmp_path / "junk.npz").write_bytes(b"nope")
    with pytest.raises(LrfaceError, match="not an lrface gallery"):
        FlatGallery.load(tmp_path / "junk.npz")


def test_save_to_unwritable_place_is_one_line_error(built, tmp_path):
    """Issue 17 family 6 at the API: OSError while writing becomes an LrfaceError."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for dest in (a_file / "g.npz", tmp_path):
        with pytest.raises(LrfaceError, match=r"cannot be created|is a directory") as exc:
            built[0].save(dest)
        assert str(dest) in str(exc.value) and "\n" not in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # no temporary left


def test_wrong_model_is_refused(built, probes, tmp_path, teacher):
    gallery = built[0]
    gallery.check_model(teacher)  # the right model passes
    # a real, separately named model (the teacher's weights under another card)
    _teacher_under_card(teacher, tmp_path, "other-model")
    from lrface.models.loader import load_embedder

    other = load_embedder(str(tmp_path / "other-model.json"))
    with pytest.raises(LrfaceError) as exc:
        gallery.identify(probes, embedder=other)
    msg = str(exc.value)
    assert "\n" not in msg and "mobilefacenet-arcface" in msg and "other-model" in msg
    wrong_sha = FlatGallery(teacher.name, "0" * 64, 128)
    with pytest.raises(LrfaceError, match="sha256 000000000000"):
        wrong_sha.check_model(teacher)
    wide = _unit(np.random.default_rng(0), 2, 512)
    with pytest.raises(LrfaceError, match=r"dimension 512.*mobilefacenet-arcface"):
        gallery.search(wide)


def test_student_in_teacher_space_is_accepted(built, probes, tmp_path, teacher):
    """A model whose card names the gallery's model as teacher shares its space."""
    from lrface.models.loader import load_embedder

    teacher_ref = {"name": teacher.name, "sha256": teacher.sha256}
    card = _teacher_under_card(teacher, tmp_path, "student-x", teacher=teacher_ref)
    student = load_embedder(str(tmp_path / "student-x.json"))
    gallery = built[0]
    assert [r["identity"] for r in gallery.identify(probes, embedder=student)] == PEOPLE
    # a gallery built by the student accepts the teacher (and survives save/load)
    by_student = _copy(gallery)
    by_student.model_name, by_student.teacher = student.name, card["teacher"]
    by_student.save(tmp_path / "s.npz")
    FlatGallery.load(tmp_path / "s.npz").check_model(teacher)
    card["teacher"] = {"name": teacher.name, "sha256": "f" * 64}  # another teacher file
    (tmp_path / "student2.json").write_text(json.dumps({**card, "name": "student-y"}))
    with pytest.raises(LrfaceError, match="student-y"):
        gallery.check_model(load_embedder(str(tmp_path / "student2.json")))


def test_bad_root_raises(tmp_path, teacher):
    from lrface.errors import DatasetError

    with pytest.raises(DatasetError):
        build_gallery(tmp_path / "missing", teacher, progress=False)
    (tmp_path / "empty_person").mkdir()
    with pytest.raises(DatasetError, match="no identity folders"):
        build_gallery(tmp_path, teacher, progress=False)


# ------------------------------------------------------------------------- search


def test_search_numpy_matches_faiss_random():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(1)
    gallery = _unit(rng, 5000, 128)
    gallery[4000:4010] = gallery[10]  # exact ties: equal scores ordered by index
    probes = np.concatenate([_unit(rng, 200, 128), gallery[10:11]])
    s_np, i_np = search(probes, gallery, 20, backend="numpy", block_size=1024)
    s_fa, i_fa = search(probes, gallery, 20, backend="faiss")
    assert s_np.dtype == np.float32 and i_np.dtype == np.int64 and i_np.shape == (201, 20)
    assert np.array_equal(i_np, i_fa) and np.array_equal(s_np, s_fa)
    assert i_np[-1, :11].tolist() == [10, *range(4000, 4010)]
    assert np.all(np.diff(s_np, axis=1) <= 0)
    brute = probes @ gallery.T
    np.testing.assert_allclose(s_np[:, 0], brute.max(1), atol=1e-6)
    s_auto, i_auto = search(probes, gallery, 20, backend="auto", faiss_threshold=100)
    assert np.array_equal(i_auto, i_np) and np.array_equal(s_auto, s_np)


def test_search_numpy_matches_faiss_real(built, probes, stranger):
    pytest.importorskip("faiss")
    gallery = _copy(built[0], "all")
    images = np.concatenate([gallery.embeddings_of(n) for n in PEOPLE])
    queries = np.concatenate([probes, stranger])
    a = search(queries, images, 10, backend="numpy")
    b = search(queries, images, 10, backend="faiss")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert gallery.search(queries, backend="numpy") == gallery.search(queries, backend="faiss")


def test_search_validation():
    rng = np.random.default_rng(2)
    g = _unit(rng, 10, 8)
    s, i = search(g[:2], g, 50)  # k larger than the gallery is clipped
    assert s.shape == i.shape == (2, 10) and i[:, 0].tolist() == [0, 1]
    with pytest.raises(LrfaceError, match="not L2-normalised"):
        search(g * 2, g, 3)
    with pytest.raises(LrfaceError, match="dimension"):
        search(_unit(rng, 2, 4), g, 3)
    with pytest.raises(LrfaceError, match="unknown search backend"):
        search(g, g, 3, backend="annoy")


def test_cli_identify_directory_batched(tree, built, tmp_path, capsys):
    """`lrface identify DIR` embeds every image below DIR in one batch and names each
    held-out face; an unreadable probe is reported and the rest are still answered."""
    from lrface.cli.main import main

    gallery, _ = built
    gfile = tmp_path / "g.npz"
    gallery.save(gfile)
    _, held_out, _ = tree
    pdir = tmp_path / "probes"
    pdir.mkdir()
    for name in PEOPLE:
        (pdir / f"{name}.jpg").symlink_to(held_out[name])
    (pdir / "zz_broken.png").write_bytes(b"not an image")
    rc = main(["identify", str(pdir), "--gallery", str(gfile), "--json", "--top-k", "2"])
    out = capsys.readouterr()
    assert rc == 3  # partial failure: one probe failed, the others were answered
    res = json.loads(out.out)
    assert [Path(r["probe"]).stem for r in res] == PEOPLE
    assert [r["identity"] for r in res] == PEOPLE
    assert all(len(r["candidates"]) == 2 for r in res)
    broken = pdir / "zz_broken.png"
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"failed: {broken}: "), out.err
    assert lines[0].count(str(broken)) == 1 and "not a readable image" in lines[0]


def test_cli_identify_routes_each_probe(tree, built, tmp_path, capsys):
    """Without --model each probe goes to the model verify would choose (a small face to
    lrface-mbf, in the teacher gallery's space, with its calibrated threshold; a large one
    to the teacher), recorded per probe in --json; --model forces one."""
    import cv2

    from lrface.cli.main import main

    gallery, _ = built
    gfile = tmp_path / "g.npz"
    gallery.save(gfile)
    _, held_out, _ = tree
    name = PEOPLE[0]
    big = tmp_path / "big.png"
    small = tmp_path / "small.png"
    img = cv2.imread(str(held_out[name]))
    cv2.imwrite(str(big), img)
    cv2.imwrite(str(small), cv2.resize(img, (80, 80), interpolation=cv2.INTER_AREA))
    rc = main(["identify", str(big), str(small), "--gallery", str(gfile), "--json"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert [r["model"] for r in res] == ["mobilefacenet-arcface", "lrface-mbf"]
    assert res[1]["face"]["face_size_px"] < 64 <= res[0]["face"]["face_size_px"]
    assert all(r["face"]["crop"] == "aligned-5pt" for r in res)
    assert [r["identity"] for r in res] == [name, name]
    rc = main(
        ["identify", str(big), str(small), "--gallery", str(gfile), "--json", "--model",
         "mobilefacenet-arcface"]
    )  # fmt: skip
    assert [r["model"] for r in json.loads(capsys.readouterr().out)] == [
        "mobilefacenet-arcface"
    ] * 2


# ------------------------------------------------------------------ corrupt files


@pytest.fixture(scope="module")
def saved(built, tmp_path_factory):
    """A valid gallery file and its arrays: (path, {name: array}, meta dict)."""
    path = tmp_path_factory.mktemp("saved") / "g.npz"
    built[0].save(path)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return path, arrays, json.loads(str(arrays["meta"]))


def _resave(path: Path, arrays: dict, **changes) -> Path:
    out = {**arrays, **changes}
    np.savez(path, **{k: v for k, v in out.items() if v is not None})
    return path


def _meta(meta: dict, **changes) -> np.ndarray:
    m = json.loads(json.dumps(meta))
    for key, value in changes.items():
        if "__" in key:
            outer, inner = key.split("__")
            if value is _DROP:
                del m[outer][inner]
            else:
                m[outer][inner] = value
        elif value is _DROP:
            del m[key]
        else:
            m[key] = value
    return np.array(json.dumps(m))


_DROP = object()


def _zip_bomb(path: Path, arrays: dict) -> Path:
    """Valid members, plus 'labels' replaced by 60 MB of deflated zeros (~60 kB on disk)."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            if name != "labels":
                buf = __import__("io").BytesIO()
                np.lib.format.write_array(buf, arr, allow_pickle=False)
                zf.writestr(f"{name}.npy", buf.getvalue())
        zf.writestr("labels.npy", bytes(60_000_000))
    return path


def _lying_header(path: Path, arrays: dict) -> Path:
    """'embeddings' whose .npy header claims 10^9 x 128 floats over a few bytes of data."""
    import io
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            if name == "embeddings":
                header = {"descr": "<f4", "fortran_order": False, "shape": (10**9, 128)}
                np.lib.format.write_array_header_1_0(buf, header)
                buf.write(bytes(512))
            else:
                np.lib.format.write_array(buf, arr, allow_pickle=False)
            zf.writestr(f"{name}.npy", buf.getvalue())
    return path


CORRUPTIONS = {
    # name: (make(tmp_path, path, arrays, meta) -> file, needle in the message)
    "empty": (lambda t, p, a, m: _write(t / "x.npz", b""), "empty"),
    "truncated": (lambda t, p, a, m: _write(t / "x.npz", p.read_bytes()[:-300]), "not an lrface"),
    "half": (lambda t, p, a, m: _write(t / "x.npz", p.read_bytes()[:2000]), "not an lrface"),
    "zip bomb": (lambda t, p, a, m: _zip_bomb(t / "x.npz", a), "decompression bomb"),
    "lying header": (lambda t, p, a, m: _lying_header(t / "x.npz", a), "declares shape"),
    "no sources": (lambda t, p, a, m: _resave(t / "x.npz", a, sources=None), "no 'sources'"),
    "object array": (
        lambda t, p, a, m: _resave(t / "x.npz", a, labels=np.array([{"a": 1}], dtype=object)),
        "Python objects",
    ),
    "meta list": (lambda t, p, a, m: _resave(t / "x.npz", a, meta=np.array("[1, 2]")), "list"),
    "meta number": (lambda t, p, a, m: _resave(t / "x.npz", a, meta=np.array("3")), "int"),
    "meta not json": (lambda t, p, a, m: _resave(t / "x.npz", a, meta=np.array("{oops")), "JSON"),
    "meta int array": (lambda t, p, a, m: _resave(t / "x.npz", a, meta=np.array(7)), "meta"),
    "meta deep": (
        lambda t, p, a, m: _resave(t / "x.npz", a, meta=np.array("[" * 100_000)),
        "JSON",
    ),
    "no model": (lambda t, p, a, m: _resave(t / "x.npz", a, meta=_meta(m, model=_DROP)), "model"),
    "model is text": (
        lambda t, p, a, m: _resave(t / "x.npz", a, meta=_meta(m, model="abc")),
        "model",
    ),
    "model name null": (
        lambda t, p, a, m: _resave(t / "x.npz", a, meta=_meta(m, model__name=None)),
        "name",
    ),
    "dim as text": (
        lambda t, p, a, m: _resave(t / "x.npz", a, meta=_meta(m, model__embedding_size="128")),
        "embedding_size",
    ),
    "dim mismatch": (
        lambda t, p, a, m: _resave(t / "x.npz", a, meta=_meta(m, model__embedding_size=64)),
        "expected float32",
    ),
    "bad sha": (
        lambda t, p, a, m: _resave(t / "x.npz", a, meta=_meta(m, model__sha256="xyz")),
        "hex",
    ),
    "threshold nan": (
        lambda t, p, a, m: _resave(t / "x.npz", a, meta=_meta(m, threshold=float("nan"))),
        "threshold",
    ),
    "threshold text": (
        lambda t, p, a, m: _resave(t / "x.npz", a, meta=_meta(m, threshold="0.3")),
        "threshold",
    ),
    "aggregate": (
        lambda t, p, a, m: _resave(t / "x.npz", a, meta=_meta(m, aggregate="median")),
        "aggregate",
    ),
    "identities dict": (
        lambda t, p, a, m: _resave(t / "x.npz", a, meta=_meta(m, identities={"a": 1})),
        "identities",
    ),
    "identity twice": (
        lambda t, p, a, m: _resave(
            t / "x.npz", a, meta=_meta(m, identities=m["identities"] + m["identities"][:1])
        ),
        "twice",
    ),
    "n_images": (lambda t, p, a, m: _resave(t / "x.npz", a, meta=_meta(m, n_images=3)), "n_images"),
    "float64": (
        lambda t, p, a, m: _resave(t / "x.npz", a, embeddings=a["embeddings"].astype(np.float64)),
        "float32",
    ),
    "int embeddings": (
        lambda t, p, a, m: _resave(t / "x.npz", a, embeddings=a["embeddings"].astype(np.int32)),
        "float32",
    ),
    "1-d embeddings": (
        lambda t, p, a, m: _resave(t / "x.npz", a, embeddings=a["embeddings"].ravel()),
        "float32",
    ),
    "nan embedding": (
        lambda t, p, a, m: _resave(t / "x.npz", a, embeddings=_with_nan(a["embeddings"])),
        "NaN",
    ),
    "not normalised": (
        lambda t, p, a, m: _resave(t / "x.npz", a, embeddings=a["embeddings"] * 2),
        "L2-normalised",
    ),
    "labels disagree": (
        lambda t, p, a, m: _resave(t / "x.npz", a, labels=np.array(["Nobody"] * len(a["labels"]))),
        "disagree",
    ),
    "labels as ints": (
        lambda t, p, a, m: _resave(t / "x.npz", a, labels=np.arange(len(a["labels"]))),
        "labels",
    ),
    "short sources": (
        lambda t, p, a, m: _resave(t / "x.npz", a, sources=a["sources"][:-1]),
        "sources",
    ),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _with_nan(e: np.ndarray) -> np.ndarray:
    e = e.copy()
    e[3, 7] = np.nan
    return e


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_gallery_is_one_line_error(case, saved, tmp_path):
    """Issue 17 family 5: every corruption is an LrfaceError naming the file and the fix."""
    path, arrays, meta = saved
    make, needle = CORRUPTIONS[case]
    bad = make(tmp_path, path, arrays, meta)
    with pytest.raises(LrfaceError) as exc:
        FlatGallery.load(bad)
    msg = str(exc.value)
    assert msg.startswith(f"{bad}: ") and "\n" not in msg, msg
    assert "rebuild it with `lrface gallery build`" in msg, msg
    assert needle in msg, msg


def test_bit_flipped_gallery_is_refused_or_intact(saved, tmp_path):
    """300 seeded single-bit flips: each file is refused with an LrfaceError, or (a flip in
    an unchecked zip field such as a timestamp) loads exactly the original gallery."""
    path, _, _ = saved
    data = path.read_bytes()
    original = FlatGallery.load(path)
    rng = np.random.default_rng(17)
    refused = 0
    bad = tmp_path / "flipped.npz"
    for pos in rng.integers(0, len(data), 300):
        blob = bytearray(data)
        blob[pos] ^= 1 << int(rng.integers(0, 8))
        bad.write_bytes(bytes(blob))
        try:
            g = FlatGallery.load(bad)
        except LrfaceError as exc:
            assert str(bad) in str(exc) and "\n" not in str(exc)
            refused += 1
            continue
        assert g.identities == original.identities and g.threshold == original.threshold
        assert (g.model_name, g.model_sha256) == (original.model_name, original.model_sha256)
        for n in g.identities:
            assert np.array_equal(g.embeddings_of(n), original.embeddings_of(n))
            assert g.sources_of(n) == original.sources_of(n)
    assert refused > 250  # nearly every byte is covered by a CRC or a structure check
