#!/usr/bin/env bash
# The runs behind the shipped lrface-mbf (LFW train split only; CPU).
# Stage 1 (two lanes of 1 thread, same budget): 16 epochs, batch 64, lr 3e-4, sizes 8-32,
#   p_hr 0.1, seed 0, per-view teacher targets.
#     mbf-kd     : KD only
#     mbf-kdcrcd : KD + CRCD (beta 0.2, 200 warm-up steps)  -> the stage-1 model
# Stage 2: 24 more epochs from the stage-1 weights (--init), KD + CRCD (beta 0.2), flip-fused
#   teacher targets, 15 % full-resolution views, lr 2e-4 cosine, seed 1.  Its output
#   runs/shipped/mbf-stage2/lrface-mbf.{pt,json} is weights/lrface-mbf.{pt,json}.
# Resume any run with --resume runs/shipped/<run>/last.pt.  STAGE=2 skips stage 1 when
# runs/shipped/mbf-kdcrcd/lrface-mbf.pt already exists.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LFW:-../shared/data/lfw}
mkdir -p runs/shipped
if [ "${STAGE:-1}" = 1 ]; then
  COMMON="--data $DATA --student lrface-mbf --name lrface-mbf --epochs 16 --batch-size 64 --lr 3e-4 --sizes 8-32 --p-hr 0.1 --seed 0 --threads 1 --val-sizes 12,16 --val-every 4 --quiet"
  lrface distill $COMMON --loss kd --out runs/shipped/mbf-kd > runs/shipped-mbf-kd.log 2>&1 &
  lrface distill $COMMON --loss kd,crcd --beta 0.2 --crcd-warmup 200 --out runs/shipped/mbf-kdcrcd > runs/shipped-mbf-kdcrcd.log 2>&1 &
  wait
fi
lrface distill --data "$DATA" --student lrface-mbf --name lrface-mbf \
  --init runs/shipped/mbf-kdcrcd/lrface-mbf.pt --targets fused --loss kd,crcd --beta 0.2 \
  --crcd-warmup 200 --epochs 24 --batch-size 64 --lr 2e-4 --sizes 8-32 --p-hr 0.15 --seed 1 \
  --threads 2 --val-sizes 12,16 --val-every 4 --quiet --out runs/shipped/mbf-stage2 \
  > runs/shipped-mbf-stage2.log 2>&1
