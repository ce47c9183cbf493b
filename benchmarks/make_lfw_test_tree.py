"""Build ROOT/<identity>/<images> for the LFW test split (2,195 identities) from symlinks.

    python benchmarks/make_lfw_test_tree.py --data ../shared/data/lfw --out runs/lfw-test-tree

The folder protocol then uses the first image of each identity as the HR gallery and the
other images as (degraded) probes:

    lrface benchmark --protocol folder --data runs/lfw-test-tree --sizes 16,12 \
        --model lrface-mbf,mobilefacenet-arcface

Only identities of pairs folds 6-10 are linked, so no student ever trained on them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lrface.datasets.lfw import LFW


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="../shared/data/lfw")
    ap.add_argument("--out", default="runs/lfw-test-tree")
    args = ap.parse_args()
    lfw = LFW(args.data)
    out = Path(args.out)
    n = 0
    for rel in lfw.all_images:
        name = rel.split("/")[0]
        if name not in lfw.test_identities:
            continue
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            os.symlink(lfw.path(rel).resolve(), dst)
        n += 1
    print(f"{out}: {len(lfw.test_identities)} identities, {n} images")


if __name__ == "__main__":
    main()
