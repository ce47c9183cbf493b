"""The camera-adaptation study of docs/experiments/camera-adaptation.md (rule there).

    LRFACE_HOME=../shared python docs/experiments/scripts/camera_adaptation.py

Adapts ``lrface-tiny-16``'s batch-norm statistics (:func:`lrface.distill.adapt.bn_statistics_from`)
to 2,000 LFW train-split faces under camera A and scores base and adapted students on the
3,000 test-split pairs (hr-lr, teacher HR side) under camera A, camera B and clean 16 px.
Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

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
    adapted = copy.deepcopy(base)
    layers = bn_statistics_from(adapted, camera(got["crops"][pick], "A", seed=1), fmt)

    pairs = lfw.split_pairs("test")
    rels = sorted({p.a for p in pairs} | {p.b for p in pairs})
    emb, _ = guard.whole_lfw_embeddings(lfw, rels, teacher, "scrfd-2.5g")  # flip-fused teacher
    crops = lfw_faces(lfw, rels)["crops"]
    index = {r: i for i, r in enumerate(rels)}
    hr = emb[[index[p.a] for p in pairs]]
    second = crops[[index[p.b] for p in pairs]]
    labels = np.array([p.same for p in pairs], np.int64)
    folds = np.array([p.fold for p in pairs])
    res: dict[str, object] = {"adapt_faces": len(pick), "bn_layers": layers}
    for cond in ("A", "B", None):
        probes = camera(second, cond, seed=2)
        row = {}
        for arm, net in (("base", base), ("adapted", adapted)):
            e = Validator.student_embed(net, probes, fmt)
            acc = kfold_accuracy((hr * e).sum(1), labels, folds=folds)
            row[arm] = {"mean": round(100 * acc["accuracy_mean"], 2),
                        "std": round(100 * acc["accuracy_std"], 2)}  # fmt: skip
        row["delta"] = round(row["adapted"]["mean"] - row["base"]["mean"], 2)
        res[f"camera {cond}" if cond else "clean 16 px"] = row
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
