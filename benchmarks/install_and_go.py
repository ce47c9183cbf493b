"""Install-and-go speed, in one run on this machine: `lrface verify` as a new process and
`lrface embed` crops/s per model, shipped ONNX files vs the torch path.

    python benchmarks/install_and_go.py --data ../shared/data/lfw --out runs/speed \
        [--runs 7] [--n 5000] [--size 16] [--seconds 8] [--rounds 5] [--json runs/speed/speed.json]

1. **verify wall time**: ``lrface verify a.jpg b.jpg`` (LFW ``Abel_Pacheco_0001.jpg`` vs
   ``Abel_Pacheco_0004.jpg`` shrunk to 36x36: the README's example) started as a new
   process ``--runs`` times; median and min wall seconds, (a) with ``LRFACE_HOME`` =
   ``../shared`` (SCRFD-2.5g found) and (b) with an empty ``LRFACE_HOME`` (a new user:
   YuNet, shipped).  Also whether torch was imported (``python -X importtime``).
2. **embed crops/s**: the first ``--n`` LFW images as ``--size`` px crops (SCRFD-2.5g
   aligned 112x112 face reduced with area interpolation, one PNG each), embedded with
   ``lrface embed DIR --no-detect --out X.npz --batch-size 256`` per model as shipped
   (ONNX, flip fusion) and through torch (``--model weights/NAME.pt``); the run's
   ``crops_per_second`` (decode + resize + embed + write, model loading excluded).
   Every student's two runs lie between two runs of the teacher (T s1 T s2 T ...); a
   student's "x teacher" is against the mean of those two, the teacher's row is the mean
   of all its runs (each in ``--json``), so a change in the machine's load shows.
3. **model-only crops/s** at batch 256 (in-process, the same crops in memory, flip
   fusion as shipped): ratio of each model to the teacher, ONNX and torch.  All models
   are loaded first, then measured in ``--rounds`` interleaved rounds of
   ``--seconds / --rounds`` each, so every ratio compares the same stretch of time.

The 1/5/15-minute load averages (``os.getloadavg``, as ``uptime`` prints) are printed
at the start and after each part.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

MODELS = (
    "mobilefacenet-arcface",
    "lrface-mbf",
    "lrface-tiny-16",
    "lrface-tiny-24",
    "lrface-tiny-32",
)
REPO = Path(__file__).resolve().parents[1]


def verify_times(a: Path, b: Path, home: str, runs: int) -> dict:
    env = dict(os.environ, LRFACE_HOME=home)
    walls, verdicts = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(
            [sys.executable, "-m", "lrface", "verify", str(a), str(b)],
            capture_output=True,
            text=True,
            env=env,
        )
        walls.append(time.perf_counter() - t0)
        verdicts.append((p.returncode, p.stdout.strip()))
    imp = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lrface", "verify", str(a), str(b)],
        capture_output=True,
        text=True,
        env=env,
    )
    return {
        "median_s": round(statistics.median(walls), 3),
        "min_s": round(min(walls), 3),
        "runs": runs,
        "exit": verdicts[0][0],
        "answer": verdicts[0][1],
        "torch_imported": "| torch\n" in imp.stderr or " torch\n" in imp.stderr,
    }


def write_crops(lfw_root: Path, out: Path, n: int, size: int) -> Path:
    from lrface.datasets.facecache import aligned_crops
    from lrface.datasets.lfw import LFW
    from lrface.faces.degrade import Degradation, degrade

    folder = out / f"crops{size}"
    if folder.is_dir() and sum(1 for _ in folder.rglob("*.png")) == n:
        return folder
    lfw = LFW(lfw_root)
    rels = lfw.all_images[:n]
    faces = aligned_crops(lfw.image_dir, lfw.all_images)
    pos = {r: i for i, r in enumerate(lfw.all_images)}
    for r in rels:
        p = folder / Path(r).with_suffix(".png")
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), degrade(faces["crops"][pos[r]], Degradation(size=size)))
    return folder


def embed_cli(folder: Path, model: str, out: Path) -> float:
    res = out / "emb.npz"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "lrface",
            "embed",
            str(folder),
            "--no-detect",
            "--out",
            str(res),
            "--model",
            model,
            "--batch-size",
            "256",
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        raise SystemExit(f"embed {model} failed: {p.stderr.strip()}")
    res.unlink(missing_ok=True)
    return float(json.loads(p.stdout.strip().splitlines()[-1])["crops_per_second"])


def model_only(
    models: list[str], crops: list[np.ndarray], seconds: float, rounds: int
) -> dict[str, float]:
    """crops/s of each model on ``crops[:256]`` in one call per batch, ``rounds``
    interleaved rounds of ``seconds / rounds`` per model (all loaded and warmed first)."""
    from lrface.models.loader import load_embedder

    x = crops[:256]
    embs = {m: load_embedder(m, batch_size=256) for m in models}
    for emb in embs.values():
        emb.embed_crops(x)
    n = dict.fromkeys(models, 0)
    t = dict.fromkeys(models, 0.0)
    for _ in range(rounds):
        for m, emb in embs.items():
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds / rounds:
                emb.embed_crops(x)
                n[m] += len(x)
            t[m] += time.perf_counter() - t0
    return {m: n[m] / t[m] for m in models}


def load() -> str:
    return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--out", default="runs/speed")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lfw_images = Path(args.data) / "lfw-deepfunneled"
    a = lfw_images / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg"
    b = out / "Abel_Pacheco_0004_36x36.jpg"
    img = cv2.imread(str(lfw_images / "Abel_Pacheco" / "Abel_Pacheco_0004.jpg"))
    cv2.imwrite(str(b), cv2.resize(img, (36, 36), interpolation=cv2.INTER_AREA))
    report: dict = {"cpu_count": os.cpu_count(), "load": {"start": load()}}
    print(load(), "(start)", flush=True)
    shared = os.environ.get("LRFACE_HOME", str(REPO.parent / "shared"))
    with tempfile.TemporaryDirectory() as empty:
        report["verify"] = {
            "scrfd (LRFACE_HOME=shared)": verify_times(a, b, shared, args.runs),
            "yunet (empty LRFACE_HOME)": verify_times(a, b, empty, args.runs),
        }
    print(json.dumps(report["verify"], indent=2), flush=True)
    report["load"]["after verify"] = load()
    print(load(), "(after verify)", flush=True)
    folder = write_crops(Path(args.data), out, args.n, args.size)
    rows = [{"model": MODELS[0], "embed_torch": None}]
    teacher = [embed_cli(folder, MODELS[0], out)]
    for m in MODELS[1:]:  # each student between two teacher runs: T s1 T s2 T ...
        onnx = embed_cli(folder, m, out)
        pt = embed_cli(folder, str(REPO / "weights" / f"{m}.pt"), out)
        teacher.append(embed_cli(folder, MODELS[0], out))
        ref = (teacher[-2] + teacher[-1]) / 2
        rows.append(
            {
                "model": m,
                "embed_onnx": round(onnx, 1),
                "embed_torch": round(pt, 1),
                "teacher_before_after": [round(teacher[-2], 1), round(teacher[-1], 1)],
                "embed_onnx_x": round(onnx / ref, 2),
                "embed_torch_x": round(pt / ref, 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    rows[0]["embed_onnx_runs"] = [round(t, 1) for t in teacher]
    rows[0]["embed_onnx"] = round(statistics.mean(teacher), 1)
    rows[0]["embed_onnx_x"] = 1.0
    print(json.dumps(rows[0]), flush=True)
    report["load"]["after embed"] = load()
    print(load(), "(after embed)", flush=True)
    crops = [cv2.imread(str(p)) for p in sorted(folder.rglob("*.png"))[:256]]
    pts = {m: str(REPO / "weights" / f"{m}.pt") for m in MODELS[1:]}
    speed = model_only([*MODELS, *pts.values()], crops, args.seconds, args.rounds)
    for r in rows:
        m = r["model"]
        r["model_only_onnx"] = round(speed[m], 1)
        if m in pts:
            r["model_only_torch"] = round(speed[pts[m]], 1)
        print(json.dumps(r), flush=True)
    report["load"]["after model-only"] = load()
    print(load(), "(after model-only)", flush=True)
    t_mo = rows[0]["model_only_onnx"]
    print(
        "\n| model | embed CLI crops/s ONNX (x teacher) | torch (x teacher) "
        "| model-only b256 ONNX (x teacher) | torch (x teacher) |"
    )
    print("| --- | --- | --- | --- | --- |")

    def cell(v, x):
        return "–" if v is None else f"{v:.0f} ({x:.2f}x)"

    for r in rows:
        mo, mt = r["model_only_onnx"], r.get("model_only_torch")
        print(
            f"| {r['model']} | {cell(r['embed_onnx'], r['embed_onnx_x'])} "
            f"| {cell(r['embed_torch'], r.get('embed_torch_x'))} "
            f"| {cell(mo, mo / t_mo)} | {cell(mt, (mt or 0) / t_mo)} |"
        )
    report["embed"] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
