#!/usr/bin/env bash
# Native low-resolution students, trained from scratch on the LFW train split.
#   bash benchmarks/train_tiny.sh        # lrface-tiny-16 (16x16 input), 1 thread, ~27 min here
#                                        # + stage 2 (configs/lrface-tiny-16.toml, ~63 min)
#   bash benchmarks/train_tiny.sh 24     # lrface-tiny-24 (24x24 input), 2 threads, ~25 min here
#   bash benchmarks/train_tiny.sh 32     # lrface-tiny-32 (32x32 input), 2 threads
# The recipes are configs/lrface-tiny-<SIZE>.toml (-16: lrface-tiny-16-scratch.toml, then
# 10 epochs of lrface-tiny-16.toml with lrface-mbf as a second teacher): width 32, 256-channel head (~283 k
# parameters), KD + instance InfoNCE (weight 0.1) with *online* teacher targets ("consistent
# teaching": the teacher embeds every augmented HR view), 30 epochs, batch 128, lr 2e-3,
# weight decay 5e-3.  Training sizes are centred on the input: 12-24 px for -16, 16-32 px
# for -24, 24-40 px for -32.  Test figures: see RESULTS.md.
# lrface-tiny-16: the same recipe with cached flip-fused targets (--targets fused, 7 min)
# gave 89.80 at 16 px vs 90.30; earlier 512-channel, width-64 students (1.0 M parameters)
# reached 90.00 but only ~3.7x the teacher's throughput.
# Resume: add --resume runs/shipped/tiny<SIZE>-w32-online/last.pt after the size.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LFW:-../shared/data/lfw}
SIZE=16
if [[ ${1:-} =~ ^[0-9]+$ ]]; then SIZE=$1; shift; fi
case "$SIZE" in
  16) THREADS=1 ;;
  24|32) THREADS=2 ;;
  *) echo "train_tiny.sh: size must be 16, 24 or 32 (got $SIZE)" >&2; exit 2 ;;
esac
if [[ $SIZE == 16 ]]; then  # stage 1 from scratch, then stage 2 with lrface-mbf as a second teacher
  LRFACE_THREADS=$THREADS lrface distill --config configs/lrface-tiny-16-scratch.toml \
    --data "$DATA" --quiet --out runs/shipped/tiny16-w32-online "$@"
  LRFACE_THREADS=$THREADS lrface distill --config configs/lrface-tiny-16.toml --data "$DATA" \
    --quiet --out runs/shipped/tiny16-mbf
  exit 0
fi
LRFACE_THREADS=$THREADS lrface distill --config "configs/lrface-tiny-$SIZE.toml" --data "$DATA" \
  --quiet --out "runs/shipped/tiny$SIZE-w32-online" "$@"
