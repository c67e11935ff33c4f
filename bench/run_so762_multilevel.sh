#!/usr/bin/env bash
# Trains the multi-level x-vector KD rows of the speechocean762 benchmark
# (bench/RESULTS.md), one after the other, in recipes/MiniSpeakers:
#   - the x-vector teacher (teacher_xvector.yaml: 512-512-512-512-1500,
#     512-d, 8 epochs, 2-s crops), trained first if missing, recorded in
#     bench/runs/so762/teacher_xvector/1986/;
#   - the small x-vector student (ml.yaml: 160-160-160-160-480, 128-d) at
#     each --ml_level of LEVELS (default: nokd utt frame concat), recorded
#     in bench/runs/so762/ml/<level>/<seed>/. The teacher runs live (the
#     frame-level taps are not in the teacher cache); the students share
#     the ECAPA rows' 4 epochs and 8 fixed views per segment.
#   bash bench/run_so762_multilevel.sh SO762_DIR DATA_FOLDER [SEED [LEVELS \
#       [CHANNELS WIDE_CHANNELS EMB_DIM]]]
# With CHANNELS WIDE_CHANNELS EMB_DIM (e.g. 64 192 64) the student has
# that width instead, and its runs go to ml_c<CHANNELS>/<level>/<seed>/.
# A recorded run is skipped (RERUN=1 retrains it); an interrupted one
# resumes. Then: python bench/tables.py; python bench/plots.py
set -euo pipefail
source "$(dirname "$0")/so762_common.sh"
so762_init "$1" "$2"
seed=${3:-1986}
levels=${4:-"nokd utt frame concat"}
teacher=teacher_xvector/1986
if ! so762_recorded "$teacher"; then
  so762_train "$teacher" train_teacher.py teacher_xvector.yaml
  so762_record "$teacher"
fi
group=ml width=()
if [ $# -ge 7 ]; then
  group=ml_c$5
  width=(--channels="$5" --wide_channels="$6" --emb_dim="$7")
fi
for level in $levels; do
  so762_run "$group/$level/$seed" train_kd.py ml.yaml --ml_level="$level" \
    "${students[@]}" --teacher_source="results/so762/$teacher/pretrained" \
    --seed="$seed" ${width[@]+"${width[@]}"}
done
