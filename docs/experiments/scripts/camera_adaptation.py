"""The camera-adaptation study of docs/experiments/camera-adaptation.md (rules there).

    LRFACE_HOME=../shared python docs/experiments/scripts/camera_adaptation.py \
        [--method bn|degradation-match]

Round 1 (``--method bn``, the default): adapts ``lrface-tiny-16``'s batch-norm statistics
(:func:`lrface.distill.adapt.bn_statistics_from`) to 2,000 LFW train-split faces under
camera A.  Round 2 (``--method degradation-match``): the same camera faces only estimate
the camera (:func:`lrface.distill.adapt.estimate_with_reference`; the estimate of the
same faces under camera B is printed as a check), then the student is fine-tuned
(:func:`lrface.distill.camera_finetune.finetune_for_camera`, the rule's settings) on the
LFW train split loaded as ``adapt --hr-data ../shared/data/lfw`` loads it; the ``bn``
arm is scored beside it.  Base and adapted students are scored on the 3,000 test-split
pairs (hr-lr, teacher HR side) under camera A, camera B and clean 16 px.  Prints one
JSON object; ``--save DIR`` keeps the adapted weights.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[3]
SIZE = 16
CAMERAS = {
    "A": dict(gauss_sigma=0.6, motion_length=2.0, motion_angle=30.0, read_std=3.0,
              shot_gain=0.10, jpeg_quality=50),
    "B": dict(gauss_sigma=0.9, motion_length=1.0, motion_angle=0.0, read_std=5.0,
              shot_gain=0.25, jpeg_quality=35),
}  # fmt: skip


def camera(crops: np.ndarray, name: str | None, seed: int) -> np.ndarray:
    """(N, 16, 16, 3) uint8 BGR: each 112x112 crop area-reduced to 16 px, then camera
    ``name``'s fixed blur/noise/JPEG (None: clean); noise seeded by (seed, index)."""
    from lrface.faces.degrade import Degradation, RealisticDraw, apply_realistic, degrade

    out = []
    for i, c in enumerate(crops):
        small = degrade(c, Degradation(size=SIZE))
        if name is not None:
            rng = np.random.default_rng([seed, i])
            small = apply_realistic(small, RealisticDraw(**CAMERAS[name]), rng)
        out.append(small)
    return np.stack(out)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", choices=("bn", "degradation-match"), default="bn")
    ap.add_argument("--save", default=None, help="folder for the adapted weights")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    import copy

    import torch

    from lrface.datasets.lfw import LFW
    from lrface.distill import guard
    from lrface.distill.adapt import bn_statistics_from
    from lrface.distill.faces import lfw_faces
    from lrface.distill.validate import Validator
    from lrface.models.loader import load_embedder
    from lrface.models.preprocess import InputFormat
    from lrface.models.registry import get_spec, torch_weights
    from lrface.models.torch_embedder import load_student_module
    from lrface.scores import kfold_accuracy

    torch.set_num_threads(1)
    shared = Path(os.environ.get("LRFACE_HOME", REPO.parent / "shared"))
    lfw = LFW(shared / "data" / "lfw")
    teacher = load_embedder("mobilefacenet-arcface", flip=False)
    spec = get_spec("lrface-tiny-16")
    base = load_student_module(spec, torch_weights(spec))
    fmt = InputFormat.of(spec)

    train = lfw.train_images()
    got = lfw_faces(lfw, train)
    ok = np.flatnonzero(~got["fallback"].astype(bool))
    pick = np.sort(np.random.default_rng(0).choice(ok, 2000, replace=False))
    cam_faces = camera(got["crops"][pick], "A", seed=1)
    adapted = copy.deepcopy(base)
    layers = bn_statistics_from(adapted, cam_faces, fmt)
    arms = {"base": base, "adapted": adapted}
    res: dict[str, object] = {"adapt_faces": len(pick), "bn_layers": layers}
    if args.method == "degradation-match":
        arms = {"base": base, "bn": adapted, "adapted": _degradation_match(
            base, cam_faces, camera(got["crops"][pick], "B", seed=1), teacher, shared, fmt,
            res, args.save)}  # fmt: skip

    pairs = lfw.split_pairs("test")
    rels = sorted({p.a for p in pairs} | {p.b for p in pairs})
    emb, _ = guard.whole_lfw_embeddings(lfw, rels, teacher, "scrfd-2.5g")  # flip-fused teacher
    crops = lfw_faces(lfw, rels)["crops"]
    index = {r: i for i, r in enumerate(rels)}
    hr = emb[[index[p.a] for p in pairs]]
    second = crops[[index[p.b] for p in pairs]]
    labels = np.array([p.same for p in pairs], np.int64)
    folds = np.array([p.fold for p in pairs])
    for cond in ("A", "B", None):
        probes = camera(second, cond, seed=2)
        row = {}
        for arm, net in arms.items():
            e = Validator.student_embed(net, probes, fmt)
            acc = kfold_accuracy((hr * e).sum(1), labels, folds=folds)
            row[arm] = {"mean": round(100 * acc["accuracy_mean"], 2),
                        "std": round(100 * acc["accuracy_std"], 2)}  # fmt: skip
        row["delta"] = round(row["adapted"]["mean"] - row["base"]["mean"], 2)
        if "bn" in row:
            row["delta_bn"] = round(row["bn"]["mean"] - row["base"]["mean"], 2)
        res[f"camera {cond}" if cond else "clean 16 px"] = row
    print(json.dumps(res, indent=1))


def _degradation_match(
    base: Any, cam_a: np.ndarray, cam_b: np.ndarray, teacher: Any, shared: Path, fmt: Any,
    res: dict[str, object], save: str | None,
) -> Any:  # fmt: skip
    """Round 2's arm: the estimate from ``cam_a`` (and, as a check, ``cam_b``), then the
    fine-tuned copy of ``base``; records both in ``res``."""
    import copy
    import time

    import torch

    from lrface.distill.adapt import _hr_config, estimate_with_reference
    from lrface.distill.camera_finetune import FinetuneSettings, finetune_for_camera
    from lrface.distill.data import training_data_for

    t0 = time.time()
    cfg = _hr_config(str(shared / "data" / "lfw"), "runs/unused", teacher.spec.name, 2)
    td = training_data_for(cfg, teacher, progress=False)
    res["hr_faces"] = len(td.faces)
    est = estimate_with_reference(cam_a, td.faces.crops, SIZE)
    res["estimate_A"] = est.card() | {"true": CAMERAS["A"]}
    res["estimate_B_check"] = estimate_with_reference(cam_b, td.faces.crops, SIZE).card() | {
        "true": CAMERAS["B"]
    }
    res["estimate_seconds"] = round(time.time() - t0, 1)
    print(json.dumps({"estimate_A": res["estimate_A"]}), flush=True)
    net = copy.deepcopy(base)
    t0 = time.time()
    settings = FinetuneSettings()
    res["finetune"] = settings.card()
    res["loss_log"] = finetune_for_camera(net, td.faces.crops, td.fused, est.draw, fmt, settings)
    res["finetune_seconds"] = round(time.time() - t0, 1)
    if save:
        Path(save).mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), Path(save) / "lrface-tiny-16-adapted.pt")
    return net


if __name__ == "__main__":
    main()
