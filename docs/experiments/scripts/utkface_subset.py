#!/usr/bin/env python
"""Write the UTKFace subset of docs/experiments/utkface-extra-identities.md: the photos of
``images/`` sorted by name, byte-identical copies removed (the first name kept), every
second one kept; one path a line, relative to the list's folder (``--data
unlabelled:LIST``).

    python docs/experiments/scripts/utkface_subset.py \
        ../shared/data/utkface/images runs/utk-half.txt
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--every", type=int, default=2)
    a = ap.parse_args()
    seen: set[str] = set()
    unique = []
    for p in sorted(a.images.iterdir()):
        h = hashlib.sha256(p.read_bytes()).hexdigest()
        if h not in seen:
            seen.add(h)
            unique.append(p)
    keep = unique[:: a.every]
    base = a.out.resolve().parent
    a.out.write_text("".join(os.path.relpath(p.resolve(), base) + "\n" for p in keep))
    print(f"{len(unique)} distinct photos; kept every {a.every}th: {len(keep)} -> {a.out}")


if __name__ == "__main__":
    main()
