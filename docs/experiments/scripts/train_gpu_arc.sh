#!/usr/bin/env bash
# Second GPU session for lrface-mbf (one H200, 16 cores, 15 device minutes in all): does the
# ArcFace term on low-resolution views (--loss arc --arc-max-size 20, identity prototypes
# from the teacher) help when trained from the teacher for a GPU-length schedule?
# Four lanes in parallel, each a plain `lrface distill` on the LFW train split:
#
#   lane a (held-out fold 1): control, KD + CRCD from the teacher, 36 epochs ("long36").
#   lane b (held-out fold 1): the same plus arc on views <= 20 px.
#   lane c (all train images): long36 + arc20, the candidate of that recipe.
#   lane d (all train images): an arc20 stage of 24 epochs (lr 1e-4) from STAGE_INIT, the
#          shipped weights of the time (10c18ec5..., the 64-epoch run; since then
#          `RECIPE=long bash benchmarks/train_shipped.sh` makes them), the GPU-length
#          version of the CPU stage runs/stage4/arc20.  Lane d became lrface-mbf 46322d82...
#   LANES="e f g h" (second call): lane d's stage on held-out data, from lane a's weights
#          (HINIT), with and without the arc term, seeds 6 and 7.
#   LANES="i j" (third call): lane d with seed 7, and lane d without the arc term.
#
# Lanes a and b differ only in the arc term (same seed, data order, degradations); their
# validation is on the 600 pairs of fold 1, identities never trained on.  Data as in
# train_gpu.sh (the machine has no LFW copy):
#
#   python docs/experiments/scripts/lfw_crop_pack.py pack --data ../shared/data/lfw --out .gpu/lfw-train.npz
#   cp ../shared/models/mobilefacenet_arcface.onnx .gpu/
#   (device, .gpu carried) copy the teacher to <root>/../../models, then
#   export LRFACE_HOME=<root>/../.. LRFACE_CACHE=/some/cache PYTHONPATH=$PWD
#   python3 docs/experiments/scripts/lfw_crop_pack.py unpack .gpu/lfw-train.npz --holdout-folds 1
#   bash docs/experiments/scripts/train_gpu_arc.sh  # results under $RUNS (runs/gpu2)
#
# SMOKE="--max-steps 2 --epochs 1 --val-every 0" checks the wiring in a minute on a CPU.
set -uo pipefail
cd "$(dirname "$0")/../../.."
RUNS=${RUNS:-runs/gpu2}
source docs/experiments/scripts/gpu_lanes.sh
LONG="--targets fused --beta 0.2 --crcd-warmup 200 --epochs 36 --batch-size 64 --lr 3e-4 --sizes 8-40 --p-hr 0.2 --seed 0 --val-sizes 8,12,16,24 --val-every 4"
STAGE="--targets fused --loss kd,crcd,arc --beta 0.2 --crcd-warmup 100 $ARC --epochs 24 --batch-size 64 --lr 1e-4 --sizes 8-40 --p-hr 0.2 --seed 6 --val-sizes 8,12,16,24 --val-every 4"
STAGE_INIT=${STAGE_INIT:-weights/lrface-mbf.pt}
HINIT=${HINIT:-$RUNS/h-long36/best.pt}

if [ "${1:-}" = lane ]; then
  case "$2" in
    a) $MBF $H $LONG --loss kd,crcd $SMOKE --out "$RUNS/h-long36" ;;
    b) $MBF $H $LONG --loss kd,crcd,arc $ARC $SMOKE --out "$RUNS/h-long36-arc20" ;;
    c) $MBF $LONG --loss kd,crcd,arc $ARC $SMOKE --out "$RUNS/f-long36-arc20" ;;
    d) $MBF --init "$STAGE_INIT" $STAGE $SMOKE --out "$RUNS/f-stage-arc20" ;;
    # second call: held-out A/B of lane d's stage, from lane a's weights (two seeds)
    e) $MBF $H --init "$HINIT" $STAGE $SMOKE --out "$RUNS/h-stage-arc20-s6" ;;
    f) $MBF $H --init "$HINIT" $STAGE --loss kd,crcd $SMOKE --out "$RUNS/h-stage-s6" ;;
    g) $MBF $H --init "$HINIT" $STAGE --seed 7 $SMOKE --out "$RUNS/h-stage-arc20-s7" ;;
    h) $MBF $H --init "$HINIT" $STAGE --loss kd,crcd --seed 7 $SMOKE --out "$RUNS/h-stage-s7" ;;
    # third call (evidence only): lane d with another seed, and without the arc term
    i) $MBF --init "$STAGE_INIT" $STAGE --seed 7 $SMOKE --out "$RUNS/f-stage-arc20-s7" ;;
    j) $MBF --init "$STAGE_INIT" $STAGE --loss kd,crcd $SMOKE --out "$RUNS/f-stage-s6" ;;
  esac
  exit
fi

# shellcheck disable=SC2086
run_lanes "$0" "${LANE_SECONDS:-400}" ${LANES:-a b c d}
