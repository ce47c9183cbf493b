"""Training data from any source: plain labelled folders, unlabelled photos, insightface
RecordIO packs, several sources with weights, and the LFW test-identity guard.

Real faces throughout: LFW train/test photos and a few dozen UTKFace photos copied into a
temporary folder (never into the repository: UTKFace is non-commercial research only).
The guard's reference (per-identity templates of the LFW test-split identities) ships in
weights/; the calibration test recomputes it from LFW (the whole-LFW crop cache that the
LFW benchmark shares, and cached teacher targets).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import LFW_IMAGES, LFW_ROOT, SHARED
from test_recordio import write_insightface_pack

from lrface.cli.main import main
from lrface.datasets.lfw import LFW
from lrface.datasets.sources import parse_source, parse_sources
from lrface.distill import guard
from lrface.distill.data import epoch_order, load_training_faces, prepare_training_data
from lrface.distill.dataset import DistillDataset
from lrface.distill.faces import lfw_crops
from lrface.distill.train import DistillConfig, distill
from lrface.errors import DatasetError

UTK = SHARED / "data" / "utkface" / "images"
TINY = dict(student="lrface-tiny-16", tiny_width=32, tiny_head=256, tiny_blocks=1)


def _cfg(tmp_path, data, **kw) -> DistillConfig:
    base = dict(
        data=data,
        out=str(tmp_path / "run"),
        batch_size=16,
        epochs=1,
        val_every=0,
        val_sizes=(),
        losses=("kd",),
        threads=1,
        **TINY,
    )
    base.update(kw)
    return DistillConfig(**base)


@pytest.fixture(scope="module")
def lfw() -> LFW:
    return LFW(LFW_ROOT)


@pytest.fixture(scope="module")
def teacher():
    from lrface.models.loader import load_embedder

    return load_embedder("mobilefacenet-arcface", flip=False)


@pytest.fixture(scope="module")
def reference(lfw, teacher) -> guard.Reference:
    """The guard's reference: the shipped templates of the shipped teacher."""
    ref = guard.shipped_reference(teacher)
    assert ref is not None
    return ref


@pytest.fixture(scope="module")
def test_faces(lfw, teacher) -> tuple[list[str], np.ndarray]:
    """Every LFW test-split image and its flip-fused teacher embedding (cached)."""
    rels = guard.test_split_images(lfw)
    return rels, guard.whole_lfw_embeddings(lfw, rels, teacher)[0]


def _train_identities(lfw: LFW, n: int, min_images: int = 2, skip: int = 0) -> list[str]:
    counts = Counter(r.split("/")[0] for r in lfw.train_images())
    names = [k for k in sorted(counts) if counts[k] >= min_images]
    return names[skip : skip + n]


def _utk_folder(dest: Path, n: int = 24) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(UTK.iterdir())[:: 23708 // n][:n]:
        shutil.copy(f, dest / f.name)
    return dest


# --- sources: syntax, detection, refusals --------------------------------------------


def test_source_syntax_and_detection(tmp_path, lfw):
    labelled = tmp_path / "people"
    for name in _train_identities(lfw, 2):
        shutil.copytree(LFW_IMAGES / name, labelled / name)
    flat = _utk_folder(tmp_path / "photos", 2)
    listing = tmp_path / "list.txt"
    listing.write_text("# my photos\n" + "\n".join(f"photos/{p.name}" for p in flat.iterdir()))

    assert parse_source(str(LFW_ROOT)).kind == "lfw"
    assert parse_source(str(labelled)).kind == "labelled"
    assert parse_source(str(flat)).kind == "unlabelled"
    assert parse_source(str(listing)).kind == "unlabelled"
    s = parse_source(f"unlabelled:{labelled}:weight=2.5")  # explicit kind wins
    assert (s.kind, s.path, s.weight) == ("unlabelled", labelled, 2.5)
    assert parse_source(f"labeled:{labelled}").kind == "labelled"  # US spelling

    (labelled / "loose.jpg").write_bytes((flat / next(flat.iterdir()).name).read_bytes())
    with pytest.raises(DatasetError, match="say which: labelled:"):
        parse_source(str(labelled))
    with pytest.raises(DatasetError, match="outside identity folders"):
        load_training_faces(f"labelled:{labelled}")
    for bad in ("0", "-1", "abc", "nan", ""):
        with pytest.raises(DatasetError, match="not a number > 0"):
            parse_source(f"{flat}:weight={bad}")
    with pytest.raises(DatasetError, match="not found"):
        parse_source(str(tmp_path / "nope"))
    with pytest.raises(DatasetError, match=r"would be one identity; say which: unlabelled:"):
        parse_source(str(UTK.parent))  # utkface/ holds images/: not one person
    with pytest.raises(DatasetError, match="give each source once"):
        parse_sources([str(flat), f"{flat}:weight=2"])
    with pytest.raises(DatasetError, match=r"train\.rec and train\.idx"):
        parse_source(f"rec:{flat}")


def test_cli_reports_a_bad_source_in_one_line(tmp_path, capsys):
    rc = main(["distill", "--data", f"{tmp_path}:weight=0", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: --data") and err.count("\n") == 1, err


def test_epoch_order_follows_the_weights():
    plain = epoch_order([5, 3], [1, 1], seed=3, epoch=2)
    assert np.array_equal(plain, np.random.default_rng([3, 2]).permutation(8))  # as before
    order = epoch_order([5, 4], [2, 0.5], seed=0, epoch=0)
    n = 9
    faces, reps = order % n, order // n
    assert len(order) == 10 + 2
    assert Counter(faces[faces < 5].tolist()) == {i: 2 for i in range(5)}  # each twice
    assert sorted(reps[faces < 5].tolist()) == [0] * 5 + [1] * 5  # as two distinct keys
    half = faces[faces >= 5]
    assert len(half) == 2 and len(set(half.tolist())) == 2
    assert np.array_equal(order, epoch_order([5, 4], [2, 0.5], seed=0, epoch=0))  # pure


# --- plain labelled folder: the reported crash, skipped images, no label shift ----------


def test_plain_labelled_folder_trains_and_skips_faceless_images(tmp_path, lfw):
    """`lrface distill --data my_faces/` on ROOT/<identity>/<images> crashed
    ('str' object has no attribute 'shape'); now it trains, and an image without a face
    and an unreadable file are skipped and reported -- never given a neighbour's label."""
    root = tmp_path / "my_faces"
    names = _train_identities(lfw, 8)
    for name in names:
        shutil.copytree(LFW_IMAGES / name, root / name)
    # a photo with no face (flat grey) and a file that is not an image, inside a folder
    cv2.imwrite(str(root / names[3] / "zz_blank.jpg"), np.full((250, 250, 3), 128, np.uint8))
    (root / names[5] / "zz_broken.jpg").write_bytes(b"not a jpeg")
    n_real = sum(len(list((LFW_IMAGES / n).iterdir())) for n in names)

    faces = load_training_faces(str(root))
    assert f"{names[3]}/zz_blank.jpg" not in faces.paths
    assert f"{names[5]}/zz_broken.jpg" not in faces.paths
    assert all(p.split("/")[0] == i for p, i in zip(faces.paths, faces.identities))
    # each crop is the crop of its own path (rows never shift past a skipped image)
    j = faces.paths.index(f"{names[5]}/{names[5]}_0001.jpg")
    own = lfw_crops(lfw, [f"{names[5]}/{names[5]}_0001.jpg"])[0]
    assert np.abs(faces.crops[j].astype(int) - own).mean() < 1.0
    assert len(set(faces.labels.tolist())) == 8 and faces.labels.min() == 0

    args = f"--student lrface-tiny-16 --epochs 1 --batch-size 16 --width 32 --blocks 1 \
        --head-channels 256 --loss kd,arc --threads 1 --quiet --out {tmp_path / 'run'} \
        --calib-identities 0"
    rc = main(["distill", "--data", str(root), "--val-sizes", "", *args.split()])
    assert rc == 0
    card = json.loads((tmp_path / "run" / "lrface-tiny-16.json").read_text())
    src = card["data"]["sources"][0]
    assert src["kind"] == "labelled" and src["path"].endswith("my_faces")
    assert src["images_listed"] == n_real + 2 and src["identities"] == 8
    assert f"{names[3]}/zz_blank.jpg" in src["no_face_examples"]
    assert src["unreadable_skipped"] == 1
    assert src["unreadable_examples"] == [f"{names[5]}/zz_broken.jpg"]
    assert src["images"] == n_real + 1 - src["no_face_skipped"] == len(faces.paths)
    assert card["epochs_trained"] == 1 and card["history"][0]["step"] == src["images"] // 16
    assert np.isfinite(card["history"][0]["loss_arc"])
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert f"{names[3]}/zz_blank.jpg" in report["sources"][0]["no_face"]


# --- unlabelled photos and the test-identity guard -------------------------------------


def test_guard_threshold_and_shipped_templates_are_the_calibrated_ones(lfw, teacher, reference):
    """The stored threshold is what the calibration on the LFW train split gives (the
    highest 0.01 step with >= 99 % leave-one-image-out recall), with the figures its note
    states, and the shipped templates are those computed from LFW (float16 storage)."""
    res = guard.calibrate(lfw, teacher)
    assert res["threshold"] == guard.GUARD_THRESHOLD
    at = res["at_threshold"]
    close = {"abs": 0.001}  # onnxruntime's CPU kernels move a few faces across T
    for key, value in guard.CALIBRATION.items():
        assert at[key] == pytest.approx(value, **close), key
    assert at["train_loo_recall"] >= 0.99 - 0.001
    fresh = guard.lfw_reference(lfw, teacher, lfw.test_identities)
    assert fresh.identities == reference.identities and len(reference.identities) == 2195
    assert np.array_equal(fresh.images, reference.images) and reference.images.sum() >= 6300
    cos = (fresh.templates * reference.templates).sum(1)
    assert cos.min() > 0.9999


def _different_photo_of_test_identity(lfw, test_faces) -> tuple[str, np.ndarray]:
    """A test-split photo that the template of the *other* photos of its person catches
    (well above the threshold), re-encoded smaller (new bytes)."""
    rels, emb = test_faces
    ids = np.array([r.split("/")[0] for r in rels])
    for name in sorted(lfw.test_identities):
        rows = np.flatnonzero(ids == name)
        if len(rows) < 3:
            continue
        probe, others = rows[0], rows[1:]
        tmpl = emb[others].sum(0)
        if emb[probe] @ tmpl / np.linalg.norm(tmpl) >= guard.GUARD_THRESHOLD + 0.1:
            img = cv2.imread(str(LFW_IMAGES / rels[probe]))
            return rels[probe], cv2.resize(img[10:240, 15:235], (200, 209))
    raise AssertionError("no suitable test identity")


def test_unlabelled_folder_trains_and_the_guard_drops_a_test_identity(
    tmp_path, lfw, teacher, reference, test_faces
):
    photos = _utk_folder(tmp_path / "photos", 12)
    probe, img = _different_photo_of_test_identity(lfw, test_faces)
    cv2.imwrite(str(photos / "someone.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert (photos / "someone.jpg").read_bytes() != (LFW_IMAGES / probe).read_bytes()
    # a train-split person far from every test-split template (the guard's collateral)
    cands = lfw.train_images()[:400]
    best, _ = guard.nearest(guard.whole_lfw_embeddings(lfw, cands, teacher)[0], reference.templates)
    train_rel = cands[int(np.flatnonzero(best < guard.GUARD_THRESHOLD - 0.05)[0])]
    shutil.copy(LFW_IMAGES / train_rel, photos / "train_person.jpg")

    card = distill(
        _cfg(tmp_path, str(photos), losses=("kd", "nce", "rkd"), batch_size=4), progress=False
    )
    src = card["data"]["sources"][0]
    assert src["kind"] == "unlabelled" and src["identities"] is None
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    dropped = [d["path"] for d in report["sources"][0]["test_guard_dropped"]]
    assert "someone.jpg" in dropped  # a different photo of a test identity: dropped
    assert "train_person.jpg" not in dropped  # a train-split person: kept
    assert src["test_guard_dropped"] == len(dropped)
    assert "someone.jpg" in [d["path"] for d in src["test_guard_examples"]] or len(dropped) > 5
    someone = next(
        d for d in report["sources"][0]["test_guard_dropped"] if d["path"] == "someone.jpg"
    )
    assert someone["nearest_lfw_test_identity"] == probe.split("/")[0]
    assert src["images"] == 14 - src["no_face_skipped"] - src["test_guard_dropped"]
    g = card["data"]["test_guard"]
    assert g["enabled"] and g["threshold"] == guard.GUARD_THRESHOLD
    assert g["checked"] == 14 - src["no_face_skipped"] and g["dropped"] == len(dropped)
    assert card["data"]["unlabelled_images"] == src["images"]
    # weights trained on other people's photos inherit their terms, never Apache-2.0 silently
    assert card["license"].startswith("inherits the terms") and "unlabelled:" in card["license"]
    row = card["history"][0]
    assert all(np.isfinite(row[f"loss_{k}"]) for k in ("kd", "nce", "rkd"))

    # the guard is on by default; turning it off is explicit and recorded
    off = distill(
        _cfg(
            tmp_path / "off",
            str(photos),
            test_guard=False,
            batch_size=4,
            max_steps=1,
            weights_license="non-commercial research only (test photos)",
        ),
        progress=False,
    )
    assert off["license"] == "non-commercial research only (test photos)"
    assert off["data"]["test_guard"]["enabled"] is False
    assert off["training"]["test_guard"] is False
    assert off["data"]["images"] == 14 - src["no_face_skipped"]
    # an unlabelled source cannot train on arc
    with pytest.raises(Exception, match="identity-labelled"):
        distill(
            _cfg(tmp_path / "arc", str(photos), losses=("kd", "arc"), batch_size=4), progress=False
        )


def test_guard_also_covers_held_out_validation_identities(tmp_path, lfw, teacher, reference):
    """With --holdout-folds 1, an unlabelled photo of a fold-1 identity (validation pairs
    of the run) is dropped too; without held-out folds it is kept."""
    from lrface.distill.faces import holdout_identities

    held = holdout_identities(lfw, (1,))
    rels = lfw.train_images()
    emb = guard.whole_lfw_embeddings(lfw, rels, teacher)[0]
    to_test, _ = guard.nearest(emb, reference.templates)
    ids = np.array([r.split("/")[0] for r in rels])
    sims = emb @ emb.T
    np.fill_diagonal(sims, -1)
    sims[ids[:, None] != ids[None, :]] = -1
    far = to_test < guard.GUARD_THRESHOLD - 0.05
    in_held = np.isin(ids, sorted(held))
    probe = rels[int(np.flatnonzero(far & in_held & (sims.max(1) >= 0.5))[0])]
    other = rels[int(np.flatnonzero(far & ~in_held)[0])]
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(LFW_IMAGES / probe, photos / "fold1_person.jpg")
    shutil.copy(LFW_IMAGES / other, photos / "other_person.jpg")
    data = (str(LFW_ROOT), str(photos))
    kept = prepare_training_data(data, teacher, limit=4)
    assert not kept.parts[1].dropped and len(kept.parts[1].faces) == 2
    held_run = prepare_training_data(data, teacher, limit=4, holdout_folds=(1,))
    assert [d[0] for d in held_run.parts[1].dropped] == ["fold1_person.jpg"]
    assert held_run.parts[1].dropped[0][1] == probe.split("/")[0]
    assert "held-out folds [1]" in held_run.guard["reference"]


def test_guard_needs_no_lfw_with_the_shipped_templates(tmp_path, teacher, monkeypatch):
    """Without any LFW copy the shipped templates guard the shipped teacher's runs; a
    teacher they were not made by needs an LFW copy (refused without one); a changed
    template file is refused."""
    photos = _utk_folder(tmp_path / "photos", 2)
    monkeypatch.delenv("LRFACE_HOME")
    td = prepare_training_data(str(photos), teacher)
    assert td.lfw is None and td.guard["reference"].startswith("shipped lfw-test-guard.npz")
    assert td.guard["checked"] == len(td.faces) + td.guard["dropped"]
    from lrface.models.loader import load_embedder

    other = load_embedder("lrface-mbf", flip=False)  # not the templates' teacher
    with pytest.raises(DatasetError, match="--no-test-guard"):
        prepare_training_data(str(photos), other)
    fake = tmp_path / "weights"
    fake.mkdir()
    from lrface.models.registry import PACKAGE_WEIGHTS

    data = bytearray((PACKAGE_WEIGHTS / guard.REFERENCE_FILE).read_bytes())
    data[-100] ^= 1
    (fake / guard.REFERENCE_FILE).write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="sha256 mismatch"):
        guard.shipped_reference(teacher, fake)


def test_several_sources_with_weights_and_a_text_list(tmp_path, lfw, capsys):
    """LFW train split + an unlabelled .txt list (weight 2): --prepare-only reports the
    data; arc sees only the LFW faces, every term trains, and the card records both
    sources and their share of the draws."""
    photos = _utk_folder(tmp_path / "photos", 8)
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(p) for p in sorted(photos.iterdir())))
    data = ["--data", str(LFW_ROOT), "--data", f"unlabelled:{listing}:weight=2"]
    opts = ["--limit", "32", "--out", str(tmp_path / "prep"), "--prepare-only", "--quiet"]
    rc = main(["distill", *data, *opts])
    prep = json.loads(capsys.readouterr().out)
    assert rc == 0 and [s["kind"] for s in prep["sources"]] == ["lfw", "unlabelled"]
    assert prep["draws_per_epoch"] == prep["sources"][0]["images"] + 2 * prep["unlabelled_images"]
    assert not (tmp_path / "prep" / "last.pt").exists()  # no training
    card = distill(
        _cfg(
            tmp_path,
            (str(LFW_ROOT), f"{listing}:weight=2"),
            limit=32,
            losses=("kd", "arc", "crcd"),
            crcd_warmup_steps=1,
        ),
        progress=False,
    )
    lfw_src, utk = card["data"]["sources"]
    assert lfw_src["kind"] == "lfw" and utk["kind"] == "unlabelled" and utk["weight"] == 2.0
    n_u = utk["images"]
    assert lfw_src["images"] == 32 - lfw_src["no_face_skipped"]
    draws = lfw_src["images"] + 2 * n_u
    assert utk["share_of_draws"] == round(2 * n_u / draws, 4)
    assert card["history"][0]["step"] == draws // 16
    assert card["data"]["identities"] == lfw_src["identities"]
    assert card["data"]["unlabelled_images"] == n_u
    assert all(np.isfinite(card["history"][0][f"loss_{k}"]) for k in ("kd", "arc", "crcd"))
    assert card["data"]["path"][1] == "list.txt"


def test_repeated_draws_of_a_face_are_augmented_differently(lfw):
    from lrface.faces.degrade import RandomDegradation

    faces = load_training_faces(str(LFW_ROOT), None, 4)
    dummy = np.zeros((4, 128), np.float32)
    ds = DistillDataset(faces, dummy, dummy, 16, (0.0,) * 3, (1.0,) * 3, RandomDegradation(8, 32))
    a, b, c = ds[1], ds[1 + 4], ds[1]
    assert a[4] == b[4] == 1  # same face, same label index
    assert not np.array_equal(a[0].numpy(), b[0].numpy())  # another augmentation
    assert np.array_equal(a[0].numpy(), c[0].numpy())  # deterministic


# --- insightface RecordIO -----------------------------------------------------------------


@pytest.fixture(scope="module")
def pack(tmp_path_factory, lfw):
    names = _train_identities(lfw, 8, min_images=4)
    rels = [r for r in lfw.train_images() if r.split("/")[0] in names][:40]
    crops = lfw_crops(lfw, rels)
    ids = [names.index(r.split("/")[0]) for r in rels]
    folder = tmp_path_factory.mktemp("faces_emore")
    jpegs = write_insightface_pack(folder, crops, ids)
    return folder, jpegs, ids


def test_distill_from_a_recordio_pack(pack, tmp_path, reference):
    folder, jpegs, ids = pack
    card = distill(
        _cfg(tmp_path, f"rec:{folder}", losses=("kd", "arc"), batch_size=8, max_steps=2),
        progress=False,
    )
    src = card["data"]["sources"][0]
    assert src["kind"] == "rec" and src["images_listed"] == len(jpegs)
    # the guard checks every face of a pack (no LFW names to check); train-split people
    # only here (a few may lie within the threshold of a test template: collateral)
    assert src["images"] + src["test_guard_dropped"] == len(jpegs) and src["images"] >= 16
    assert 1 < src["identities"] <= len(set(ids))
    assert card["history"][0]["step"] == 2 and np.isfinite(card["history"][0]["loss_arc"])
    assert card["data"]["test_guard"]["checked"] == len(jpegs)
