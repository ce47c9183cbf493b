#!/usr/bin/env bash
# Native low-resolution student lrface-tiny-16 (16x16 input, 283 k parameters: width 32,
# 256-channel head), trained from scratch on the LFW train split, 1 thread (~27 min here).
# Shipped recipe: KD + instance InfoNCE (weight 0.1) with *online* teacher targets
# ("consistent teaching": the teacher embeds every augmented HR view), 30 epochs, batch 128,
# lr 2e-3, weight decay 5e-3, sizes 12-24.  Test hr-lr 16 px 90.30 (see RESULTS.md).
# The same recipe with cached flip-fused targets (--targets fused, 7 min) gave 89.80.
# Earlier 512-channel, width-64 students (1.0 M parameters) reached 90.00 but only ~3.7x
# the teacher's throughput.  Resume: add --resume runs/shipped/tiny16-w32-online/last.pt
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LFW:-../shared/data/lfw}
LRFACE_THREADS=1 lrface distill --data "$DATA" --student lrface-tiny-16 --width 32 \
  --head-channels 256 --targets online --loss kd,nce --nce-weight 0.1 --epochs 30 \
  --batch-size 128 --lr 2e-3 --weight-decay 5e-3 --sizes 12-24 --p-hr 0.1 --seed 0 \
  --threads 1 --val-sizes 12,16 --val-every 10 --quiet --out runs/shipped/tiny16-w32-online "$@"
