#!/usr/bin/env bash
# Second GPU session for lrface-mbf (one H200, 16 cores, 15 device minutes in all): does the
# ArcFace term on low-resolution views (--loss arc --arc-max-size 20, identity prototypes
# from the teacher) help when trained from the teacher for a GPU-length schedule?
# Four lanes in parallel, each a plain `lrface distill` on the LFW train split:
#
#   lane a (held-out fold 1): control, KD + CRCD from the teacher, 36 epochs ("long36").
#   lane b (held-out fold 1): the same plus arc on views <= 20 px.
#   lane c (all train images): long36 + arc20, the candidate of that recipe.
#   lane d (all train images): an arc20 stage of 24 epochs (lr 1e-4) from the shipped
#          weights, the GPU-length version of the CPU stage runs/stage4/arc20.
#   LANES="e f g h" (second call): lane d's stage on held-out data, from lane a's weights
#          (HINIT), with and without the arc term, seeds 6 and 7.
#
# Lanes a and b differ only in the arc term (same seed, data order, degradations); their
# validation is on the 600 pairs of fold 1, identities never trained on.  Data as in
# train_gpu.sh (the machine has no LFW copy):
#
#   python benchmarks/lfw_crop_pack.py pack --data ../shared/data/lfw --out .gpu/lfw-train.npz
#   cp ../shared/models/mobilefacenet_arcface.onnx .gpu/
#   (device, .gpu carried) copy the teacher to <root>/../../models, then
#   export LRFACE_HOME=<root>/../.. LRFACE_CACHE=/some/cache PYTHONPATH=$PWD
#   python3 benchmarks/lfw_crop_pack.py unpack .gpu/lfw-train.npz --holdout-folds 1
#   bash benchmarks/train_gpu_arc.sh                 # results under $RUNS (runs/gpu2)
#
# SMOKE="--max-steps 2 --epochs 1 --val-every 0" checks the wiring in a minute on a CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
PACK=${PACK:-.gpu/lfw-train.npz}
DATA=${LFW:-$(python3 -c "import numpy as np; print(np.load('$PACK')['root'])")}
RUNS=${RUNS:-runs/gpu2}
W=${WORKERS:-3}
LANE_SECONDS=${LANE_SECONDS:-400}
SMOKE=${SMOKE:-}
MBF="python3 -m lrface distill --data $DATA --student lrface-mbf --name lrface-mbf --workers $W --threads 2 --quiet"
LONG="--targets fused --beta 0.2 --crcd-warmup 200 --epochs 36 --batch-size 64 --lr 3e-4 --sizes 8-40 --p-hr 0.2 --seed 0 --val-sizes 8,12,16,24 --val-every 4"
ARC="--arc-weight 0.1 --arc-margin 0.3 --arc-scale 32 --arc-max-size 20"
STAGE="--init weights/lrface-mbf.pt --targets fused --loss kd,crcd,arc --beta 0.2 --crcd-warmup 100 $ARC --epochs 24 --batch-size 64 --lr 1e-4 --sizes 8-40 --p-hr 0.2 --seed 6 --val-sizes 8,12,16,24 --val-every 4"
H="--holdout-folds 1"
HINIT=${HINIT:-$RUNS/h-long36/best.pt}
LANES=${LANES:-a b c d}

if [ "${1:-}" = lane ]; then
  case "$2" in
    a) $MBF $H $LONG --loss kd,crcd $SMOKE --out "$RUNS/h-long36" ;;
    b) $MBF $H $LONG --loss kd,crcd,arc $ARC $SMOKE --out "$RUNS/h-long36-arc20" ;;
    c) $MBF $LONG --loss kd,crcd,arc $ARC $SMOKE --out "$RUNS/f-long36-arc20" ;;
    d) $MBF $STAGE $SMOKE --out "$RUNS/f-stage-arc20" ;;
    # second call: held-out A/B of lane d's stage, from lane a's weights (two seeds)
    e) $MBF $H ${STAGE/weights\/lrface-mbf.pt/$HINIT} $SMOKE --out "$RUNS/h-stage-arc20-s6" ;;
    f) $MBF $H ${STAGE/weights\/lrface-mbf.pt/$HINIT} --loss kd,crcd $SMOKE --out "$RUNS/h-stage-s6" ;;
    g) $MBF $H ${STAGE/weights\/lrface-mbf.pt/$HINIT} --seed 7 $SMOKE --out "$RUNS/h-stage-arc20-s7" ;;
    h) $MBF $H ${STAGE/weights\/lrface-mbf.pt/$HINIT} --loss kd,crcd --seed 7 $SMOKE --out "$RUNS/h-stage-s7" ;;
  esac
  exit
fi

mkdir -p "$RUNS"
for lane in $LANES; do
  timeout "$LANE_SECONDS" bash "$0" lane "$lane" > "$RUNS/lane-$lane.log" 2>&1 &
done
wait
for lane in $LANES; do echo "== lane $lane"; grep -E "^epoch [0-9]+:|card|Error|error" "$RUNS/lane-$lane.log" | tail -40; done
