#!/usr/bin/env bash
# Native low-resolution student lrface-tiny-16 (16x16 input, trained from scratch by KD
# from the teacher on the LFW train split; 1 thread).  Resume: add --resume runs/shipped/tiny16/last.pt
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LFW:-../shared/data/lfw}
lrface distill --data "$DATA" --student lrface-tiny-16 --loss kd --epochs 60 --batch-size 128 \
  --lr 2e-3 --weight-decay 5e-4 --sizes 12-32 --p-hr 0.15 --seed 0 --threads 1 \
  --val-sizes 12,16 --val-every 10 --quiet --out runs/shipped/tiny16 "$@"
