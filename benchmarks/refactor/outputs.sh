#!/bin/bash
# Reference outputs of the lrface code in CODE_DIR, for proving a refactor changes nothing:
# run it on a snapshot of the code before (`git archive OLD | tar -x -C CODE_DIR`) and after
# (same CODE_DIR path: paths end up in the outputs), then compare.py BEFORE AFTER.
#
#   benchmarks/refactor/outputs.sh CODE_DIR OUT_DIR SHARED_DIR PEOPLE_DIR
#
# SHARED_DIR: the project's ../shared (LFW, SCRFD); PEOPLE_DIR: a labelled folder made once
# by `python benchmarks/refactor/people.py SHARED_DIR/data/lfw PEOPLE_DIR` (12 LFW
# train-split identities x 3 photos).  Keep LRFACE_CACHE set to a warm crop cache.
set -u
CODE=$1; OUT=$2; SHARED=$3; D=$4
rm -rf "$OUT"; mkdir -p "$OUT"
export PYTHONPATH=$CODE LRFACE_HOME=$SHARED
cd "$CODE"
L="nice -n 5 python -m lrface"
LFW=$SHARED/data/lfw
$L --help > $OUT/help-main.txt 2>&1
for c in verify detect embed models benchmark distill adapt export gallery identify watch serve; do
  COLUMNS=100 $L $c --help > $OUT/help-$c.txt 2>&1
done
$L models list --json > $OUT/models-list.json 2>$OUT/models-list.err
$L embed tests/data/*.jpg --out $OUT/embed-auto.npz --quiet > $OUT/embed-auto.out 2>&1
$L embed tests/data/*.jpg --model lrface-tiny-16 --out $OUT/embed-tiny16.npz --quiet > $OUT/embed-tiny16.out 2>&1
$L embed tests/data/*.jpg --model lrface-mbf --no-detect --out $OUT/embed-nodetect.npz --quiet > $OUT/embed-nodetect.out 2>&1
$L verify tests/data/George_W_Bush_0001.jpg tests/data/George_W_Bush_0002.jpg --json > $OUT/verify-hr.json 2>&1
$L verify tests/data/Abel_Pacheco_0001.jpg tests/data/Abel_Pacheco_0004_36px.jpg --json > $OUT/verify-mixed.json 2>&1
$L verify tests/data/Abel_Pacheco_0001.jpg tests/data/Abel_Pacheco_0004_36px.jpg --model lrface-tiny-24 --json > $OUT/verify-tiny24.json 2>&1
$L gallery build $D --out $OUT/gallery.npz > $OUT/gallery.out 2>&1
$L identify tests/data/*.jpg --gallery $OUT/gallery.npz --json > $OUT/identify.json 2>&1
$L identify tests/data/Abel_Pacheco_0004_36px.jpg --gallery $OUT/gallery.npz --model lrface-mbf --json > $OUT/identify-mbf.json 2>&1
B="--no-cache --no-progress --json"
$L benchmark --protocol lfw --data $LFW --model mobilefacenet-arcface,lrface-mbf,lrface-tiny-16 --sizes 12,16 --max-pairs-per-fold 40 $B --out $OUT/bench-lfw > /dev/null 2>$OUT/bench-lfw.err
$L benchmark --protocol lfw --data $LFW --sizes 16 --max-pairs-per-fold 20 --mode hr-lr --probe-crop box $B --out $OUT/bench-lfw-box > /dev/null 2>$OUT/bench-lfw-box.err
LRFACE_CACHE=$OUT/cache $L benchmark --protocol folder --data $D --model lrface-mbf --sizes 16 $B --out $OUT/bench-folder > /dev/null 2>$OUT/bench-folder.err
$L benchmark --protocol tinyface --data $SHARED/data/tinyface-protocol $B --out $OUT/bench-tiny > /dev/null 2>$OUT/bench-tiny.err; echo "tinyface rc=$?" >> $OUT/bench-tiny.err
$L benchmark --protocol scface --data $D --no-progress --json --out $OUT/bench-scface > /dev/null 2>$OUT/bench-scface.err; echo "scface rc=$?" >> $OUT/bench-scface.err
$L benchmark --protocol lfw --data $D --out $OUT/bench-bad > /dev/null 2>$OUT/bench-bad.err; echo "bad rc=$?" >> $OUT/bench-bad.err
$L benchmark --protocol tinyface --data $LFW --sizes 12 --mode hr-hr --out $OUT/bench-ign > $OUT/bench-ign.out 2>&1; echo "ign rc=$?" >> $OUT/bench-ign.out
T="--epochs 1 --batch-size 8 --loss kd --val-sizes '' --max-steps 1 --threads 1 --quiet"
for s in lrface-tiny-16 lrface-mbf; do
  eval LRFACE_CACHE=$OUT/cache $L distill --data $D --out $OUT/distill-$s --student $s --seed 3 $T > $OUT/distill-$s.out 2>&1
  echo "rc=$?" >> $OUT/distill-$s.out
done
eval LRFACE_CACHE=$OUT/cache $L distill --data $D --out $OUT/distill-tinyw --student lrface-tiny --input-size 20 --width 32 --blocks 1 --head-channels 256 --seed 3 $T > $OUT/distill-tinyw.out 2>&1; echo "rc=$?" >> $OUT/distill-tinyw.out
eval LRFACE_CACHE=$OUT/cache $L distill --data $D --out $OUT/distill-custom --student my-student $T > $OUT/distill-custom.out 2>&1; echo "rc=$?" >> $OUT/distill-custom.out
echo done > $OUT/DONE
