#!/usr/bin/env bash
# The long runs behind the shipped students (LFW train split only; CPU, 1 thread each).
#   mbf-kd     : KD only                       } same budget: 16 epochs, batch 64, lr 3e-4,
#   mbf-kdcrcd : KD + CRCD (beta 0.2, warm-up) } sizes 8-32, p_hr 0.1, seed 0
# The better of the two by validation (LFW folds 1-5, hr-lr 12/16 px) is copied to
# weights/lrface-mbf.{pt,json}.  Resume any run with --resume runs/shipped/<run>/last.pt.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LFW:-../shared/data/lfw}
COMMON="--data $DATA --student lrface-mbf --name lrface-mbf --epochs 16 --batch-size 64 --lr 3e-4 --sizes 8-32 --p-hr 0.1 --seed 0 --threads 1 --val-sizes 12,16 --val-every 4 --quiet"
lrface distill $COMMON --loss kd --out runs/shipped/mbf-kd > runs/shipped-mbf-kd.log 2>&1 &
lrface distill $COMMON --loss kd,crcd --beta 0.2 --crcd-warmup 200 --out runs/shipped/mbf-kdcrcd > runs/shipped-mbf-kdcrcd.log 2>&1 &
wait
