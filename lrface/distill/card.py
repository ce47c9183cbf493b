"""The end of a distillation run: ``<out>/<name>.pt`` (the weights of the best epoch), its
verification threshold calibrated on the validation pairs, and the ``<name>.json`` card
that the registry loads (architecture, preprocessing, teacher, data, training settings,
history, git commit)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lrface.distill.config import DistillConfig
from lrface.distill.data import TrainingData, display_path
from lrface.distill.holdout import CalibrationPairs
from lrface.distill.students import Student
from lrface.distill.validate import Validator
from lrface.faces.degrade import Degradation, degrade
from lrface.io.fileio import atomic_write, sha256_file, write_json_atomic
from lrface.models.interface import Embedder
from lrface.models.preprocess import InputFormat
from lrface.models.registry import get_spec
from lrface.models.students import count_parameters
from lrface.scores import best_threshold


def write_card(
    cfg: DistillConfig,
    student: Student,
    teacher: Embedder,
    td: TrainingData,
    history: list[dict[str, Any]],
    validator: Validator | None,
) -> dict[str, Any]:
    """Load the best epoch's weights (``best.pt``) into the student, write them to
    ``<out>/<name>.pt``, calibrate the threshold (with a validator) and write the card
    ``<out>/<name>.json``; returns the card.  The student ends on the CPU."""
    out, name = Path(cfg.out), cfg.model_name
    fmt = InputFormat.of(teacher.spec, cfg.resolved_input_size())  # the teacher's entry
    best_epoch, device = _load_best(student.net, out / "best.pt")
    net = student.net.cpu().eval()
    weights = out / f"{name}.pt"
    with atomic_write(weights, "wb") as fh:  # saved first: calibration may be interrupted
        torch.save(net.state_dict(), fh)
    calib: dict[str, Any] = {
        "threshold": None,
        "threshold_note": "not calibrated (no LFW validation pairs, no held-out identities)",
    }
    pairs = validator if validator is not None else td.held.pairs() if td.held else None
    if pairs is not None:  # on the training device (a GPU calibrates in seconds)
        calib = calibrate_threshold(pairs, net.to(device), fmt)
        net.cpu()
    if validator is None and td.held is not None:
        calib["calibration_holdout"] = td.held.card()
    card = {
        **_model_entries(cfg, student, teacher, weights, fmt),
        **calib,
        **_run_entries(cfg, student, teacher, td, history, validator, best_epoch),
    }
    write_json_atomic(out / f"{name}.json", card)
    tqdm.write(json.dumps({"card": str(out / f"{name}.json"), "threshold": card["threshold"]}))
    return card


def _load_best(net: torch.nn.Module, best_path: Path) -> tuple[int | None, torch.device]:
    """Load the student weights of ``best_path`` (a ``best.pt``) into ``net`` when the
    file exists; returns ``(its epoch or None, the device net is on)``."""
    if not best_path.is_file():
        return None, next(net.parameters()).device
    best = torch.load(best_path, map_location="cpu", weights_only=True)
    net.load_state_dict(best["model"])
    return int(best["epoch"]), next(net.parameters()).device


def _model_entries(
    cfg: DistillConfig, student: Student, teacher: Embedder, weights: Path, fmt: InputFormat
) -> dict[str, Any]:
    """The card's description of the model: ``name`` ... ``preprocessing`` (architecture,
    the ``weights`` file and its sha256, sizes, input ``fmt``)."""
    return {
        "name": cfg.model_name,
        "kind": "student",
        "runtime": "torch",
        "arch": cfg.arch,
        "arch_kwargs": student.arch_kwargs,
        "weights_file": weights.name,
        "sha256": sha256_file(weights),
        "parameters": count_parameters(student.net),
        "input_size": cfg.resolved_input_size(),
        "embedding_size": teacher.embedding_size,
        "preprocessing": {
            "color": fmt.color,
            "mean": [float(m) for m in fmt.mean32],
            "std": [float(s) for s in fmt.std32],
            "note": "aligned ArcFace-template crop; resize to input_size (bicubic up, area down); "
            "(pixel - mean) / std; flip fusion at inference",
        },
    }


def _run_entries(
    cfg: DistillConfig,
    student: Student,
    teacher: Embedder,
    td: TrainingData,
    history: list[dict[str, Any]],
    validator: Validator | None,
    best_epoch: int | None,
) -> dict[str, Any]:
    """The card's record of how the model was made: ``teacher`` ... ``created`` (teachers,
    data, settings, history, validation, git commit, licence, UTC time)."""
    return {
        "teacher": {"name": teacher.spec.name, "sha256": teacher.spec.sha256},
        **_lr_teacher_entry(cfg),
        "data": data_card(cfg, td),
        "training": cfg.training_card(),
        "init_sha256": student.init_sha256,
        "epochs_trained": history[-1]["epoch"] if history else 0,
        "best_epoch": best_epoch,
        "validation": history[-1] if history else {},
        "validation_pairs": validator.description if validator is not None else None,
        "history": history,
        "git_commit": _git_commit(),
        "license": weights_license(cfg, td),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _lr_teacher_entry(cfg: DistillConfig) -> dict[str, Any]:
    """``{"lr_teacher": {name, sha256}}`` for a run with ``--lr-teacher``, else ``{}``."""
    if cfg.lr_teacher is None:
        return {}
    spec = get_spec(cfg.lr_teacher)
    return {"lr_teacher": {"name": spec.name, "sha256": spec.sha256}}


def weights_license(cfg: DistillConfig, td: TrainingData) -> str:
    """The card's ``license``: ``--weights-license`` when given; Apache-2.0 when every
    source is an LFW copy (the teacher is Apache-2.0); else the weights inherit the terms
    of the training data, whose sources are named."""
    if cfg.weights_license:
        return cfg.weights_license
    others = [p.source.describe() for p in td.parts if p.source.kind != "lfw"]
    if not others:
        return "Apache-2.0 (weights distilled by lrface from the Apache-2.0 teacher)"
    return (
        "inherits the terms of the training data (" + ", ".join(others) + "): check each "
        "source's licence before use; set --weights-license to record it"
    )


def calibrate_threshold(
    pairs: CalibrationPairs | Validator,
    model: torch.nn.Module,
    fmt: InputFormat,
    sizes: tuple[int, ...] = (12, 16, 20, 24, 32),
) -> dict[str, Any]:
    """The card's thresholds, each of maximum accuracy on ``pairs`` (LFW validation pairs,
    or pairs of held-out identities): ``threshold`` on student-vs-student pairs, HR-HR
    plus HR-LR at each of ``sizes`` (the situations ``lrface verify --model`` meets), and
    ``threshold_vs_teacher`` on teacher-HR vs student-LR pairs at each of ``sizes`` (a
    face embedded by the teacher, the other by the student).  Returns them with
    ``calibration_accuracy`` (%), ``threshold_vs_teacher_accuracy`` (%) and notes."""
    embed = Validator.student_embed
    crops, a, b = _pair_faces(pairs)
    hr_emb = embed(model, crops, fmt)  # every face once, however many pairs it is in
    ea = hr_emb[a]
    scores = [(ea * hr_emb[b]).sum(1)]
    vs_teacher = []
    second = np.unique(b)  # only the pairs' second faces are reduced
    at = np.searchsorted(second, b)
    for s in sizes:
        small = np.stack([degrade(crops[i], Degradation(size=s)) for i in second])
        lr = embed(model, small, fmt)[at]
        scores.append((ea * lr).sum(1))
        vs_teacher.append((pairs.hr * lr).sum(1))
    thr, acc = best_threshold(np.concatenate(scores), np.tile(pairs.labels, len(scores)))
    thr_t, acc_t = best_threshold(np.concatenate(vs_teacher), np.tile(pairs.labels, len(sizes)))
    # "accept all" / "reject all" come back as min - 1 / max + 1: a card holds a cosine
    thr, thr_t = float(np.clip(thr, -1.0, 1.0)), float(np.clip(thr_t, -1.0, 1.0))
    px = ",".join(map(str, sizes))
    return {
        "threshold": round(float(thr), 4),
        "calibration_accuracy": round(100 * acc, 2),
        "threshold_note": f"max accuracy on {pairs.description}, student vs student, "
        f"HR-HR plus HR-LR at {px} px (area-down)",
        "threshold_vs_teacher": round(float(thr_t), 4),
        "threshold_vs_teacher_accuracy": round(100 * acc_t, 2),
        "threshold_vs_teacher_note": f"max accuracy on {pairs.description}: first image HR "
        f"by the teacher (flip-fused), second reduced to {px} px (area) by the student",
    }


def _pair_faces(
    pairs: CalibrationPairs | Validator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(crops (K, 112, 112, 3) uint8 BGR, a int64 (P,), b int64 (P,))``: each face of
    ``pairs`` once and the rows of each pair's two faces (held-out pairs reuse a few
    faces thousands of times; LFW validation pairs have their crops per pair)."""
    if isinstance(pairs, CalibrationPairs):
        return pairs.crops, pairs.a, pairs.b
    n = len(pairs.crops_a)
    return np.concatenate([pairs.crops_a, pairs.crops_b]), np.arange(n), np.arange(n, 2 * n)


_SPLITS = {
    "labelled": "user folder ROOT/<identity>/<images>",
    "unlabelled": "unlabelled photos (no identities)",
    "rec": "insightface RecordIO pack (pre-aligned 112x112)",
}


def data_card(cfg: DistillConfig, td: TrainingData) -> dict[str, Any]:
    """The card's ``data`` entry: every source (kind, path, weight, images used, faces
    skipped for no detection, faces dropped by the test-identity guard) and totals."""
    lfw = "LFW train split (identities disjoint from pairs folds 6-10)" + (
        f" minus the identities of folds {','.join(map(str, cfg.holdout_folds))}"
        if cfg.holdout_folds
        else ""
    )
    what = {"lfw": lfw, **_SPLITS}
    paths = [display_path(p.source.path) for p in td.parts]
    labels = td.faces.labels
    return {
        "path": paths[0] if len(paths) == 1 else paths,
        "split": "; ".join(what[p.source.kind] for p in td.parts),
        "images": len(td.faces),
        "identities": len(np.unique(labels[labels >= 0])),
        "unlabelled_images": int((labels < 0).sum()),
        **td.card(display_path),
        **({"box_views": td.views} if td.views else {}),
    }


def _git_commit() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None
