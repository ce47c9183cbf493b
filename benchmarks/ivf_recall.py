"""Recall and latency of on-disk IVF galleries (lrface.search.ivf) against the exact search.

    # the LFW identification protocol of benchmarks/lfw_identify.py (embedded in-process)
    python benchmarks/ivf_recall.py lfw --data ../shared/data/lfw --out runs/ivf-lfw \
        --size 16 --probe-model lrface-mbf
    # synthetic face-like vectors: identities x samples, 128-d
    python benchmarks/ivf_recall.py synthetic --out runs/ivf-1m --ids 100000 --samples 10

Both modes build the gallery as ``lrface gallery build --index ivf-sq8|ivf-pq`` does: the
index is trained on a sample, every part is encoded into its own files, the parts are
merged on disk, and the directory is reopened (``IvfGallery.open``).  Identities are ranked
by their best image (``aggregate="all"``), the shortlist is re-scored exactly, and the
reference is the exact search over the same rows (numpy).  Reported per index and
``nprobe``: recall@1 (the IVF top-1 identity is the exact top-1), recall@10 (share of the
exact top-10 identities that are in the IVF top-10), rank-1 against the truth (LFW), ms per
query (all probes in one call, ``IvfGallery.search`` end to end, this machine's 2 cores),
and the on-disk size of the merged index (``.ivfdata`` + ``.index``).

``lfw``: gallery = the teacher's embeddings of the HR crops (``--crop``: SCRFD-aligned, or
by default the central 112x112 window of the deep-funneled photo) (first image of each
test-split identity + every image of the other identities: 5,749 identities, 9,117
images); probes = the other 4,116 test images reduced to ``--size`` px (area), embedded by
``--probe-model`` (students live in the teacher's space).  Embeddings are cached in OUT.

``synthetic``: ``--ids`` identity centres uniform on the 128-d sphere; each of
``--samples`` gallery images and the probe is ``normalise(centre + N(0, s^2 I))`` with s
chosen so that two images of one identity have cosine ``--same-cos`` on average (0.6:
ArcFace-like mated scores), different identities ~0.  Parts are generated on the fly from
a seed, so memory holds one part; the exact reference is accumulated part by part.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lrface.search.ivf import IvfGallery

K = 10


def exact_topk_ids(scores_rows: list[tuple[np.ndarray, np.ndarray]], k: int) -> list[list[int]]:
    """Per probe, the ``k`` best labels by max score, from ``(scores (P, C), labels (P, C))``
    chunks (ties: first seen)."""
    s = np.concatenate([a for a, _ in scores_rows], axis=1)
    lab = np.concatenate([b for _, b in scores_rows], axis=1)
    out = []
    for i in range(len(s)):
        order = np.argsort(-s[i], kind="stable")
        seen: list[int] = []
        for j in order:
            if lab[i, j] not in seen:
                seen.append(int(lab[i, j]))
                if len(seen) == k:
                    break
        out.append(seen)
    return out


def evaluate(g: IvfGallery, probes: np.ndarray, exact: list[list[str]], nprobe: int,
             shortlist: int, truth: list[str] | None) -> dict:  # fmt: skip
    g.search(probes[:8], K, nprobe=nprobe, shortlist=shortlist)  # warm the page cache
    t0 = time.perf_counter()
    hits = g.search(probes, K, nprobe=nprobe, shortlist=shortlist)
    ms = 1000 * (time.perf_counter() - t0) / len(probes)
    got = [[n for n, _ in h] for h in hits]
    r1 = np.mean([bool(a) and a[0] == b[0] for a, b in zip(got, exact)])
    r10 = np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got, exact)])
    row = {
        "nprobe": nprobe,
        "shortlist": shortlist,
        "recall@1": round(float(r1), 4),
        "recall@10": round(float(r10), 4),
        "ms_per_query": round(ms, 2),
    }
    if truth is not None:
        row["rank1_ivf"] = round(
            100 * np.mean([bool(a) and a[0] == t for a, t in zip(got, truth)]), 2
        )
        row["rank1_exact"] = round(100 * np.mean([b[0] == t for b, t in zip(exact, truth)]), 2)
    return row


def search_memory_mib(path: Path, probes: np.ndarray, nprobe: int, shortlist: int) -> dict:
    """Memory of a fresh process that opens the gallery and searches ``probes`` (Linux):
    ``VmHWM`` (peak resident, including pages of the memory-mapped index and embedding
    files, which the kernel can drop) and ``RssAnon`` (the process's own memory) after the
    search, in MiB.  (``ru_maxrss`` would inherit this script's peak across exec.)"""
    np.save(path.parent / "probes.npy", probes)
    code = (
        "import sys, numpy as np; from lrface.search.ivf import IvfGallery; "
        "g = IvfGallery.open(sys.argv[1]); p = np.load(sys.argv[2]); "
        f"g.search(p, {K}, nprobe={nprobe}, shortlist={shortlist}); "
        "print(open('/proc/self/status').read())"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(path), str(path.parent / "probes.npy")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    kb = {
        line.split(":")[0]: int(line.split()[1])
        for line in res.stdout.splitlines()
        if line.startswith(("VmHWM", "RssAnon"))
    }
    return {f"search_{k}_MiB": round(v / 1024, 1) for k, v in kb.items()}


def disk_mib(g: IvfGallery) -> float:
    m = g.meta["merged"]
    return round(sum((g.path / f).stat().st_size for f in (m["index"], m["ivfdata"])) / 2**20, 1)


# ---------------------------------------------------------------------- LFW


def lfw_embeddings(args, out: Path) -> dict:
    cache = out / f"emb-{args.crop}-{args.size}-{args.probe_model}.npz"
    if cache.exists():
        z = np.load(cache)
        return {k: z[k] for k in z.files}
    import cv2

    from lrface.datasets.lfw import LFW, identity_of
    from lrface.models.loader import load_embedder

    lfw = LFW(args.data)
    rels = lfw.all_images
    if args.crop == "aligned":
        from lrface.datasets.facecache import aligned_crops

        crops = aligned_crops(lfw.image_dir, rels)["crops"]
    else:  # the central window of the deep-funneled photo (no detector run)
        crops = np.stack([cv2.imread(str(lfw.image_dir / r))[69:181, 69:181] for r in rels])
    test_ids, seen = lfw.test_identities, set()
    g_idx, p_idx = [], []
    for i, rel in enumerate(rels):
        ident = identity_of(rel)
        (p_idx if ident in test_ids and ident in seen else g_idx).append(i)
        seen.add(ident)
    labels = np.array([identity_of(r) for r in rels])
    teacher = load_embedder("mobilefacenet-arcface", batch_size=256)
    student = load_embedder(args.probe_model, batch_size=256)
    t0 = time.time()
    g_emb = np.concatenate(
        [teacher.embed_crops(crops[g_idx[a : a + 512]]) for a in range(0, len(g_idx), 512)]
    )
    small = [cv2.resize(crops[i], (args.size, args.size), interpolation=cv2.INTER_AREA)
             for i in p_idx]  # fmt: skip
    p_emb = np.concatenate(
        [student.embed_crops(small[a : a + 512]) for a in range(0, len(small), 512)]
    )
    print(f"embedded {len(g_idx)} gallery + {len(p_idx)} probes in {time.time() - t0:.0f} s")
    res = {"g_emb": g_emb, "g_lab": labels[g_idx], "p_emb": p_emb, "p_lab": labels[p_idx]}
    np.savez(cache, **res)
    return res


def run_lfw(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    d = lfw_embeddings(args, out)
    g_emb, g_lab, probes = d["g_emb"], d["g_lab"].tolist(), d["p_emb"]
    names = sorted(set(g_lab))
    code = {n: i for i, n in enumerate(names)}
    lab_i = np.array([code[n] for n in g_lab])
    scores = probes @ g_emb.T
    exact = [
        [names[i] for i in row]
        for row in exact_topk_ids([(scores, np.broadcast_to(lab_i, scores.shape))], K)
    ]
    rows = []
    n = len(g_emb)
    for kind in args.kinds.split(","):
        path = out / f"{kind}.ivf"
        shutil.rmtree(path, ignore_errors=True)
        t0 = time.time()
        model = {
            "name": "mobilefacenet-arcface",
            "sha256": None,
            "embedding_size": g_emb.shape[1],
            "teacher": None,
        }
        g = IvfGallery.create(path, g_emb, model, 0.3, kind, n_rows=n)
        for a in range(0, n, args.part_size):
            g.add_part(g_lab[a : a + args.part_size], g_emb[a : a + args.part_size],
                       [f"row{i}" for i in range(a, min(n, a + args.part_size))])  # fmt: skip
        g.merge()
        g = IvfGallery.open(path)
        build_s = round(time.time() - t0, 1)
        for npr in [int(x) for x in args.nprobe.split(",")]:
            row = {
                "gallery": f"LFW {len(names)} ids / {n} images",
                "index": g.meta["index"]["factory"],
                "parts": len(g.meta["parts"]),
                "build_s": build_s,
                "disk_MiB": disk_mib(g),
                **evaluate(g, probes, exact, npr, args.shortlist, d["p_lab"].tolist()),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
        rows[-1].update(search_memory_mib(path, probes, npr, args.shortlist))
    return {"mode": "lfw", "probes": len(probes), "probe_model": args.probe_model,
            "size": args.size, "rows": rows}  # fmt: skip


# ---------------------------------------------------------------------- synthetic


def synth_part(seed: int, centres: np.ndarray, ids: np.ndarray, sigma: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = centres[ids] + rng.standard_normal((len(ids), centres.shape[1]), np.float32) * sigma
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def run_synthetic(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    dim = args.dim
    centres = rng.standard_normal((args.ids, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sigma = math.sqrt((1 / args.same_cos - 1) / dim)  # E cos(a, b) = 1 / (1 + dim sigma^2)
    n = args.ids * args.samples
    row_ids = np.repeat(np.arange(args.ids), args.samples)  # identity of each gallery row
    p_ids = rng.choice(args.ids, args.probes, replace=False)
    probes = synth_part(10**6, centres, p_ids, sigma)
    check = synth_part(10**6 + 1, centres, p_ids, sigma)
    same_cos = float(np.mean(np.sum(probes * check, axis=1)))
    parts = [(a, min(n, a + args.part_size)) for a in range(0, n, args.part_size)]
    chunks = []
    t0 = time.time()
    for k, (a, b) in enumerate(parts):
        e = synth_part(k, centres, row_ids[a:b], sigma)
        s = probes @ e.T
        top = np.argpartition(-s, min(args.samples * K, s.shape[1] - 1), axis=1)[
            :, : args.samples * K
        ]
        chunks.append((np.take_along_axis(s, top, 1), row_ids[a:b][top]))
    exact = [[str(i) for i in r] for r in exact_topk_ids(chunks, K)]
    exact_s = round(time.time() - t0, 1)
    print(
        f"exact reference over {n} rows: {exact_s} s (incl. generation); "
        f"probe-mate cos {same_cos:.3f}"
    )
    rows = []
    model = {"name": "synthetic", "sha256": None, "embedding_size": dim, "teacher": None}
    for kind in args.kinds.split(","):
        path = out / f"{kind}.ivf"
        shutil.rmtree(path, ignore_errors=True)
        t0 = time.time()
        train_rows = min(n, args.train)
        need = [(k, ab) for k, ab in enumerate(parts) if ab[0] < train_rows]  # first parts only
        train = np.concatenate([synth_part(k, centres, row_ids[a:b], sigma) for k, (a, b) in need])[
            :train_rows
        ]
        g = IvfGallery.create(path, train, model, 0.3, kind, nlist=args.nlist, n_rows=n)
        del train
        for k, (a, b) in enumerate(parts):
            g.add_part(
                [str(i) for i in row_ids[a:b]],
                synth_part(k, centres, row_ids[a:b], sigma),
                [""] * (b - a),
            )
        g.merge()
        g = IvfGallery.open(path)
        build_s = round(time.time() - t0, 1)
        for npr in [int(x) for x in args.nprobe.split(",")]:
            row = {
                "gallery": f"synthetic {args.ids} ids x {args.samples} = {n} rows, {dim}-d",
                "index": g.meta["index"]["factory"],
                "parts": len(parts),
                "build_s": build_s,
                "disk_MiB": disk_mib(g),
                **evaluate(g, probes, exact, npr, args.shortlist, [str(i) for i in p_ids]),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
        rows[-1].update(search_memory_mib(path, probes, npr, args.shortlist))
        print(json.dumps(rows[-1]), flush=True)
        if not args.keep:
            shutil.rmtree(path, ignore_errors=True)
    return {"mode": "synthetic", "probes": args.probes, "probe_mate_cos": round(same_cos, 3),
            "exact_s": exact_s, "rows": rows}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("mode", choices=["lfw", "synthetic"])
    ap.add_argument("--out", default="runs/ivf")
    ap.add_argument("--data", default="../shared/data/lfw")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--probe-model", default="lrface-mbf")
    ap.add_argument(
        "--crop",
        default="centre",
        choices=["centre", "aligned"],
        help="LFW faces: SCRFD-aligned crops (face cache; hours to build on 2 busy cores) "
        "or the central 112x112 window of the deep-funneled photos (default)",
    )
    ap.add_argument("--kinds", default="ivf-sq8,ivf-pq")
    ap.add_argument("--nprobe", default="8,32")
    ap.add_argument("--shortlist", type=int, default=256)
    ap.add_argument("--part-size", type=int, default=2500)
    ap.add_argument("--ids", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--same-cos", type=float, default=0.6)
    ap.add_argument("--probes", type=int, default=1000)
    ap.add_argument("--nlist", type=int, default=None)
    ap.add_argument("--train", type=int, default=100_000)
    ap.add_argument("--keep", action="store_true", help="keep the synthetic index directories")
    args = ap.parse_args()
    res = run_lfw(args) if args.mode == "lfw" else run_synthetic(args)
    res["max_rss_MiB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(res, indent=2))
    (Path(args.out) / f"summary-{args.mode}.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
