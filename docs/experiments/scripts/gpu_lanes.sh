# Sourced (not run) by the train_gpu*.sh scripts after they cd to the repository root and
# set RUNS: the LFW root of the packed crops, the `lrface distill` prefix every lane
# shares, the arc flags, and run_lanes, which starts lanes of the calling script in
# parallel, each under a time limit, then prints each lane's epochs.
PACK=${PACK:-.gpu/lfw-train.npz}
# the LFW root the crops were packed from (the caches are keyed by that path)
DATA=${LFW:-$(python3 -c "import numpy as np; print(np.load('$PACK')['root'])")}
W=${WORKERS:-3}
SMOKE=${SMOKE:-}
MBF="python3 -m lrface distill --data $DATA --student lrface-mbf --name lrface-mbf --workers $W --threads 2 --quiet"
H="--holdout-folds 1"
# the low-resolution ArcFace term of the shipped lrface-mbf stage (lane d of train_gpu_arc.sh)
ARC="--arc-weight 0.1 --arc-margin 0.3 --arc-scale 32 --arc-max-size 20"

run_lanes() {  # run_lanes SCRIPT SECONDS LANE...: runs `bash SCRIPT lane LANE` for each LANE
  local script=$1 seconds=$2 lane
  shift 2
  mkdir -p "$RUNS"
  for lane in "$@"; do
    timeout "$seconds" bash "$script" lane "$lane" > "$RUNS/lane-$lane.log" 2>&1 &
  done
  wait
  for lane in "$@"; do
    echo "== lane $lane"
    grep -E "^epoch [0-9]+:|card|Error|error" "$RUNS/lane-$lane.log" | tail -40
  done
}
