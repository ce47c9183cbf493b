"""`lrface distill` under torchrun with 2 CPU processes (gloo): both ranks end identical."""

import os
import shutil
import subprocess
import sys

import torch
from conftest import LFW_ROOT


def test_two_process_ddp_ranks_agree(tmp_path):
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    out = tmp_path / "ddp"
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "lrface",
        "distill",
        "--data",
        str(LFW_ROOT),
        "--out",
        str(out),
        "--student",
        "lrface-tiny-16",
        "--limit",
        "64",
        "--batch-size",
        "16",
        "--epochs",
        "2",
        "--loss",
        "kd,crcd",
        "--crcd-warmup",
        "2",
        "--val-sizes",
        "",
        "--threads",
        "1",
        "--save-rank-weights",
        "--quiet",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    init = torch.load(out / "last.pt", weights_only=False)
    # 64 faces, global batch 16 split over 2 ranks: 4 steps per epoch, 2 epochs
    assert init["step"] == 8 and init["epoch"] == 2
    assert (out / "lrface-tiny-16.json").is_file()
