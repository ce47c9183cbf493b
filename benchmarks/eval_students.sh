#!/usr/bin/env bash
# Every figure of benchmarks/RESULTS.md for the students, in order.  CPU, 2 cores.
# Needs LRFACE_HOME pointing at ../shared (teacher, detectors, LFW).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${LFW:-../shared/data/lfw}
MODELS=lrface-mbf,lrface-tiny-16,mobilefacenet-arcface
mkdir -p runs/bench

# 1. LFW test split, HR side by the teacher (deployment: teacher-enrolled gallery), all modes
lrface benchmark --protocol lfw --data "$DATA" --split test --mode hr-hr,hr-lr,lr-lr \
  --sizes 8,12,16,20,24,32 --model $MODELS --out runs/bench/lfw-test --no-progress
# 2. the same with student-only galleries (the student embeds both sides)
lrface benchmark --protocol lfw --data "$DATA" --split test --mode hr-lr \
  --sizes 8,12,16,20,24,32 --model lrface-mbf,lrface-tiny-16 --hr-model self \
  --out runs/bench/lfw-test-self --no-progress
# 3. ablation rows (same data and budget: 3 epochs; see docs/experiments/scripts/ablation.sh)
lrface benchmark --protocol lfw --data "$DATA" --split test --mode hr-lr --sizes 8,12,16,24 \
  --model runs/ablation/kd/abl-kd.json,runs/ablation/kd-rkd/abl-kd-rkd.json,runs/ablation/kd-crcd/abl-kd-crcd.json,runs/ablation/kd-crcd-nce/abl-kd-crcd-nce.json \
  --out runs/bench/ablation --no-progress
# 4. identification, folder protocol on the LFW test split (2,195 identities)
python benchmarks/make_lfw_test_tree.py --data "$DATA" --out runs/lfw-test-tree
lrface benchmark --protocol folder --data runs/lfw-test-tree --sizes 16,12 --model $MODELS \
  --out runs/bench/folder --no-progress
lrface benchmark --protocol folder --data runs/lfw-test-tree --sizes 16,12 --model $MODELS \
  --nonmated-fraction 0.1 --out runs/bench/folder-open --no-progress
# 4b. `lrface identify` on the LFW test gallery with the rest of LFW as distractors,
#     exact (numpy) vs FAISS backends
python benchmarks/lfw_identify.py --data "$DATA" --out runs/lfw-identify --sizes 16,12 \
  --models $MODELS --faiss
# 5. throughput, one run, ratios to the teacher
python benchmarks/throughput.py --onnx --batch-sizes 1,256 --json runs/bench/throughput.json
# 5b. `lrface embed` on 5,000 LFW face crops (16 px): crops/s per model, kill + resume
python benchmarks/embed_resume.py --data "$DATA" --out runs/embed5k --size 16 --n 5000 \
  --models mobilefacenet-arcface,lrface-tiny-16,lrface-mbf
# 6. end to end through detection, 36x36 second photo, default model and threshold
python benchmarks/e2e_verify_16px.py --data "$DATA" --json runs/bench/e2e.json
