#!/usr/bin/env bash
# Third GPU session for lrface-mbf (one H200, 16 cores): "function matching" -- online,
# flip-fused teacher targets (the teacher, as a torch copy on the GPU, embeds each augmented
# HR view) with blended views (--mixup 0.5: half the views mix two training faces, and the
# teacher embeds the blend) -- as the 24-epoch stage that made lrface-mbf 46322d82...
# (lane d of train_gpu_arc.sh: KD + CRCD + arc on views <= 20 px, lr 1e-4).
# Four lanes in parallel, each a plain `lrface distill` on the LFW train split:
#
#   lanes k, l (held-out fold 1): the FM stage from HINIT (lane a of train_gpu_arc.sh, KD +
#          CRCD from the teacher, 36 epochs), seeds 6 and 7: the held-out twins of lanes e
#          and g of train_gpu_arc.sh, which ran the same stage with cached fused targets.
#   lane m (all train images): the FM stage from STAGE_INIT (10c18ec5..., the 64-epoch run
#          = `RECIPE=long bash benchmarks/train_shipped.sh`), seed 6: lane d with FM.
#   lanes n, o (all train images): the FM stage from the shipped weights (46322d82...),
#          seeds 6 and 7.  The call ran LANES="k l n o" (lane m's init file did not fit in
#          the 64 MiB a device call carries beside the packed crops).
#
# Data and setup as in train_gpu_arc.sh (packed JPEG crops, .gpu carried); then
#   HINIT=.gpu/h-long36-best.pt bash docs/experiments/scripts/train_gpu_fm.sh
# SMOKE="--max-steps 2 --epochs 1 --val-every 0" checks the wiring in a minute on a CPU.
set -uo pipefail
cd "$(dirname "$0")/../../.."
RUNS=${RUNS:-runs/gpu3}
source docs/experiments/scripts/gpu_lanes.sh
FM="--targets online-fused --mixup 0.5 --loss kd,crcd,arc --beta 0.2 --crcd-warmup 100 $ARC --epochs 24 --batch-size 64 --lr 1e-4 --sizes 8-40 --p-hr 0.2 --seed 6 --val-sizes 8,12,16,24 --val-every 4"
STAGE_INIT=${STAGE_INIT:-runs/shipped-10c18ec5/lrface-mbf.pt}
HINIT=${HINIT:-runs/gpu2/h-long36/best.pt}

if [ "${1:-}" = lane ]; then
  case "$2" in
    k) $MBF $H --init "$HINIT" $FM $SMOKE --out "$RUNS/h-stage-fm-s6" ;;
    l) $MBF $H --init "$HINIT" $FM --seed 7 $SMOKE --out "$RUNS/h-stage-fm-s7" ;;
    m) $MBF --init "$STAGE_INIT" $FM $SMOKE --out "$RUNS/f-stage-fm" ;;
    n) $MBF --init weights/lrface-mbf.pt $FM $SMOKE --out "$RUNS/f-stage2-fm" ;;
    o) $MBF --init weights/lrface-mbf.pt $FM --seed 7 $SMOKE --out "$RUNS/f-stage2-fm-s7" ;;
  esac
  exit
fi

# shellcheck disable=SC2086
run_lanes "$0" "${LANE_SECONDS:-420}" ${LANES:-k l n o}
