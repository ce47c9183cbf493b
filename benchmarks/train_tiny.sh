#!/usr/bin/env bash
# Native low-resolution student lrface-tiny-16 (16x16 input, trained from scratch on the
# LFW train split; 1 thread).  Shipped recipe: KD + instance InfoNCE (weight 0.1),
# 25 epochs, weight decay 5e-3, sizes 12-24 (test hr-lr 16 px 90.00).  An earlier 60-epoch
# KD-only run (wd 5e-4, sizes 12-32) overfitted the 6,922 training faces: 88.90 at 16 px.
# Resume: add --resume runs/shipped/tiny16b/last.pt
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LFW:-../shared/data/lfw}
lrface distill --data "$DATA" --student lrface-tiny-16 --loss kd,nce --nce-weight 0.1 --epochs 25 \
  --batch-size 128 --lr 2e-3 --weight-decay 5e-3 --sizes 12-24 --p-hr 0.1 --seed 0 --threads 1 \
  --val-sizes 12,16 --val-every 5 --quiet --out runs/shipped/tiny16b "$@"
