#!/usr/bin/env bash
# Ablation of distillation losses, same data (LFW train split) and budget (3 epochs,
# batch 64, lr 2e-4, sizes 8-32, seed 0) for every row.  Two lanes of one thread each
# run side by side on a 2-core machine.  Outputs: runs/ablation/<recipe>/ (log.csv,
# history.json, card).  Evaluate each with benchmarks/eval_students.sh.
set -euo pipefail
cd "$(dirname "$0")/../../.."
DATA=${LFW:-../shared/data/lfw}
COMMON="--data $DATA --student lrface-mbf --epochs 3 --batch-size 64 --lr 2e-4 --sizes 8-32 --seed 0 --threads 1 --val-sizes 12,16 --quiet"
lane1() {
  lrface distill $COMMON --loss kd --out runs/ablation/kd --name abl-kd
  lrface distill $COMMON --loss kd,rkd --gamma 1 --out runs/ablation/kd-rkd --name abl-kd-rkd
}
lane2() {
  lrface distill $COMMON --loss kd,crcd --beta 1 --out runs/ablation/kd-crcd --name abl-kd-crcd
  lrface distill $COMMON --loss kd,crcd,nce --beta 1 --nce-weight 0.1 --out runs/ablation/kd-crcd-nce --name abl-kd-crcd-nce
}
lane1 > runs/ablation-lane1.log 2>&1 &
lane2 > runs/ablation-lane2.log 2>&1 &
wait
