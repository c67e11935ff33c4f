#!/usr/bin/env bash
# Trains the runs of the speechocean762 method table (bench/RESULTS.md),
# one after the other, in recipes/MiniSpeakers (a finished run is
# skipped; an interrupted one resumes), then records each run in
# bench/runs/so762/tab/<row>/<seed>/ (bench/so762_common.sh).
#   bash bench/run_so762_table.sh SO762_DIR DATA_FOLDER [SEEDS]
# SO762_DIR: the extracted speechocean762 (WAVE/, train/, test/);
# DATA_FOLDER: ../shared/data (the mini corpus' speakers). The teacher
# (ECAPA C=256, 8 epochs, 2-s crops) is trained first when a run needs it
# and it is missing. Students: ECAPA C=96, 4 epochs, 2-s crops, 8 views
# per segment shared by every seed (views_seed 1986) and one teacher cache
# for all KD runs.
# A run already recorded in bench/runs/so762/tab is skipped too (the
# records are committed, the checkpoints are not): RERUN=1 retrains it.
# Then: python bench/tables.py; python bench/plots.py
set -euo pipefail
source "$(dirname "$0")/so762_common.sh"
so762_init "$1" "$2"
seeds=${3:-"1986 1987 1988"}
teacher=teacher_ecapa/1986
kd=("${students[@]}" --teacher_source="results/so762/$teacher/pretrained"
    "--teacher_cache={enabled: True, folder: results/so762/teacher_cache}")
row() {  # row yaml seed options...
  local row=$1 yaml=$2 seed=$3
  shift 3
  if so762_recorded "tab/$row/$seed"; then
    echo "recorded: bench/runs/so762/tab/$row/$seed (RERUN=1 retrains)"
    return
  fi
  so762_train "$teacher" train_teacher.py teacher_ecapa.yaml
  so762_train "tab/$row/$seed" train_kd.py "$yaml" "${kd[@]}" --seed="$seed" "$@"
  so762_record "tab/$row/$seed"
}
tau="--tau_schedule={start_epoch: 1, end_epoch: 4}"
for s in $seeds; do
  row nokd nokd.yaml "$s"
  row trkd trkd.yaml "$s" "$tau"
  row kd kd.yaml "$s"
  row dkd dkd.yaml "$s"
done
for s in $seeds; do
  row gkd gkd.yaml "$s"
  row trkd_T1 trkd.yaml "$s" "$tau" --partition_T=1.0
  row trkd_fixed_tau trkd.yaml "$s" --tau_schedule=0.05
done
