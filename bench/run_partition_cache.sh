#!/usr/bin/env bash
# Trains the runs behind the "TRKD triage temperature" and "teacher cache"
# sections of bench/RESULTS.md, one after the other, in
# recipes/MiniSpeakers (a finished run is skipped), each 4 epochs of the
# ECAPA C=96 student from the ECAPA teacher TEACHER, tau 1 -> 0.05 over
# epochs 1-4, seeds SEEDS:
#   tab4/trkd_T/<seed>        TRKD, triage at T = 4 (the default)
#   tab4/trkd_cache/<seed>    the same, teacher outputs from a teacher cache
#                             (8 views per segment, float16 logits)
#   tab4/trkd_T1/<seed>       TRKD, triage at temperature 1 (--partition_T=1.0)
# Usage: bash bench/run_partition_cache.sh DATA_FOLDER TEACHER [SEEDS]
# Then: python bench/partition_cache_table.py
set -euo pipefail
data=$(realpath "$1")
teacher=$(realpath "$2")
seeds=${3:-"1986 1987 1988"}
cd "$(dirname "$0")/../recipes/MiniSpeakers"
common=(--data_folder="$data" --noprogressbar --number_of_epochs=4
        --teacher_source="$teacher"
        "--tau_schedule={start_epoch: 1, end_epoch: 4}")
run() {  # output folder, options...
  local out=$1; shift
  if [ -f "$out/verification.json" ] && grep -q student "$out/verification.json"; then
    echo "done: $out"; return
  fi
  echo "$(date -u +%FT%TZ) start $out"
  local t0; t0=$(date +%s)
  python train_kd.py hparams/trkd.yaml "${common[@]}" "$@" \
    --output_folder="$out"
  echo "$(( $(date +%s) - t0 ))" > "$out/wall_seconds.txt"
}
for s in $seeds; do
  run "results/mini/tab4/trkd_T/$s" --seed="$s"
done
for s in $seeds; do
  run "results/mini/tab4/trkd_cache/$s" --seed="$s" --train_views=8 \
    "--teacher_cache={enabled: True, folder: results/mini/teacher_cache/$s}"
done
for s in $seeds; do
  run "results/mini/tab4/trkd_T1/$s" --seed="$s" --partition_T=1.0
done
