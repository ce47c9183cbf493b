"""Round 3 of docs/experiments/camera-adaptation.md (rule there): the fine-tuning length of
``degradation-match`` chosen on held-out validation identities.

    # one candidate (run once per length; they are independent):
    LRFACE_HOME=../shared python docs/experiments/scripts/camera_adaptation_round3.py \\
        train --steps 600 --save runs/camera-adapt3
    # the choice on folds 1-2 and the chosen candidate's test scoring:
    LRFACE_HOME=../shared python docs/experiments/scripts/camera_adaptation_round3.py \\
        score --save runs/camera-adapt3 --steps 600,1800

``train``: the HR faces are the LFW train split minus the identities of folds 1-2
(``holdout_folds=(1, 2)``); the camera is estimated from round 1's 2,000 camera-A faces;
the student is fine-tuned with round 2's settings but ``--steps``; writes
``<save>/steps<N>.pt`` and ``<save>/steps<N>.json``.  ``score``: validation on the 1,200
pairs of folds 1-2 (hr-lr, teacher HR side, camera A with noise seed 3 and clean 16 px;
10-fold CV with fold = pair index mod 10), the rule's choice, then the chosen candidate on
the 3,000 test pairs (camera A, camera B, clean 16 px).  Prints JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from camera_adaptation import CAMERAS, SIZE, camera  # noqa: E402

HOLDOUT = (1, 2)


def _common() -> dict[str, Any]:
    import torch

    from lrface.datasets.lfw import LFW
    from lrface.models.loader import load_embedder
    from lrface.models.preprocess import InputFormat
    from lrface.models.registry import get_spec, torch_weights
    from lrface.models.torch_embedder import load_student_module

    torch.set_num_threads(1)
    shared = Path(os.environ.get("LRFACE_HOME", REPO.parent / "shared"))
    spec = get_spec("lrface-tiny-16")
    return {
        "shared": shared,
        "lfw": LFW(shared / "data" / "lfw"),
        "teacher": load_embedder("mobilefacenet-arcface", flip=False),
        "spec": spec,
        "base": load_student_module(spec, torch_weights(spec)),
        "fmt": InputFormat.of(spec),
    }


def train(steps: int, save: Path) -> None:
    import torch

    from lrface.distill.adapt import estimate_with_reference
    from lrface.distill.camera_finetune import FinetuneSettings, finetune_for_camera
    from lrface.distill.config import DistillConfig
    from lrface.distill.data import training_data_for
    from lrface.distill.faces import lfw_faces

    c = _common()
    lfw = c["lfw"]
    got = lfw_faces(lfw, lfw.train_images())
    ok = np.flatnonzero(~got["fallback"].astype(bool))
    pick = np.sort(np.random.default_rng(0).choice(ok, 2000, replace=False))  # round 1's
    cam_a = camera(got["crops"][pick], "A", seed=1)
    cfg = DistillConfig(data=str(c["shared"] / "data" / "lfw"), out="runs/unused",
                        teacher=c["teacher"].spec.name, holdout_folds=HOLDOUT,
                        calib_identities=0)  # fmt: skip
    td = training_data_for(cfg, c["teacher"], progress=False)
    t0 = time.time()
    est = estimate_with_reference(cam_a, td.faces.crops, SIZE)
    res: dict[str, Any] = {"steps": steps, "hr_faces": len(td.faces), "holdout_folds": HOLDOUT,
                           "estimate_A": est.card() | {"true": CAMERAS["A"]},
                           "estimate_seconds": round(time.time() - t0, 1)}  # fmt: skip
    print(json.dumps(res), flush=True)
    net = copy.deepcopy(c["base"])
    t0 = time.time()
    settings = FinetuneSettings(steps=steps)
    res["loss_log"] = finetune_for_camera(
        net, td.faces.crops, td.fused, est.draw, c["fmt"], settings
    )
    res["finetune_seconds"] = round(time.time() - t0, 1)
    save.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), save / f"steps{steps}.pt")
    (save / f"steps{steps}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


def _pairs_data(c: dict[str, Any], pairs: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Teacher HR embeddings of the first images, aligned crops of the second, labels."""
    from lrface.distill import guard
    from lrface.distill.faces import lfw_faces

    rels = sorted({p.a for p in pairs} | {p.b for p in pairs})
    emb, _ = guard.whole_lfw_embeddings(c["lfw"], rels, c["teacher"], "scrfd-2.5g")
    crops = lfw_faces(c["lfw"], rels)["crops"]
    index = {r: i for i, r in enumerate(rels)}
    hr = emb[[index[p.a] for p in pairs]]
    second = crops[[index[p.b] for p in pairs]]
    return hr, second, np.array([p.same for p in pairs], np.int64)


def _acc(net: Any, fmt: Any, hr: np.ndarray, probes: np.ndarray, labels: np.ndarray,
         folds: np.ndarray) -> dict[str, float]:  # fmt: skip
    from lrface.distill.validate import Validator
    from lrface.scores import kfold_accuracy

    e = Validator.student_embed(net, probes, fmt)
    acc = kfold_accuracy((hr * e).sum(1), labels, folds=folds)
    return {
        "mean": round(100 * acc["accuracy_mean"], 2),
        "std": round(100 * acc["accuracy_std"], 2),
    }


def score(save: Path, lengths: list[int]) -> None:
    import torch

    c = _common()
    base, fmt = c["base"], c["fmt"]
    cands = {}
    for n in lengths:
        net = copy.deepcopy(base)
        net.load_state_dict(torch.load(save / f"steps{n}.pt", weights_only=True))
        net.eval()
        cands[n] = net
    vpairs = c["lfw"].pairs_in_folds(HOLDOUT)
    hr, second, labels = _pairs_data(c, vpairs)
    vfolds = np.arange(len(vpairs)) % 10
    val: dict[str, Any] = {}
    for cond in ("A", None):
        probes = camera(second, cond, seed=3)
        key = f"camera {cond}" if cond else "clean 16 px"
        val[key] = {"base": _acc(base, fmt, hr, probes, labels, vfolds)}
        for n, net in cands.items():
            val[key][f"steps{n}"] = _acc(net, fmt, hr, probes, labels, vfolds)
    res: dict[str, Any] = {"validation_pairs": len(vpairs), "validation": val}
    floor = val["clean 16 px"]["base"]["mean"] - 0.3
    ok = [n for n in lengths if val["clean 16 px"][f"steps{n}"]["mean"] >= floor]
    if not ok:
        res["chosen"] = None
        print(json.dumps(res, indent=1))
        return
    chosen = max(sorted(ok), key=lambda n: val["camera A"][f"steps{n}"]["mean"])  # tie: fewer
    res["chosen"] = chosen
    pairs = c["lfw"].split_pairs("test")
    hr, second, labels = _pairs_data(c, pairs)
    folds = np.array([p.fold for p in pairs])
    for cond in ("A", "B", None):
        probes = camera(second, cond, seed=2)  # the test probes of rounds 1-2
        row = {"base": _acc(base, fmt, hr, probes, labels, folds),
               "adapted": _acc(cands[chosen], fmt, hr, probes, labels, folds)}  # fmt: skip
        row["delta"] = round(row["adapted"]["mean"] - row["base"]["mean"], 2)
        res[f"test camera {cond}" if cond else "test clean 16 px"] = row
    print(json.dumps(res, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=("train", "score"))
    ap.add_argument("--steps", required=True, help="train: one length; score: the lengths")
    ap.add_argument("--save", required=True, type=Path)
    a = ap.parse_args()
    if a.phase == "train":
        train(int(a.steps), a.save)
    else:
        score(a.save, [int(s) for s in a.steps.split(",")])


if __name__ == "__main__":
    main()
