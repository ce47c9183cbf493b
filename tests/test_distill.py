"""Distillation on real LFW train-split faces: KD goes down, exact resume, leak refusal, card."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import LFW_IMAGES, LFW_ROOT

from lrface.datasets.lfw import LFW
from lrface.distill.train import DistillConfig, distill
from lrface.errors import DatasetError, LrfaceError
from lrface.models.loader import load_embedder
from lrface.models.preprocess import InputFormat
from lrface.models.registry import PACKAGE_WEIGHTS


def _cfg(tmp_path, **kw):
    base = dict(
        data=str(LFW_ROOT),
        out=str(tmp_path / "run"),
        limit=64,
        batch_size=16,
        val_every=0,
        val_sizes=(),
        seed=0,
        threads=1,  # CPU kernels with >1 thread may reduce in varying order (1e-5 noise)
    )
    base.update(kw)
    return DistillConfig(**base)


def test_kd_loss_goes_down_and_card_loads(tmp_path):
    cfg = _cfg(
        tmp_path,
        student="lrface-mbf",
        epochs=4,
        lr=5e-4,
        losses=("kd", "crcd"),
        crcd_warmup_steps=4,
        warmup_steps=2,
        min_size=12,
        max_size=16,
        p_hr=0.0,
    )
    card = distill(cfg, progress=False)
    kd = [row["loss_kd"] for row in card["history"]]
    assert len(kd) == 4 and kd[-1] < kd[0] * 0.9, kd
    assert all(np.isfinite(row["loss_crcd"]) for row in card["history"])
    # the card is loadable as a model by path, and lives in the teacher's space
    emb = load_embedder(str(tmp_path / "run" / "lrface-mbf.json"))
    assert emb.input_size == 112 and emb.embedding_size == 128
    assert card["teacher"]["name"] == "mobilefacenet-arcface" and len(card["sha256"]) == 64
    assert card["data"]["images"] == 64 and card["training"]["losses"] == ["kd", "crcd"]
    assert card["license"].startswith("Apache-2.0")  # LFW + the Apache-2.0 teacher only


def test_resume_continues_exactly(tmp_path):
    kw = dict(
        student="lrface-tiny-16", epochs=2, lr=1e-3, losses=("kd", "crcd"), crcd_warmup_steps=2
    )
    straight = _cfg(tmp_path / "a", **kw)
    distill(straight, progress=False)
    # stop after the first epoch (4 steps of 16), then resume from its checkpoint
    first = _cfg(tmp_path / "b", max_steps=4, **kw)
    distill(first, progress=False)
    resumed = _cfg(tmp_path / "b", **kw)
    distill(resumed, resume=str(tmp_path / "b" / "run" / "last.pt"), progress=False)
    a = torch.load(tmp_path / "a" / "run" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"] == 8
    for k in a["bundle"]:
        assert torch.equal(a["bundle"][k], b["bundle"][k]), k
    assert [r["loss_kd"] for r in a["history"]] == [r["loss_kd"] for r in b["history"]]


def test_refuses_lfw_test_identities(tmp_path):
    lfw = LFW(LFW_ROOT)
    test_name = sorted(lfw.test_identities)[0]
    train_name = lfw.train_images()[0].split("/")[0]
    for name in (test_name, train_name):
        shutil.copytree(LFW_IMAGES / name, tmp_path / "faces" / name)
    with pytest.raises(DatasetError, match="test split"):
        distill(
            _cfg(tmp_path, data=str(tmp_path / "faces"), test_pairs=str(LFW_ROOT / "pairs.txt")),
            progress=False,
        )


def test_lfw_train_split_never_contains_test_identities():
    lfw = LFW(LFW_ROOT)
    train = lfw.train_images()
    assert len(train) == 6922
    assert not {p.split("/")[0] for p in train} & lfw.test_identities


def test_history_written(tmp_path):
    distill(_cfg(tmp_path, student="lrface-tiny-16", epochs=1, limit=32), progress=False)
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert hist[0]["epoch"] == 1 and "loss_kd" in hist[0]
    assert (tmp_path / "run" / "log.csv").read_text().startswith("epoch,")


def test_init_from_student_and_fused_targets(tmp_path):
    """--init starts from a trained student's weights (a narrower tiny architecture here);
    a student of another architecture is refused with a clear error."""
    from lrface.errors import LrfaceError

    kw = dict(student="lrface-tiny-16", tiny_width=32, tiny_head=256, epochs=1, max_steps=2)
    first = distill(_cfg(tmp_path / "a", **kw), progress=False)
    assert first["arch_kwargs"]["width"] == 32 and first["arch_kwargs"]["head_channels"] == 256
    weights = tmp_path / "a" / "run" / "lrface-tiny-16.pt"
    # lr 0: the weights that come out are the ones that went in (BN statistics aside)
    card = distill(
        _cfg(tmp_path / "b", init=str(weights), lr=0.0, targets="fused", **kw), progress=False
    )
    assert card["training"]["init"] == str(weights) and card["training"]["targets"] == "fused"
    assert card["init_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert first["init_sha256"] is None
    a = torch.load(weights, weights_only=True)
    b = torch.load(tmp_path / "b" / "run" / "lrface-tiny-16.pt", weights_only=True)
    convs = [k for k in a if k.endswith("weight") and a[k].dim() == 4]
    assert convs and all(torch.equal(a[k], b[k]) for k in convs)
    with pytest.raises(LrfaceError, match="do not fit"):
        distill(
            _cfg(
                tmp_path / "c", init=str(weights), student="lrface-tiny-16", epochs=1, max_steps=1
            ),
            progress=False,
        )


def test_holdout_folds_validate_on_unseen_identities():
    """--holdout-folds 1: fold 1's identities leave the training data and its 600 official
    pairs become the validation set (10 interleaved sub-folds); the teacher's weights in the
    torch student validate there as the teacher does at 32 px."""
    from lrface.distill.data import load_training_faces
    from lrface.distill.faces import holdout_identities
    from lrface.distill.validate import Validator
    from lrface.models import registry
    from lrface.models.students import mobilefacenet_from_onnx

    lfw = LFW(LFW_ROOT)
    held = holdout_identities(lfw, (1,))
    assert len(held) == 435
    faces = load_training_faces(LFW_ROOT, limit=24, holdout_folds=(1,))
    expected = [r for r in lfw.train_images() if r.split("/")[0] not in held][:24]
    assert faces.paths == expected and not set(faces.identities) & held
    with pytest.raises(DatasetError, match="among 1-5"):
        load_training_faces(LFW_ROOT, limit=4, holdout_folds=(6,))

    teacher = load_embedder("mobilefacenet-arcface")
    val = Validator(str(LFW_ROOT), {}, (32,), teacher, holdout_folds=(1,))
    assert len(val.pairs) == 600 and all(p.fold == 0 for p in val.pairs)
    assert sorted(set(val.folds.tolist())) == list(range(10))
    names = {p.a.split("/")[0] for p in val.pairs} | {p.b.split("/")[0] for p in val.pairs}
    assert names == held
    tspec = teacher.spec
    student = mobilefacenet_from_onnx(registry.locate(tspec)).to(memory_format=torch.channels_last)
    torch.set_num_threads(1)
    acc = val.run(student, InputFormat.of(tspec, 112))
    assert 95.0 <= acc["val_hr-lr_32"] <= 100.0, acc
    assert "folds 1 (identities held out" in val.description


def test_cli_refuses_test_folds_for_validation(tmp_path, capsys):
    from lrface.cli.main import main

    out = str(tmp_path / "run")
    rc = main(["distill", "--data", str(LFW_ROOT), "--holdout-folds", "7", "--out", out])
    assert rc != 0
    assert "among 1-5" in capsys.readouterr().err


def test_arc_term_over_training_identities_goes_down(tmp_path):
    """--loss kd,arc: ArcFace against the teacher's identity prototypes of the training
    faces; the term is logged, finite, and falls as a tiny student learns."""
    kw = dict(
        student="lrface-tiny-16",
        tiny_width=32,
        tiny_head=256,
        epochs=3,
        lr=2e-3,
        losses=("kd", "arc"),
        arc_weight=1.0,
        warmup_steps=2,
    )
    card = distill(_cfg(tmp_path, **kw), progress=False)
    arc = [row["loss_arc"] for row in card["history"]]
    assert len(arc) == 3 and all(np.isfinite(arc)) and arc[-1] < arc[0], arc
    assert card["training"]["losses"] == ["kd", "arc"] and card["training"]["arc_margin"] == 0.3
    # --arc-max-size: only views reduced to <= 2 px would count: none here (sizes 8-32)
    none = distill(_cfg(tmp_path / "n", **{**kw, "arc_max_size": 2}), progress=False)
    assert all(row["loss_arc"] == 0.0 for row in none["history"])


def test_unknown_loss_term_is_refused_by_the_api(tmp_path):
    """A misspelt term fails in ``distill`` itself (not only in the CLI) before any work."""
    with pytest.raises(LrfaceError, match=r"unknown term\(s\) \['arcc'\]; use kd, crcd"):
        distill(_cfg(tmp_path, losses=("kd", "arcc")), progress=False)


def test_online_teacher_in_torch_equals_the_onnx_teacher():
    """The torch copy of the teacher that makes online targets gives the ONNX teacher's
    embeddings, per view and flip-fused, on real LFW crops."""
    from lrface.distill.faces import lfw_crops
    from lrface.distill.online import OnlineTeacher

    lfw = LFW(LFW_ROOT)
    crops = lfw_crops(lfw, lfw.train_images()[:6])
    onnx_teacher = load_embedder("mobilefacenet-arcface", flip=False)
    for fuse in (False, True):
        online = OnlineTeacher(onnx_teacher, torch.device("cpu"), fuse_flips=fuse, use_torch=True)
        assert online.net is not None  # the torch copy (what a GPU run uses)
        assert OnlineTeacher(onnx_teacher, torch.device("cpu"), fuse).net is None  # CPU: ORT
        got = online(torch.from_numpy(crops)).numpy()
        onnx_teacher.flip = fuse
        want = onnx_teacher.embed_crops(crops)
        onnx_teacher.flip = False
        cos = (got * want).sum(1)
        assert got.shape == (6, 128) and cos.min() > 0.9999, cos
    # fused and per-view targets differ (the mirror adds information)
    fused_by_ort = OnlineTeacher(onnx_teacher, torch.device("cpu"), True)
    assert np.allclose(fused_by_ort(torch.from_numpy(crops)).numpy(), got, atol=1e-4)
    assert onnx_teacher.flip is False  # the ORT path restores the embedder's setting
    assert not np.allclose(
        fused_by_ort(torch.from_numpy(crops)).numpy(),
        onnx_teacher.embed_crops(crops),
        atol=1e-3,
    )


def test_mixup_blends_two_faces_and_trains(tmp_path):
    """--mixup: blended HR views carry no identity (idx -1, left out of arc), need online
    targets, and a short online-fused run with arc trains and records the knob."""
    from lrface.distill.data import load_training_faces
    from lrface.distill.dataset import DistillDataset
    from lrface.faces.degrade import RandomDegradation

    faces = load_training_faces(str(LFW_ROOT), None, 8)
    dummy = np.zeros((len(faces.crops), 128), np.float32)
    args = (faces, dummy, dummy, 112, (0.0,) * 3, (1.0,) * 3, RandomDegradation(12, 16))
    mixed = DistillDataset(*args, online=True, p_mix=1.0)
    plain = DistillDataset(*args, online=True, p_mix=0.0)
    for i in range(4):
        _, _, _, hr_m, idx_m, _ = mixed[i]
        _, _, _, hr_p, idx_p, _ = plain[i]
        assert idx_m == -1 and idx_p == i
        assert hr_m.shape == hr_p.shape == (112, 112, 3) and not torch.equal(hr_m, hr_p)
    with pytest.raises(ValueError, match="online"):
        DistillDataset(*args, online=False, p_mix=0.5)
    with pytest.raises(LrfaceError, match="--mixup"):
        distill(_cfg(tmp_path / "a", mixup=0.5, targets="fused", max_steps=1), progress=False)
    card = distill(
        _cfg(
            tmp_path / "b",
            student="lrface-mbf",
            limit=32,
            epochs=1,
            max_steps=2,
            targets="online-fused",
            mixup=0.5,
            losses=("kd", "crcd", "arc"),
            crcd_warmup_steps=1,
        ),
        progress=False,
    )
    row = card["history"][0]
    assert card["training"]["mixup"] == 0.5 and card["training"]["targets"] == "online-fused"
    assert all(np.isfinite(row[f"loss_{k}"]) for k in ("kd", "crcd", "arc"))


def test_widened_mbf_starts_as_its_narrow_init(tmp_path):
    """--mbf-expand 2 from a narrow --init: the wider student (1.8 M parameters) computes
    the init's function (Net2WiderNet), its card records the width, and it loads."""
    from lrface.distill.faces import lfw_crops
    from lrface.models.students import create_student, widen_mobilefacenet

    narrow = create_student("mbf")
    torch.nn.init.normal_(narrow.blocks[0].expand.weight, std=0.5)  # any weights will do
    x = torch.randn(2, 3, 112, 112)
    wide = widen_mobilefacenet(narrow.eval(), 2, seed=1).eval()
    assert wide.blocks[0].expand.out_channels == 2 * narrow.blocks[0].expand.out_channels
    assert torch.allclose(narrow(x), wide(x), atol=1e-4)

    card = distill(
        _cfg(tmp_path, init="lrface-mbf", mbf_expand=2, lr=0.0, epochs=1, max_steps=1),
        progress=False,
    )
    assert card["arch_kwargs"] == {"expand_mult": 2} and card["parameters"] > 1_700_000
    with pytest.raises(LrfaceError, match="--mbf-expand"):
        distill(_cfg(tmp_path / "t", student="lrface-tiny-16", mbf_expand=2), progress=False)
    lfw = LFW(LFW_ROOT)
    crops = lfw_crops(lfw, lfw.train_images()[:4])
    a = load_embedder("lrface-mbf").embed_crops(crops)
    b = load_embedder(str(tmp_path / "run" / "lrface-mbf.json")).embed_crops(crops)
    assert (a * b).sum(1).min() > 0.9999
    # a second wide stage starts from the wide weights; a narrow run cannot take them
    wide_pt = str(tmp_path / "run" / "lrface-mbf.pt")
    again = distill(
        _cfg(tmp_path / "w", init=wide_pt, mbf_expand=2, lr=0.0, epochs=1, max_steps=1),
        progress=False,
    )
    assert again["arch_kwargs"] == {"expand_mult": 2}
    with pytest.raises(LrfaceError, match="only widening"):
        distill(_cfg(tmp_path / "n", init=wide_pt, epochs=1, max_steps=1), progress=False)


def test_lr_teacher_embeds_what_the_student_sees(tmp_path):
    """--lr-teacher: a second teacher (here the shipped lrface-mbf) embeds the tiny
    student's own 16 px input, resized as that model is deployed; the term trains and the
    card names the model and its sha256."""
    from lrface.distill.data import load_training_faces
    from lrface.distill.dataset import DistillDataset
    from lrface.distill.online import OnlineTeacher
    from lrface.faces.degrade import RandomDegradation
    from lrface.models.preprocess import to_input

    faces = load_training_faces(str(LFW_ROOT), None, 6)
    dummy = np.zeros((len(faces.crops), 128), np.float32)
    fmt = (16, (127.5,) * 3, (127.5,) * 3, RandomDegradation(8, 32))
    with_view = DistillDataset(faces, dummy, dummy, *fmt, student_view=True)
    without = DistillDataset(faces, dummy, dummy, *fmt)
    views = []
    for i in range(6):
        x, _, _, _, _, view = with_view[i]
        assert view.dtype == torch.uint8 and view.shape == (16, 16, 3)
        assert torch.equal(x, without[i][0])  # the same draws: the view is only reported
        assert np.array_equal(x.numpy(), to_input(view.numpy(), with_view.input_format)[0])
        assert without[i][5].numel() == 0
        views.append(view)
    mbf = load_embedder("lrface-mbf", flip=True)
    batch = torch.stack(views)
    want = mbf.embed_crops(batch.numpy())  # 16 px -> 112 as verify resizes a 16 px crop
    for use_torch in (False, True):
        got = OnlineTeacher(mbf, torch.device("cpu"), True, use_torch=use_torch)(batch).numpy()
        assert (got * want).sum(1).min() > 0.9999

    card = distill(
        _cfg(
            tmp_path,
            student="lrface-tiny-16",
            tiny_width=32,
            tiny_head=256,
            limit=32,
            epochs=1,
            max_steps=2,
            lr_teacher="lrface-mbf",
            lr_teacher_weight=0.5,
        ),
        progress=False,
    )
    assert np.isfinite(card["history"][0]["loss_lr_teacher"])
    assert card["lr_teacher"]["name"] == "lrface-mbf" and len(card["lr_teacher"]["sha256"]) == 64
    assert card["training"]["lr_teacher_weight"] == 0.5
    with pytest.raises(LrfaceError, match="--lr-teacher-weight"):
        distill(_cfg(tmp_path / "w", lr_teacher="lrface-mbf", lr_teacher_weight=0.0))
    # a detector, or a student of another teacher's space, is refused before any data work
    with pytest.raises(LrfaceError, match="not a recogniser"):
        distill(_cfg(tmp_path / "y", lr_teacher="yunet"))
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(PACKAGE_WEIGHTS / "lrface-tiny-16.onnx", other / "lrface-tiny-16.onnx")
    card = json.loads((PACKAGE_WEIGHTS / "lrface-tiny-16.json").read_text())
    card.update(name="other-space", teacher={"name": "some-other-teacher", "sha256": "0" * 64})
    card.pop("torch_weights", None)
    (other / "other-space.json").write_text(json.dumps(card))
    with pytest.raises(LrfaceError, match="does not embed into the space"):
        distill(_cfg(tmp_path / "o", lr_teacher=str(other / "other-space.json")))
