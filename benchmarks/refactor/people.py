"""A labelled folder of 12 LFW train-split identities x 3 photos (never test identities):
``python benchmarks/refactor/people.py LFW_ROOT OUT_DIR`` (see outputs.sh)."""

import shutil
import sys
from collections import Counter
from pathlib import Path

from lrface.datasets.lfw import LFW


def main(lfw_root: str, out: str) -> None:
    lfw = LFW(lfw_root)
    counts = Counter(r.split("/")[0] for r in lfw.train_images())
    names = [k for k in sorted(counts) if counts[k] >= 3][:12]
    for name in names:
        (Path(out) / name).mkdir(parents=True, exist_ok=True)
        for f in sorted((Path(lfw_root) / "lfw-deepfunneled" / name).iterdir())[:3]:
            shutil.copy(f, Path(out) / name / f.name)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
