"""Evaluation protocols on real data: LFW pairs, TinyFace .mat files, generated layouts.

The generated trees (TinyFace, SCface, folder) are built in tmp_path from real LFW faces;
embeddings and aligned crops of those trees are cached in a per-test LRFACE_CACHE.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED

from lrface.datasets.lfw import LFW
from lrface.errors import DatasetError, LrfaceError
from lrface.eval.plots import plot_results
from lrface.eval.protocols import common as common_proto
from lrface.eval.protocols import folder as folder_proto
from lrface.eval.protocols import lfw as lfw_proto
from lrface.eval.protocols import scface as scface_proto
from lrface.eval.protocols import tinyface as tinyface_proto
from lrface.faces.degrade import Degradation, degrade
from lrface.io.fileio import jsonable, write_json_atomic

LFW_ROOT = SHARED / "data" / "lfw"
TINYFACE = SHARED / "data" / "tinyface-protocol"
TEACHER_SHA = "e72a5710cce378dc46472b6b845cb90647634f2738d8c3e581735cf195b9866f"
#: 30 same + 30 different pairs of official folds 6 and 7 (120 pairs).
PAIR_INDICES = [*range(3000, 3030), *range(3300, 3330), *range(3600, 3630), *range(3900, 3930)]
MANY = ["George_W_Bush", "Colin_Powell", "Tony_Blair", "Donald_Rumsfeld"]


@pytest.fixture(scope="module")
def lfw():
    return LFW(LFW_ROOT)


@pytest.fixture(scope="module")
def lfw_result(teacher):
    return _evaluate_lfw(teacher, modes=("hr-hr", "hr-lr"), sizes=(8,), pair_indices=PAIR_INDICES)


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A fresh LRFACE_CACHE for this test (generated trees must not litter the user cache)."""
    monkeypatch.setenv("LRFACE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _evaluate_lfw(teacher, **kw) -> dict:
    """The LFW protocol on ../shared's LFW for ``teacher``, quiet and without the cache."""
    return lfw_proto.evaluate_lfw([teacher], LFW_ROOT, progress=False, use_cache=False, **kw)


def _entry(result: dict, **match) -> dict:
    hits = [e for e in result["results"] if all(e.get(k) == v for k, v in match.items())]
    assert len(hits) == 1, (match, [e["row"] for e in result["results"]])
    return hits[0]


# ---------------------------------------------------------------------------------- LFW


def test_lfw_subset_hr_is_high_and_8px_is_clearly_lower(lfw_result):
    hr = _entry(lfw_result, mode="hr-hr")["metrics"]
    lr8 = _entry(lfw_result, mode="hr-lr", size=8)["metrics"]
    assert hr["n_pairs"] == 120 and hr["n_same"] == 60
    assert hr["accuracy_mean"] >= 0.95
    assert hr["auc"] >= 0.98
    assert lr8["accuracy_mean"] <= hr["accuracy_mean"] - 0.15
    assert lr8["eer"] > hr["eer"]
    assert len(hr["fold_accuracies"]) == 2


def test_lfw_result_describes_the_protocol(lfw_result):
    d = lfw_result["description"]
    assert d["official_folds"] == [6, 7]
    assert d["n_folds"] == 2 and d["n_pairs"] == 120
    assert d["recipes"]["8"].startswith("area-down to 8px")
    assert lfw_result["models"][0]["sha256"] == TEACHER_SHA
    assert lfw_result["models"][0]["flip_fusion"] is True
    for e in lfw_result["results"]:
        roc = e["metrics"]["roc"]
        assert 2 <= len(roc["far"]) == len(roc["tar"]) <= 200
        assert np.all(np.diff(roc["tar"]) >= 0)
    text = json.dumps(jsonable(lfw_result), allow_nan=False)
    assert len(text) < 100_000


def test_json_files_are_written_by_the_one_conversion(lfw_result, tmp_path):
    """write_json_atomic writes jsonable(obj): strict JSON (NaN -> null, "%g" float keys)."""
    obj = {**lfw_result, "nan": np.float32("nan"), "keys": {0.5: np.int64(3), 1e-3: math.inf}}
    write_json_atomic(tmp_path / "r.json", obj)
    text = (tmp_path / "r.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict {c}")) == json.loads(
        json.dumps(jsonable(obj), allow_nan=False)
    )
    assert json.loads(text)["keys"] == {"0.5": 3, "0.001": None} and '"nan": null' in text


def test_lfw_table_in_readme_layout(lfw_result):
    table = lfw_proto.readme_table(lfw_result)
    lines = table.splitlines()
    assert lines[0] == "| s | HR vs HR | HR vs LR |"
    assert lines[2].startswith("| 112 | ") and lines[3].startswith("| 8 | ")


def test_lfw_hr_side_by_another_model(teacher):
    from lrface.models.loader import load_embedder

    plain = load_embedder("mobilefacenet-arcface", flip=False)  # another embedder, same space
    res = _evaluate_lfw(
        teacher, modes=("hr-lr", "lr-lr"), sizes=(24,), hr_embedder=plain, pair_indices=PAIR_INDICES
    )
    assert res["hr_model"]["flip_fusion"] is False and res["description"]["hr_model"]
    hr_lr = _entry(res, mode="hr-lr")
    assert hr_lr["hr_model"] == "mobilefacenet-arcface"
    assert _entry(res, mode="lr-lr")["hr_model"] is None
    assert hr_lr["metrics"]["accuracy_mean"] >= 0.85


def test_select_pairs_keeps_both_classes_per_fold(lfw):
    pairs = lfw_proto.select_pairs(lfw, "test", max_pairs_per_fold=10)
    assert len(pairs) == 50
    for fold in range(5, 10):
        fp = [p for p in pairs if p.fold == fold]
        assert sum(p.same for p in fp) == 5 and len(fp) == 10
    assert len(lfw_proto.select_pairs(lfw, "val")) == 3000
    with pytest.raises(LrfaceError, match="fold"):
        lfw_proto.select_pairs(lfw, pair_indices=range(3000, 3010))


def test_lfw_wrong_layout_and_mode(tmp_path, teacher):
    with pytest.raises(DatasetError, match="no LFW image folder"):
        lfw_proto.evaluate_lfw([teacher], tmp_path, progress=False)
    with pytest.raises(LrfaceError, match="unknown LFW mode"):
        lfw_proto.evaluate_lfw([teacher], LFW_ROOT, modes=("hr-xx",), progress=False)


def test_embedding_cache_round_trip(own_cache, teacher, lfw):
    crops, rows, _ = lfw_proto.load_crops(lfw, lfw.all_images[:3], progress=False)

    def load(a, b):
        return list(crops[rows[a:b]])

    first = common_proto.embed_cached(teacher, 3, load, ("t",), progress=False)
    assert first.shape == (3, 128) and first.dtype == np.float32
    assert len(list(own_cache.glob("emb-*.npz"))) == 1

    def fail(a, b):
        raise AssertionError("should come from the cache")

    again = common_proto.embed_cached(teacher, 3, fail, ("t",), progress=False)
    np.testing.assert_array_equal(first, again)


# ----------------------------------------------------------------------------- TinyFace


def test_tinyface_real_protocol_files():
    proto = tinyface_proto.read_protocol(
        TINYFACE / tinyface_proto.PROBE_MAT, TINYFACE / tinyface_proto.GALLERY_MAT
    )
    assert len(proto["probe"]) == 3733 and len(proto["gallery"]) == 4448
    assert proto["probe"][0] == "1_162.jpg" and proto["probe_ids"][0] == 1
    assert proto["gallery"][-1] == "5705_1.jpeg" and proto["gallery_ids"][-1] == 5705
    assert set(proto["probe_ids"]) <= set(proto["gallery_ids"])  # every probe is mated
    assert len(set(proto["gallery_ids"])) == 2574
    # the .mat files say .jpeg where the real crops are .jpg: matched by stem
    found = tinyface_proto.resolve_files(["5701_2.jpeg", "5704_2.jpg"], TINYFACE, "probe")
    assert [p.name for p in found] == ["5701_2.jpg", "5704_2.jpg"]
    with pytest.raises(DatasetError, match="1 of 2 probe images"):
        tinyface_proto.resolve_files(["5701_2.jpeg", "9999_1.jpg"], TINYFACE, "probe")


def _same_pair_identities(lfw: LFW, n: int, start: int = 3000) -> list[tuple[str, str]]:
    """``n`` (a, b) image pairs of distinct people from the same-pairs of the test split."""
    out, seen = [], set()
    for p in lfw.pairs[start:]:
        name = p.a.split("/")[0]
        if p.same and name not in seen:
            seen.add(name)
            out.append((p.a, p.b))
        if len(out) == n:
            return out
    raise AssertionError("not enough pairs")


def _cell_array(names: list[str]) -> np.ndarray:
    cells = np.empty((len(names), 1), dtype=object)
    for i, n in enumerate(names):
        cells[i, 0] = np.array([n])
    return cells


@pytest.fixture(scope="module")
def tinyface_tree(tmp_path_factory, lfw):
    """Official TinyFace layout from LFW test-split faces reduced to 20 px."""
    from scipy.io import savemat

    root = tmp_path_factory.mktemp("tinyface") / "tinyface"
    ts = root / "Testing_Set"
    for d in tinyface_proto.SUBDIRS:
        (ts / d).mkdir(parents=True)
    pairs = _same_pair_identities(lfw, 8)
    distr = [p.a for p in lfw.pairs[3300:3306]]  # different-pairs: other people
    rels = [r for ab in pairs for r in ab] + distr
    crops, rows, _ = lfw_proto.load_crops(lfw, rels, progress=False)

    def write(path: Path, rel_index: int) -> None:
        small = degrade(crops[rows[rel_index]], Degradation(size=20))
        assert cv2.imwrite(str(path), small)

    probe_names, gallery_names = [], []
    for k, _ in enumerate(pairs):
        ident = k + 1
        write(ts / "Probe" / f"{ident}_1.jpg", 2 * k)
        write(ts / "Gallery_Match" / f"{ident}_2.jpg", 2 * k + 1)
        probe_names.append(f"{ident}_1.jpg")
        # as in the real files, one name says .jpeg for a .jpg file
        gallery_names.append(f"{ident}_2.jpeg" if ident == 8 else f"{ident}_2.jpg")
    for j in range(len(distr)):
        write(ts / "Gallery_Distractor" / f"{100 + j}_1.jpg", 2 * len(pairs) + j)
    for real in sorted(TINYFACE.glob("*.jpg")):  # the four real TinyFace crops
        shutil.copy(real, ts / "Gallery_Distractor" / real.name)
    ids = [[k + 1] for k in range(len(pairs))]
    savemat(
        ts / tinyface_proto.PROBE_MAT,
        {"probe_set": _cell_array(probe_names), "probe_ids": np.array(ids, np.uint16)},
    )
    savemat(
        root / tinyface_proto.GALLERY_MAT,
        {"gallery_set": _cell_array(gallery_names), "gallery_ids": np.array(ids, np.uint16)},
    )
    return root


def test_tinyface_end_to_end(own_cache, teacher, tinyface_tree):
    res = tinyface_proto.evaluate_tinyface([teacher], tinyface_tree, progress=False)
    d = res["description"]
    assert (d["n_probes"], d["n_gallery_match"], d["n_distractors"]) == (8, 8, 10)
    match = _entry(res, gallery="gallery match")["metrics"]
    plus = _entry(res, gallery="+distractors")["metrics"]
    assert match["n_mated"] == 8 and plus["n_gallery"] == 18
    assert match["cmc"][1] >= 0.5
    assert plus["cmc"][1] <= match["cmc"][1]
    assert match["cmc"][1] <= match["cmc"][5] <= match["cmc"][20] == 1.0
    assert 0.0 < plus["mAP"] <= match["mAP"] <= 1.0
    assert list(res["results"][0]["cells"]) == ["R1", "R5", "R20", "mAP"]


def test_tinyface_bad_layout(tmp_path, teacher):
    (tmp_path / "Testing_Set" / "Probe").mkdir(parents=True)
    with pytest.raises(DatasetError) as err:
        tinyface_proto.evaluate_tinyface([teacher], tmp_path, progress=False)
    msg = str(err.value)
    assert "Gallery_Match" in msg and tinyface_proto.PROBE_MAT in msg and "found" in msg
    assert "\n" not in msg


# ------------------------------------------------------------------------------- SCface


@pytest.fixture(scope="module")
def scface_tree(tmp_path_factory, lfw):
    """SCface layout: 6 subjects, LFW photo 1 as mugshot, photos 2/3 downscaled as the
    cam1/cam2 probes at three distances (64, 96, 160 px for distances 1, 2, 3)."""
    root = tmp_path_factory.mktemp("scface")
    mug = root / scface_proto.MUGSHOT_DIR
    mug.mkdir()
    names = [
        n
        for n in sorted({p.a.split("/")[0] for p in lfw.split_pairs("test")})
        if len(list((lfw.image_dir / n).glob("*.jpg"))) >= 3
    ][:6]
    for sid, name in enumerate(names, start=1):
        imgs = sorted((lfw.image_dir / name).glob("*.jpg"))
        shutil.copy(imgs[0], mug / f"{sid:03d}_frontal.JPG")
        for dist, side in zip((1, 2, 3), (64, 96, 160)):
            for cam in (1, 2):
                out = root / scface_proto.DISTANCE_DIR.format(dist) / f"cam{cam}"
                out.mkdir(parents=True, exist_ok=True)
                small = cv2.resize(
                    cv2.imread(str(imgs[cam])), (side, side), interpolation=cv2.INTER_AREA
                )
                cv2.imwrite(str(out / f"{sid:03d}_cam{cam}_{dist}.jpg"), small)
    return root


def test_scface_end_to_end_with_excluded_subject(own_cache, teacher, scface_tree):
    res = scface_proto.evaluate_scface([teacher], scface_tree, exclude_subjects=[6], progress=False)
    d = res["description"]
    assert d["n_subjects"] == 5 and d["excluded_subjects"] == [6]
    assert d["n_probes"] == 30 and d["n_probes_by_distance"] == {1: 10, 2: 10, 3: 10}
    assert d["n_nonmated_probes"] == 0
    fb = d["alignment_fallbacks"]
    assert set(fb["probes_by_distance"]) == {1, 2, 3} and fb["gallery"] == 0
    near = _entry(res, distance=3)["metrics"]
    assert near["cmc"][1] >= 0.8
    assert set(near["rank1_by_camera"]) == {1, 2}
    cams = [e for e in res["results"] if e.get("camera")]
    assert [e["camera"] for e in cams] == [1, 2]
    assert all(e["metrics"]["n_probes"] == 15 for e in cams)


def test_scface_bad_layout(tmp_path, teacher):
    (tmp_path / "mugshot_frontal_cropped_all").mkdir()
    with pytest.raises(DatasetError, match="not an SCface layout"):
        scface_proto.evaluate_scface([teacher], tmp_path, progress=False)


# ------------------------------------------------------------------------------- folder


@pytest.fixture(scope="module")
def folder_tree(tmp_path_factory, lfw):
    """ROOT/<person>/<6 photos> for 4 people, plus 3 distractor photos of others."""
    base = tmp_path_factory.mktemp("folder")
    root, distr = base / "people", base / "distractors"
    for name in MANY:
        (root / name).mkdir(parents=True)
        for p in sorted((lfw.image_dir / name).glob("*.jpg"))[:6]:
            (root / name / p.name).symlink_to(p)
    distr.mkdir()
    for rel in lfw.all_images[:3]:
        (distr / Path(rel).name).symlink_to(lfw.image_dir / rel)
    return root, distr


def test_folder_end_to_end_open_set(own_cache, teacher, folder_tree, tmp_path):
    root, distr = folder_tree
    res = folder_proto.evaluate_folder(
        [teacher], root, sizes=(16, 12), distractors=distr, nonmated_fraction=0.5, progress=False
    )
    d = res["description"]
    assert d["n_identities"] == 4 and d["n_probes"] == 20 and d["n_distractors"] == 3
    assert len(d["nonmated_identities"]) == 2 and d["n_nonmated_probes"] == 10
    assert d["n_gallery"] == 2 + 3
    r16 = _entry(res, size=16)["metrics"]
    assert r16["n_mated"] == 10 and r16["n_nonmated"] == 10
    assert r16["cmc"][1] >= 0.6
    assert 0.0 <= r16["dir_at_fpir"][0.1] <= r16["cmc"][1]
    assert math.isnan(r16["dir_at_fpir"][0.01]) and r16["notes"]
    assert d["alignment_fallbacks"] == {"gallery": 0, "probes": 0}
    pngs = plot_results(res, tmp_path / "plots")
    assert sorted(p.name for p in pngs) == ["cmc_12px.png", "cmc_16px.png"]
    for p in pngs:
        img = cv2.imread(str(p))
        assert img is not None and img.ndim == 3 and min(img.shape[:2]) > 100


def test_folder_without_nonmated_probes_gives_nan_dir(own_cache, teacher, folder_tree):
    root, _ = folder_tree
    res = folder_proto.evaluate_folder([teacher], root, sizes=(16,), no_detect=True, progress=False)
    m = res["results"][0]["metrics"]
    assert m["n_nonmated"] == 0 and all(math.isnan(v) for v in m["dir_at_fpir"].values())
    assert res["results"][0]["cells"]["16px DIR@1%"] == "nan"


def test_folder_bad_layout(tmp_path, teacher):
    (tmp_path / "a.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match="no identity folders"):
        folder_proto.evaluate_folder([teacher], tmp_path, progress=False)
    with pytest.raises(DatasetError, match="not found"):
        folder_proto.evaluate_folder([teacher], tmp_path / "missing", progress=False)


def test_lfw_roc_plots_are_images(lfw_result, tmp_path):
    pngs = plot_results(lfw_result, tmp_path)
    assert sorted(p.name for p in pngs) == ["roc_8px.png", "roc_hr_112px.png"]
    for p in pngs:
        img = cv2.imread(str(p))
        assert img is not None and img.shape[2] == 3


# ------------------------------------------------------------- probe conditions (issue 21)

#: 10 same + 10 different pairs of official folds 6 and 7 (40 pairs, a subset of PAIR_INDICES).
SMALL = [*range(3000, 3010), *range(3300, 3310), *range(3600, 3610), *range(3900, 3910)]
CONDITIONS = [
    ("clean", "aligned"),
    ("realistic", "aligned"),
    ("clean", "box"),
    ("realistic", "box"),
]


@pytest.fixture(scope="module")
def condition_results(teacher):
    return {
        (d, c): _evaluate_lfw(
            teacher,
            modes=("hr-lr", "lr-lr"),
            sizes=(16,),
            pair_indices=SMALL,
            degrade=d,
            probe_crop=c,
        )
        for d, c in CONDITIONS
    }


def test_lfw_conditions_are_recorded(condition_results):
    for (d, c), res in condition_results.items():
        desc = res["description"]
        assert desc["condition"]["degrade"] == d and desc["condition"]["probe_crop"] == c
        assert all(e["degrade"] == d and e["probe_crop"] == c for e in res["results"])
        recipe = desc["recipes"]["16"]
        assert recipe.startswith("box crop (1.1x detector box") == (c == "box")
        assert ("realistic: gauss blur" in recipe) == (d == "realistic")
        assert ("detector-box crops" in res["caption"]) == (c == "box")
        assert ("realistic blur/noise/JPEG" in res["caption"]) == (d == "realistic")
        assert desc["box_fallbacks"] == (0 if c == "box" else None)
        json.dumps(jsonable(res), allow_nan=False)
    plain = condition_results[("clean", "aligned")]["description"]["recipes"]["16"]
    assert plain == "area-down to 16px, model resizes (bicubic up)"


def test_lfw_conditions_change_the_probes_not_the_default(condition_results, teacher):
    default = _evaluate_lfw(teacher, modes=("hr-lr", "lr-lr"), sizes=(16,), pair_indices=SMALL)
    auc = {k: _entry(res, mode="hr-lr")["metrics"]["auc"] for k, res in condition_results.items()}
    assert (
        _entry(default, mode="hr-lr")["metrics"]
        == _entry(condition_results[("clean", "aligned")], mode="hr-lr")["metrics"]
    )
    assert len(set(auc.values())) == 4
    # camera degradation and unaligned crops both cost the teacher (fixed draws: no flake)
    assert auc[("realistic", "aligned")] < auc[("clean", "aligned")]
    assert auc[("clean", "box")] < auc[("clean", "aligned")]


def test_lfw_realistic_draw_is_fixed_by_pair_index(teacher, lfw):
    other = [*range(3005, 3015), *range(3305, 3315), *range(3605, 3615), *range(3905, 3915)]
    deg = Degradation(size=16)
    embs, sets = [], []
    for indices in (SMALL, other, SMALL):
        pairs = lfw_proto.select_pairs(lfw, pair_indices=indices)
        ps = lfw_proto._PairSet(lfw, pairs, "scrfd-2.5g", False)
        assert ps.index == list(indices)
        embs.append(ps.embed_lr(teacher, deg, "realistic", [0, 1], False, False))
        sets.append(ps)
    np.testing.assert_array_equal(embs[0][1], embs[2][1])  # same run twice: same inputs
    shared = [i for i in SMALL if i in other]
    assert len(shared) == 20
    for i in shared:  # the same pair in another subset gets the same draw
        a, b = SMALL.index(i), other.index(i)
        np.testing.assert_array_equal(embs[0][1][a], embs[1][1][b])
        np.testing.assert_array_equal(embs[0][0][a], embs[1][0][b])
    # different pairs, and the two sides of one pair, get different draws
    assert not np.allclose(embs[0][1][0], embs[1][1][0])
    clean = sets[0].embed_lr(teacher, deg, "clean", [0, 1], False, False)
    assert np.abs(clean[1] - embs[0][1]).max() > 0.1


def test_lfw_box_crops_are_square_detector_cuts(lfw):
    rels = lfw.all_images[:6]
    crops, fallback, boxes = lfw_proto.load_box_crops(lfw, rels, progress=False)
    assert crops.shape == (6, 112, 112, 3) and crops.dtype == np.uint8
    assert not fallback.any() and boxes.shape == (6, 4)
    aligned, rows, _ = lfw_proto.load_crops(lfw, rels, progress=False)
    for crop, box, al in zip(crops, boxes, aligned[rows]):
        w, h = box[2] - box[0], box[3] - box[1]
        assert 30 < w < 250 and 0.6 < w / h < 1.4  # a face box in a 250x250 photo
        assert np.abs(crop.astype(int) - al).mean() > 5


def test_bad_condition_values_are_one_line_errors(teacher):
    for kw, word in (({"degrade": "heavy"}, "--degrade"), ({"probe_crop": "eyes"}, "--probe-crop")):
        with pytest.raises(LrfaceError, match=f"^{word} '") as err:
            lfw_proto.evaluate_lfw([teacher], LFW_ROOT, progress=False, **kw)
        assert "\n" not in str(err.value) and "choose" in str(err.value)


def test_folder_box_realistic_probes(own_cache, teacher, folder_tree):
    root, _ = folder_tree
    res = folder_proto.evaluate_folder(
        [teacher], root, sizes=(24,), degrade="realistic", probe_crop="box", progress=False
    )
    d = res["description"]
    assert d["condition"]["probe_crop"] == "box" and d["box_fallbacks"] == 0
    assert d["recipes"]["24"].startswith("box crop") and "realistic" in d["recipes"]["24"]
    e = res["results"][0]
    assert e["degrade"] == "realistic" and e["probe_crop"] == "box"
    assert e["metrics"]["n_probes"] == 20 and e["metrics"]["cmc"][20] == 1.0
    assert "detector-box crops" in res["caption"]
    with pytest.raises(LrfaceError, match="--no-detect"):
        folder_proto.evaluate_folder([teacher], root, no_detect=True, probe_crop="box")


def test_lfw_given_probes_are_read_as_pre_cut_crops(condition_results, teacher):
    """--probe-crop given: the detector-box probe, reduced, then read by the default crop
    mode (landmarks searched inside the 16-px crop); recorded, and most probes aligned."""
    res = _evaluate_lfw(teacher, modes=("hr-lr",), sizes=(16,), pair_indices=SMALL,
                        probe_crop="given")  # fmt: skip
    desc, e = res["description"], _entry(res, mode="hr-lr")
    assert desc["condition"]["probe_crop"] == "given" and e["probe_crop"] == "given"
    assert desc["recipes"]["16"].endswith("then read as a pre-cut crop (--crop-mode auto)")
    assert "read as pre-cut crops" in res["caption"]
    assert 0.8 <= e["given_aligned_fraction"] <= 1.0
    box = _entry(condition_results[("clean", "box")], mode="hr-lr")["metrics"]["auc"]
    assert e["metrics"]["auc"] != box  # the same box probes, aligned inside where found


def test_folder_given_probes(own_cache, teacher, folder_tree):
    root, _ = folder_tree
    res = folder_proto.evaluate_folder(
        [teacher], root, sizes=(24,), probe_crop="given", progress=False
    )
    e = res["results"][0]
    assert e["probe_crop"] == "given" and res["description"]["box_fallbacks"] == 0
    assert e["metrics"]["n_probes"] == 20 and e["metrics"]["cmc"][1] >= 0.5
    with pytest.raises(LrfaceError, match="--no-detect"):
        folder_proto.evaluate_folder([teacher], root, no_detect=True, probe_crop="given")
