"""Set-based LFW: do templates of k low-resolution probes beat one?

    python benchmarks/watch_lfw_templates.py --data ../shared/data/lfw \
        --out runs/watch-lfw-templates.json

Protocol (LFW test split only, SCRFD-2.5g aligned 112x112 crops from the whole-LFW cache):

* Subjects: test-split identities with >= 5 photos (a k = 4 template needs 4 probe photos
  besides the enrolled one), split at random (``--seed``) into a **mated** half and a
  **non-mated** half.
* Gallery (HR, embedded by the teacher ``mobilefacenet-arcface``): the first photo (by
  file name) of every mated subject, plus the first photo of every other test-split
  identity (fewer than 5 photos) as distractor identities.  Non-mated subjects are not
  enrolled at all.
* Probes: every subject's other photos (at most ``--max-photos``), each reduced to s x s
  (8, 12, 16 px; area) -- ``clean`` -- or reduced and degraded -- ``realistic``
  (:data:`lrface.faces.degrade.REALISTIC`, one fixed draw per photo and size:
  ``realistic_rng(photo index in LFW, s)``) -- and embedded by ``lrface-mbf`` (what
  ``verify`` chooses below 80 px).
* Templates: ``--draws`` random orderings per subject; the templates of k = 1, 2, 4 are the
  first k probes of one ordering (nested, so k is the only change), fused
  (:func:`lrface.search.templates.fuse_template`) with quality weights
  (:func:`lrface.search.templates.face_quality` of the probe at 112 px, face size s, detector
  score 1) -- ``quality`` -- and with equal weights -- ``mean``.
* Scores (:func:`lrface.eval.metrics.identification_report`): rank-1 over the mated
  templates; TPIR (DIR) at FPIR 1 % and 10 % with the non-mated templates.

Decision rule, written before the run (issue 32's floor): at 16 px realistic, k = 4
``quality`` templates must score >= +10 rank-1 points over k = 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np

from lrface.datasets.lfw import LFW, identity_of
from lrface.eval.metrics import identification_report
from lrface.eval.protocols.lfw import load_crops
from lrface.faces.degrade import Degradation, degrade, degrade_realistic, realistic_rng
from lrface.io.fileio import write_json_atomic
from lrface.models.loader import load_embedder
from lrface.search.templates import face_quality, fuse_template

KS = (1, 2, 4)
FPIRS = (0.01, 0.1)


def subjects(lfw: LFW, seed: int, max_photos: int) -> tuple[dict, dict, list[str]]:
    """``(mated, nonmated, distractors)``: ``{identity: [probe rels]}`` twice and the
    gallery rels of the distractor identities; the enrolled photo of a mated subject is
    ``gallery_photo[identity]`` (its first photo)."""
    by_id: dict[str, list[str]] = {}
    for rel in lfw.all_images:
        if identity_of(rel) in lfw.test_identities:
            by_id.setdefault(identity_of(rel), []).append(rel)
    big = sorted(n for n, rels in by_id.items() if len(rels) >= 5)
    order = np.random.default_rng(seed).permutation(len(big))
    half = len(big) // 2
    mated_ids = sorted(big[i] for i in order[:half])
    non_ids = sorted(big[i] for i in order[half:])
    mated = {n: sorted(by_id[n])[1 : 1 + max_photos] for n in mated_ids}
    nonmated = {n: sorted(by_id[n])[1 : 1 + max_photos] for n in non_ids}
    distractors = [sorted(by_id[n])[0] for n in sorted(by_id) if len(by_id[n]) < 5]
    gallery = [sorted(by_id[n])[0] for n in mated_ids] + distractors
    return mated, nonmated, gallery


def probe_crop(crop: np.ndarray, size: int, condition: str, index: int) -> np.ndarray:
    """One probe: the aligned 112 crop reduced to ``size`` (clean) or reduced and degraded
    with the fixed draw of ``(index, size)`` (realistic); uint8 BGR (size, size, 3)."""
    deg = Degradation(size=size)
    if condition == "realistic":
        return degrade_realistic(crop, deg, realistic_rng(index, size))
    return degrade(crop, deg)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/lfw")
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", default="8,12,16")
    ap.add_argument("--conditions", default="clean,realistic")
    ap.add_argument("--draws", type=int, default=5, help="templates per subject and k")
    ap.add_argument("--max-photos", type=int, default=20, help="probe photos per subject")
    ap.add_argument("--model", default="lrface-mbf")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.time()
    lfw = LFW(args.data)
    mated, nonmated, gallery_rels = subjects(lfw, args.seed, args.max_photos)
    probe_rels = sorted({r for d in (mated, nonmated) for rels in d.values() for r in rels})
    rels = gallery_rels + probe_rels
    crops, row, _ = load_crops(lfw, rels, progress=False)
    crop_of = {r: crops[i] for r, i in zip(rels, row)}
    lfw_index = {r: i for i, r in enumerate(lfw.all_images)}
    teacher = load_embedder("mobilefacenet-arcface")
    student = load_embedder(args.model)
    g_emb = teacher.embed_crops([crop_of[r] for r in gallery_rels])
    g_ids = np.array([identity_of(r) for r in gallery_rels])
    rng = np.random.default_rng(args.seed + 1)
    orders = {  # subject -> draws x 4 probe rels (nested prefixes give k = 1, 2, 4)
        n: [list(rng.permutation(rels)[: max(KS)]) for _ in range(args.draws)]
        for d in (mated, nonmated)
        for n, rels in sorted(d.items())
    }
    rows = []
    for condition in args.conditions.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            small = {r: probe_crop(crop_of[r], size, condition, lfw_index[r]) for r in probe_rels}
            emb = dict(zip(probe_rels, student.embed_crops([small[r] for r in probe_rels])))
            up = {
                r: cv2.resize(s, (112, 112), interpolation=cv2.INTER_CUBIC)
                for r, s in small.items()
            }
            quality = {r: face_quality(up[r], float(size), 1.0) for r in probe_rels}
            for k in KS:
                for fusion in ("quality", "mean"):
                    templates, ids = [], []
                    for n, draws in orders.items():
                        for order in draws:
                            use = order[:k]
                            w = np.array([quality[r] for r in use]) if fusion == "quality" else None
                            templates.append(fuse_template(np.stack([emb[r] for r in use]), w))
                            ids.append(n)
                    rep = identification_report(
                        np.stack(templates), np.array(ids), g_emb, g_ids, ranks=(1,), fpirs=FPIRS
                    )
                    row = {
                        "condition": condition,
                        "size": size,
                        "k": k,
                        "fusion": fusion,
                        "rank1": rep["cmc"][1],
                        **{f"tpir@fpir={f:g}": rep["dir_at_fpir"][f] for f in FPIRS},
                        "n_mated": rep["n_mated"],
                        "n_nonmated": rep["n_nonmated"],
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    result = {
        "protocol": __doc__.split("Protocol")[1].split("Decision rule")[0].strip(),
        "args": vars(args),
        "n_mated_subjects": len(mated),
        "n_nonmated_subjects": len(nonmated),
        "n_gallery_ids": len(gallery_rels),
        "n_probe_photos": len(probe_rels),
        "rows": rows,
        "seconds": round(time.time() - t0, 1),
        "load_avg": os.getloadavg(),
    }
    write_json_atomic(args.out, result)
    print(table(result))
    return 0


def table(result: dict) -> str:
    """Markdown table: one row per condition, size and fusion; rank-1 and TPIR@1 % per k."""
    lines = [
        "| condition | size | fusion | rank-1 k=1 | k=2 | k=4 | TPIR@FPIR=1% k=1 | k=2 | k=4 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = result["rows"]
    keys = dict.fromkeys((r["condition"], r["size"], r["fusion"]) for r in rows)
    for c, s, f in keys:
        by_k = {r["k"]: r for r in rows if (r["condition"], r["size"], r["fusion"]) == (c, s, f)}
        r1 = " | ".join(f"{100 * by_k[k]['rank1']:.1f}" for k in KS)
        tp = " | ".join(f"{100 * by_k[k]['tpir@fpir=0.01']:.1f}" for k in KS)
        lines.append(f"| {c} | {s} | {f} | {r1} | {tp} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
