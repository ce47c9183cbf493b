"""`lrface identify` on an LFW test-split gallery with the rest of LFW as distractors.

    python benchmarks/lfw_identify.py --data ../shared/data/lfw --out runs/lfw-identify \
        --sizes 16,12 --models mobilefacenet-arcface,lrface-mbf,lrface-tiny-16

What it builds (from the SCRFD-2.5g aligned 112x112 crops of every LFW image):

* ``gallery/<identity>/<image>.png``: for each of the 2,195 test-split identities its
  first image (HR); for every other LFW identity (3,554, never a probe) all of its
  images, enrolled as distractor identities.  5,749 identities in all.
* ``probes<s>/<identity>/<image>.png``: every other image of the test identities (4,116),
  reduced to s x s with area interpolation -- the low-resolution probes.

Then, through the CLI exactly as a user would run it:

    lrface gallery build OUT/gallery --model mobilefacenet-arcface --no-detect --out OUT/teacher.npz
    lrface identify OUT/probes16 --gallery OUT/teacher.npz --model M --no-detect --top-k 5 \
        --backend numpy --json > OUT/M-16-numpy.json

(HR gallery enrolled by the teacher, LR probes embedded by each model -- students live in
the teacher's embedding space.)  Scores closed-set rank-1 / rank-5 over the probes (all
mated), the open-set accuracy at the model's threshold (correct identity and above
threshold), and with ``--faiss`` re-runs each identify with ``--backend faiss`` and reports
how many probes get the same top-5 list (identities and order) as the exact search.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from lrface.datasets.facecache import aligned_crops
from lrface.datasets.lfw import LFW, identity_of


def build_tree(lfw: LFW, out: Path, sizes: list[int]) -> tuple[int, int]:
    """Write gallery and probe PNGs (skipped when present); returns (#ids, #probes)."""
    faces = aligned_crops(lfw.image_dir, lfw.all_images)
    test_ids = lfw.test_identities
    seen: set[str] = set()
    n_probes = 0
    for rel, crop in zip(faces["paths"].tolist(), faces["crops"]):
        ident = identity_of(rel)
        name = Path(rel).with_suffix(".png").name
        is_probe = ident in test_ids and ident in seen
        seen.add(ident)
        if not is_probe:
            dst = out / "gallery" / ident / name
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(dst), crop)
            continue
        n_probes += 1
        for s in sizes:
            dst = out / f"probes{s}" / ident / name
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(dst), cv2.resize(crop, (s, s), interpolation=cv2.INTER_AREA))
    return len(seen), n_probes


def run(cmd: list[str], stdout: Path | None = None) -> float:
    print("$", " ".join(cmd) + (f" > {stdout}" if stdout else ""), flush=True)
    t0 = time.time()
    if stdout is None:
        subprocess.run(cmd, check=True)
    else:
        tmp = stdout.with_suffix(".part")
        with open(tmp, "w") as fh:
            subprocess.run(cmd, check=True, stdout=fh)
        tmp.replace(stdout)
    return time.time() - t0


def score(results: list[dict], threshold: float) -> dict[str, float]:
    truth = [Path(r["probe"]).parent.name for r in results]
    top = [[c["identity"] for c in r["candidates"]] for r in results]
    n = len(results)
    r1 = sum(t[:1] == [g] for t, g in zip(top, truth)) / n
    r5 = sum(g in t[:5] for t, g in zip(top, truth)) / n
    accept = sum(r["identity"] == g for r, g in zip(results, truth)) / n
    return {
        "probes": n,
        "rank1": round(100 * r1, 2),
        "rank5": round(100 * r5, 2),
        f"open_set_correct@thr{threshold:.4f}": round(100 * accept, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="../shared/data/lfw")
    ap.add_argument("--out", default="runs/lfw-identify")
    ap.add_argument("--sizes", default="16,12")
    ap.add_argument("--models", default="mobilefacenet-arcface,lrface-mbf,lrface-tiny-16")
    ap.add_argument("--faiss", action="store_true", help="also run --backend faiss and compare")
    ap.add_argument("--lrface", default=str(Path(sys.executable).with_name("lrface")))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    out = Path(args.out)
    lfw = LFW(args.data)
    n_ids, n_probes = build_tree(lfw, out, sizes)
    print(f"gallery identities: {n_ids}; probes per size: {n_probes}")

    gallery = out / "teacher-gallery.npz"  # results below are cached per model sha256
    if not gallery.exists():
        run(
            [args.lrface, "gallery", "build", str(out / "gallery"), "--no-detect", "--quiet",
             "--model", "mobilefacenet-arcface", "--out", str(gallery)]
        )  # fmt: skip
    from lrface.models.loader import load_embedder

    rows = []
    for model in args.models.split(","):
        emb = load_embedder(model)
        thr, tag = emb.threshold, (emb.sha256 or "nohash")[:10]
        for s in sizes:
            backends = ["numpy", "faiss"] if args.faiss else ["numpy"]
            res = {}
            for backend in backends:
                dst = out / f"{Path(model).stem}-{tag}-{s}-{backend}.json"
                secs = 0.0
                if not dst.exists():
                    secs = run(
                        [args.lrface, "identify", str(out / f"probes{s}"), "--gallery",
                         str(gallery), "--model", model, "--no-detect", "--top-k", "5",
                         "--backend", backend, "--json"],
                        stdout=dst,
                    )  # fmt: skip
                res[backend] = json.loads(dst.read_text())
                if secs:
                    print(f"  {len(res[backend])} probes in {secs:.0f} s")
            row = {"model": model, "size": s, **score(res["numpy"], thr)}
            if "faiss" in res:
                same = sum(
                    [c["identity"] for c in a["candidates"]]
                    == [c["identity"] for c in b["candidates"]]
                    for a, b in zip(res["numpy"], res["faiss"])
                )
                row["faiss_same_top5"] = f"{same}/{len(res['numpy'])}"
                row["faiss_rank1"] = score(res["faiss"], thr)["rank1"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = out / "summary.json"
    summary.write_text(json.dumps({"gallery_identities": n_ids, "rows": rows}, indent=2))
    print(f"wrote {summary}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
