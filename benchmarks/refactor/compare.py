"""Compare two output directories of benchmarks/refactor/outputs.sh (before, after).

Text files byte for byte (the output directory's own name aside); JSON without the fields
that record time (utc_time, elapsed_s, created, git_commit, seconds, crops_per_second);
.npz arrays with numpy.array_equal; .pt tensors with torch.equal; CSV without its last
(seconds) column.  Prints one line per file and the count of equal files.

    python benchmarks/refactor/compare.py BEFORE_DIR AFTER_DIR
"""
import json
import sys
from pathlib import Path

import numpy as np

A, B = Path(sys.argv[1]), Path(sys.argv[2])
VOLATILE = {"utc_time", "elapsed_s", "created", "git_commit", "seconds", "crops_per_second"}


def strip(x):
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k not in VOLATILE}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x


def diff(a, b, path=""):
    out = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only in {'after' if k in b else 'before'}")
            else:
                out += diff(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff(x, y, f"{path}[{i}]")
    elif a != b:
        out.append(f"{path}: {str(a)[:80]} != {str(b)[:80]}")
    return out


def compare(fa: Path, fb: Path) -> tuple[str, list[str]]:
    if fa.suffix == ".npz":
        za, zb = np.load(fa, allow_pickle=False), np.load(fb, allow_pickle=False)
        bad = [k for k in sorted(set(za) | set(zb)) if k not in za or k not in zb
               or not np.array_equal(za[k], zb[k])]
        return ("arrays-exact", bad)
    if fa.suffix == ".pt":
        import torch

        sa = torch.load(fa, map_location="cpu", weights_only=True)
        sb = torch.load(fb, map_location="cpu", weights_only=True)
        if "model" in sa and isinstance(sa["model"], dict):
            sa, sb = sa["model"], sb["model"]
        def same(x, y):
            if torch.is_tensor(x):
                return torch.is_tensor(y) and torch.equal(x, y)
            if isinstance(x, dict):
                return isinstance(y, dict) and set(x) == set(y) and all(same(x[k], y[k]) for k in x)
            if isinstance(x, list | tuple):
                return len(x) == len(y) and all(same(a, b) for a, b in zip(x, y))
            return x == y

        bad = [k for k in sorted(set(sa) | set(sb), key=str) if k not in sa or k not in sb
               or not same(sa[k], sb[k])]
        return ("tensors-exact", bad)
    ta = fa.read_bytes()
    tb = fb.read_bytes().replace(B.name.encode(), A.name.encode())  # the output dir's own name
    if ta == tb:
        return ("bytes", [])
    if fa.suffix == ".json" or fa.name.endswith(".out"):
        try:
            ja, jb = json.loads(ta), json.loads(tb)
            return ("json-minus-volatile", diff(strip(ja), strip(jb)))
        except ValueError:
            pass
    if fa.suffix == ".csv":
        la = [line.rsplit(",", 1)[0] for line in ta.decode().splitlines()]
        lb = [line.rsplit(",", 1)[0] for line in tb.decode().splitlines()]
        return ("csv-minus-last-column", [] if la == lb else ["differs"])
    return ("bytes", ["differs"])


files = sorted({p.relative_to(A) for p in A.rglob("*") if p.is_file() and "cache" not in p.parts}
               | {p.relative_to(B) for p in B.rglob("*") if p.is_file() and "cache" not in p.parts})
n_same = 0
for rel in files:
    fa, fb = A / rel, B / rel
    if not fa.exists() or not fb.exists():
        print(f"ONLY IN {'after' if fb.exists() else 'before'}: {rel}")
        continue
    how, bad = compare(fa, fb)
    if bad:
        print(f"DIFF {rel} ({how}): " + "; ".join(bad[:8]))
    else:
        n_same += 1
        print(f"same {rel} ({how})")
print(f"{n_same} of {len(files)} files equal")
