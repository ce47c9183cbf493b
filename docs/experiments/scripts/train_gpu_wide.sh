#!/usr/bin/env bash
# Fourth GPU session for lrface-mbf (one H200, 16 cores): a wider MobileFaceNet.  The
# student's bottlenecks are widened x2 inside (--mbf-expand 2, 1.8 M parameters) from a
# narrow init without changing its function (Net2WiderNet), then trained with the stage
# recipe that made lrface-mbf 46322d82... (lane d of train_gpu_arc.sh: KD + CRCD + arc on
# views <= 20 px, cached flip-fused targets, 24 epochs, lr 1e-4).
#
#   lanes p, q (held-out fold 1): the wide stage from HINIT (lane a of train_gpu_arc.sh),
#          seeds 6 and 7: the held-out twins of lanes e and g of train_gpu_arc.sh (the
#          same stage at the normal width).
#   lane r (all train images): the wide stage from the shipped weights (46322d82...), seed 6.
#
# Data and setup as in train_gpu_arc.sh (packed JPEG crops, .gpu carried); then
#   HINIT=.gpu/h-long36-best.pt WORKERS=4 bash docs/experiments/scripts/train_gpu_wide.sh
# SMOKE="--max-steps 2 --epochs 1 --val-every 0" checks the wiring in a minute on a CPU.
set -uo pipefail
cd "$(dirname "$0")/../../.."
RUNS=${RUNS:-runs/gpu4}
source docs/experiments/scripts/gpu_lanes.sh
WIDE="--mbf-expand 2 --targets fused --loss kd,crcd,arc --beta 0.2 --crcd-warmup 100 $ARC --epochs 24 --batch-size 64 --lr 1e-4 --sizes 8-40 --p-hr 0.2 --seed 6 --val-sizes 8,12,16,24 --val-every 4"
HINIT=${HINIT:-runs/gpu2/h-long36/best.pt}

if [ "${1:-}" = lane ]; then
  case "$2" in
    p) $MBF $H --init "$HINIT" $WIDE $SMOKE --out "$RUNS/h-stage-wide-s6" ;;
    q) $MBF $H --init "$HINIT" $WIDE --seed 7 $SMOKE --out "$RUNS/h-stage-wide-s7" ;;
    r) $MBF --init weights/lrface-mbf.pt $WIDE $SMOKE --out "$RUNS/f-stage2-wide" ;;
  esac
  exit
fi

# shellcheck disable=SC2086
run_lanes "$0" "${LANE_SECONDS:-380}" ${LANES:-p q r}
