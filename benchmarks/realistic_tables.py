#!/usr/bin/env python
"""LFW hr-lr accuracy under the four probe conditions of issue 21, as markdown tables.

Conditions: ``clean/aligned`` (the tables of RESULTS.md), ``realistic/aligned``,
``clean/box`` and ``realistic/box`` (``lrface benchmark --degrade`` x ``--probe-crop``, see
:mod:`lrface.faces.degrade`).  For every condition and every model this runs::

    lrface benchmark --protocol lfw --data DATA --split SPLIT --mode hr-lr --sizes SIZES \\
        --hr-model auto --degrade D --probe-crop C --model M --out OUT/D-C/M --no-progress

through :func:`lrface.eval.benchmark.run_benchmark` (embeddings are cached, so a re-run
only computes what is missing; a model that fails to load is retried after a minute, up to
three times), then prints one markdown table per condition (rows: models, columns: sizes;
cells: accuracy % (std over the 5 test folds)) and writes everything to
``OUT/realistic_tables.json`` and ``OUT/realistic_tables.md``.

``--dlib`` adds the dlib ResNet peer row (optional; ``pip install dlib-bin
face-recognition-models``), on the recipe of ``benchmarks/peer_dlib.py`` with the same
conditions:

* aligned: dlib's 150 px chip (dlib's 5 landmarks found on the HR photo inside the SCRFD
  box) reduced to ``round(s * 150 / 112)`` px (area); ``realistic``: that small chip
  degraded with the same recipe and the same per-pair seeds (``realistic_rng(pair index,
  s, 1)``), then enlarged back to 150 (cubic);
* box: the very probe the lrface models get (the ``s x s`` reduction of the 1.1x square
  SCRFD box, clean or realistic, bit-identical), enlarged to 150 (cubic); dlib then does
  what ``face_recognition.face_encodings`` does with a known box: its 5-point shape
  predictor on the enlarged probe, inside the detector's box, then ``get_face_chip`` and
  the descriptor (dlib's landmarks on the small face: its deployed pipeline);
* the HR side is dlib's HR chip; score = -L2 distance; 5-fold cross-validated accuracy.

Example (the command of the RESULTS tables)::

    nice -n 10 python benchmarks/realistic_tables.py --data $LRFACE_HOME/data/lfw \\
        --sizes 8,12,16,24 --dlib --out runs/realistic-tables

``--models none --dlib`` computes only the dlib row (``--conditions`` picks the conditions
for both; dlib's descriptors are cached per condition, size and probe, so an interrupted
run resumes where it stopped).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from lrface.argconfig import from_namespace
from lrface.datasets.boxes import load_box_crops
from lrface.datasets.lfw import LFW
from lrface.errors import LrfaceError
from lrface.eval.benchmark import (
    BenchmarkConfig,
    add_benchmark_arguments,
    jsonable,
    parse_list,
    parse_sizes,
    run_benchmark,
)
from lrface.eval.protocols.conditions import degrade_probe
from lrface.eval.protocols.lfw import select_pairs
from lrface.faces.degrade import (
    BOX_HR_SIDE,
    BOX_MARGIN,
    REALISTIC,
    Degradation,
    apply_realistic,
    realistic_rng,
    square_box,
)
from lrface.io.cache import cache_dir, digest
from lrface.io.fileio import write_json_atomic
from lrface.scores import kfold_accuracy

CONDITIONS = (
    ("clean", "aligned"),
    ("realistic", "aligned"),
    ("clean", "box"),
    ("realistic", "box"),
    ("clean", "given"),
    ("realistic", "given"),
)
DEFAULT_MODELS = "mobilefacenet-arcface,lrface-mbf,lrface-tiny-16,lrface-tiny-24,lrface-tiny-32"
LABELS = {
    "mobilefacenet-arcface": "teacher `mobilefacenet-arcface`",
    "dlib": "dlib ResNet (peer)",
    "auto": "default routing (`auto`: each probe as `embed --no-detect` reads it)",
}
RETRIES = 3
RETRY_WAIT_S = 60


def cond_name(cond: tuple[str, str]) -> str:
    return f"{cond[0]}/{cond[1]}"


# ------------------------------------------------------------------------------- lrface


def run_lrface(
    data: str, split: str, sizes: str, model: str, cond: tuple[str, str], out: Path, mpf: int | None
) -> dict[str, Any]:
    """One ``lrface benchmark`` run (hr-lr, ``--hr-model auto``); retried when it fails."""
    argv = [
        "--protocol", "lfw", "--data", data, "--split", split, "--mode", "hr-lr",
        "--sizes", sizes, "--hr-model", "auto", "--degrade", cond[0], "--probe-crop", cond[1],
        "--model", model, "--out", str(out), "--no-progress",
    ]  # fmt: skip
    if mpf is not None:
        argv += ["--max-pairs-per-fold", str(mpf)]
    parser = argparse.ArgumentParser(prog="lrface benchmark")
    add_benchmark_arguments(parser)
    config = from_namespace(
        BenchmarkConfig,
        parser.parse_args(argv),
        command_line=shlex.join(["lrface", "benchmark", *argv]),
    )
    for attempt in range(1, RETRIES + 1):
        try:
            return run_benchmark(config)
        except (TypeError, NameError, AttributeError, KeyboardInterrupt):
            raise  # a bug, not a model file being swapped
        except Exception as exc:  # model files may be swapped under us: wait and retry
            print(f"[{model} {cond_name(cond)}] attempt {attempt} failed: {exc}", file=sys.stderr)
            traceback.print_exc()
            if attempt == RETRIES:
                raise
            time.sleep(RETRY_WAIT_S)
    raise AssertionError("unreachable")


def lrface_cells(result: dict[str, Any]) -> dict[int, dict[str, float]]:
    return {
        int(e["size"]): {
            "accuracy_mean": e["metrics"]["accuracy_mean"],
            "accuracy_std": e["metrics"]["accuracy_std"],
        }
        for e in result["results"]
        if e["mode"] == "hr-lr"
    }


# --------------------------------------------------------------------------------- dlib


def _dlib_store(name: str, key: str):
    from peer_dlib import DESC_DIM, NpzStore

    return NpzStore(
        cache_dir() / f"peer-dlib-{name}-{key}.npz", {"desc": ((DESC_DIM,), np.float32)}
    )


def dlib_conditions(
    data: str,
    split: str,
    sizes: list[int],
    mpf: int | None,
    progress: bool = True,
    only: list[str] | None = None,
) -> dict[str, dict[int, dict[str, float]]]:
    """dlib's hr-lr accuracy for every condition (or those of ``only``) and size (see the
    module docstring).  Descriptors are cached per condition, size and probe."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from peer_dlib import CHIP, DescriptorCache, DlibModels, chip_side

    models = DlibModels()
    lfw = LFW(data)
    official = {id(p): i for i, p in enumerate(lfw.pairs)}
    pairs = select_pairs(lfw, split, mpf, None)
    index = [official[id(p)] for p in pairs]
    labels = np.array([p.same for p in pairs], bool)
    folds = np.array([p.fold for p in pairs], np.int64)
    a_rels = sorted({p.a for p in pairs})
    b_rels = sorted({p.b for p in pairs})
    cache = DescriptorCache(lfw, "scrfd-2.5g", models)
    hr = cache.descriptors(a_rels, [None], progress)[None]
    pos_a = {r: i for i, r in enumerate(a_rels)}
    hr_a = hr[[pos_a[p.a] for p in pairs]]
    out: dict[str, dict[int, dict[str, float]]] = {}

    def score(lr_b: np.ndarray) -> dict[str, float]:
        s = -np.linalg.norm(hr_a.astype(np.float64) - lr_b, axis=1)
        acc = kfold_accuracy(s, labels, folds=folds)
        return {"accuracy_mean": acc["accuracy_mean"], "accuracy_std": acc["accuracy_std"]}

    pos_b = {r: i for i, r in enumerate(b_rels)}
    wanted = set(only or map(cond_name, CONDITIONS))
    if "clean/aligned" in wanted:  # peer_dlib's recipe (cached per image)
        lr = cache.descriptors(b_rels, list(sizes), progress)
        ib = np.array([pos_b[p.b] for p in pairs])
        out["clean/aligned"] = {s: score(lr[s][ib]) for s in sizes}

    # realistic/aligned: the reduced chip degraded with the pair's draw
    from lrface.io.images import read_image

    root = str(Path(lfw.image_dir).resolve())
    chips: dict[str, np.ndarray] = {}

    def chip_of(rel: str) -> np.ndarray:
        if rel not in chips:
            bgr = read_image(lfw.path(rel))
            box, parts = cache._shape(rel, bgr)
            chips[rel] = models.chip(np.ascontiguousarray(bgr[:, :, ::-1]), box, parts)
        return chips[rel]

    out["realistic/aligned"] = {}
    for s in sizes if "realistic/aligned" in wanted else ():
        r = chip_side(s)
        key = digest(root, models.rec_file.name, "realistic-aligned", REALISTIC.describe(), s, r)
        st = _dlib_store(f"real-aligned-{s}px", key)
        todo = [k for k in range(len(pairs)) if f"{index[k]}" not in st]
        for n, k in enumerate(
            tqdm(todo, desc=f"dlib realistic/aligned {s}px", disable=not progress)
        ):
            chip_rgb = chip_of(pairs[k].b)
            small = cv2.resize(chip_rgb[:, :, ::-1], (r, r), interpolation=cv2.INTER_AREA)
            rng = realistic_rng(index[k], s, 1)
            small = apply_realistic(np.ascontiguousarray(small), REALISTIC.sample(rng), rng)
            up = cv2.resize(small, (CHIP, CHIP), interpolation=cv2.INTER_CUBIC)[:, :, ::-1]
            st.put(f"{index[k]}", desc=models.descriptor(np.ascontiguousarray(up)))
            if (n + 1) % 250 == 0:
                st.save()
        st.save()
        out["realistic/aligned"][s] = score(np.stack([st.get(f"{i}")["desc"] for i in index]))
    cache.save()
    chips.clear()

    # box conditions: the lrface box probe, then dlib's own landmarks inside the box
    if not wanted & {"clean/box", "realistic/box"}:
        return {k: v for k, v in out.items() if v}
    # the rels of the lrface run (the same detection cache serves both)
    all_rels = sorted(set(a_rels) | set(b_rels))
    bcrops, _, boxes = load_box_crops(lfw, all_rels, "scrfd-2.5g", progress)
    pos_all = {r: i for i, r in enumerate(all_rels)}
    for kind in ("clean", "realistic"):
        name = f"{kind}/box"
        if name not in wanted:
            continue
        out[name] = {}
        for s in sizes:
            key = digest(root, models.rec_file.name, models.sp_file.name, name, BOX_MARGIN,
                         BOX_HR_SIDE, REALISTIC.describe(), s)  # fmt: skip
            st = _dlib_store(f"{kind}-box-{s}px", key)
            ids = [f"{index[k]}" if kind == "realistic" else pairs[k].b for k in range(len(pairs))]
            todo = sorted({k for k in range(len(pairs)) if ids[k] not in st}, key=lambda k: ids[k])
            done: set[str] = set()
            for n, k in enumerate(tqdm(todo, desc=f"dlib {name} {s}px", disable=not progress)):
                if ids[k] in done:
                    continue
                j = pos_all[pairs[k].b]
                probe = degrade_probe(bcrops[j], Degradation(size=s), kind, index[k], 1)
                up = cv2.resize(probe, (CHIP, CHIP), interpolation=cv2.INTER_CUBIC)
                rgb = np.ascontiguousarray(up[:, :, ::-1])
                inner = _inner_box(boxes[j], CHIP)
                parts = models.landmarks(rgb, inner)
                st.put(ids[k], desc=models.descriptor(models.chip(rgb, inner, parts)))
                done.add(ids[k])
                if (n + 1) % 250 == 0:
                    st.save()
            st.save()
            out[name][s] = score(np.stack([st.get(i)["desc"] for i in ids]))
    return {k: v for k, v in out.items() if v}


def _inner_box(box: np.ndarray, side: int) -> np.ndarray:
    """The detector's box in the coordinates of its square crop enlarged to ``side`` px."""
    x0, y0, sq = square_box(box, BOX_MARGIN)
    f = side / sq
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.round([(x1 - x0) * f, (y1 - y0) * f, (x2 - x0) * f, (y2 - y0) * f]).astype(int)


# ------------------------------------------------------------------------------- tables


def markdown(table: dict[str, dict[str, dict[int, dict[str, float]]]], sizes: list[int]) -> str:
    """One table per condition: rows models, columns sizes, cells ``acc (std)`` in %."""
    blocks = []
    for cond in CONDITIONS:
        name = cond_name(cond)
        lines = [
            f"**{name}** (`--degrade {cond[0]} --probe-crop {cond[1]}`)",
            "",
            "| model | " + " | ".join(f"{s} px" for s in sizes) + " |",
            "| --- |" + " --- |" * len(sizes),
        ]
        for model, conds in table.items():
            cells = conds.get(name, {})
            row = [
                f"{100 * c['accuracy_mean']:.2f} ({100 * c['accuracy_std']:.2f})"
                if (c := cells.get(s))
                else "–"
                for s in sizes
            ]
            lines.append(f"| {LABELS.get(model, f'`{model}`')} | " + " | ".join(row) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    home = Path(os.environ.get("LRFACE_HOME", "~/.lrface")).expanduser()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(home / "data" / "lfw"))
    p.add_argument("--split", default="test", choices=("test", "val", "all"))
    p.add_argument("--sizes", default="8,12,16,24")
    p.add_argument(
        "--models", default=DEFAULT_MODELS, help="lrface models (rows); 'none': only --dlib"
    )
    p.add_argument("--conditions", default=",".join(cond_name(c) for c in CONDITIONS))
    p.add_argument("--dlib", action="store_true", help="add the dlib peer row")
    p.add_argument("--max-pairs-per-fold", type=int, default=None, help="quick run on a subset")
    p.add_argument("--out", default="runs/realistic-tables")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        sizes = parse_sizes(args.sizes)
        models = parse_list(args.models, "--models")
        if models == ["none"]:
            models = []
            if not args.dlib:
                raise LrfaceError("--models none: add --dlib (there is no row to compute)")
        wanted = parse_list(args.conditions, "--conditions")
        conds = [c for c in CONDITIONS if cond_name(c) in wanted]
        if len(conds) != len(wanted):
            raise LrfaceError(f"--conditions: choose from {', '.join(map(cond_name, CONDITIONS))}")
    except LrfaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    table: dict[str, dict[str, dict[int, dict[str, float]]]] = {}
    runs: list[dict[str, Any]] = []
    for cond in conds:
        for model in models:
            t1 = time.perf_counter()
            res = run_lrface(
                args.data, args.split, args.sizes, model, cond,
                out / f"{cond[0]}-{cond[1]}" / model, args.max_pairs_per_fold,
            )  # fmt: skip
            table.setdefault(model, {})[cond_name(cond)] = lrface_cells(res)
            runs.append(
                {
                    "condition": cond_name(cond),
                    "model": model,
                    "command": res["command"],
                    "sha256": res["models"][0]["sha256"],
                    "runtime": res["models"][0]["runtime"],
                    "elapsed_s": res["elapsed_s"],
                    "caption": res["caption"],
                }
            )
            print(f"[{cond_name(cond)}] {model}: {time.perf_counter() - t1:.0f} s", file=sys.stderr)
    if args.dlib:
        t1 = time.perf_counter()
        try:
            table["dlib"] = dlib_conditions(
                args.data, args.split, sizes, args.max_pairs_per_fold,
                progress=not args.no_progress, only=[cond_name(c) for c in conds],
            )  # fmt: skip
        except LrfaceError as exc:  # dlib not installed, a model file missing
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"[dlib] {time.perf_counter() - t1:.0f} s", file=sys.stderr)
    command = shlex.join(["python", "benchmarks/realistic_tables.py", *argv])
    text = markdown(table, sizes)
    result = {
        "command": command,
        "split": args.split,
        "max_pairs_per_fold": args.max_pairs_per_fold,
        "sizes": sizes,
        "conditions": [cond_name(c) for c in conds],
        "realistic_recipe": REALISTIC.describe(),
        "box_crop": f"SCRFD box, square, {BOX_MARGIN:g}x max(w, h), {BOX_HR_SIDE}px, then area",
        "table": table,
        "runs": runs,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    write_json_atomic(out / "realistic_tables.json", jsonable(result))
    (out / "realistic_tables.md").write_text(f"`{command}`\n\n{text}\n")
    print(f"`{command}`\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
