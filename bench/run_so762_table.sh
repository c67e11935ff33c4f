#!/usr/bin/env bash
# Trains the runs of the speechocean762 method table (bench/RESULTS.md),
# one after the other, in recipes/MiniSpeakers (a finished run is
# skipped; an interrupted one resumes), then records each run in
# bench/runs/so762/tab/<row>/<seed>/ (verification.json, train_log.txt,
# wall_seconds.txt, card.md, replicates.json).
#   bash bench/run_so762_table.sh SO762_DIR DATA_FOLDER [SEEDS]
# SO762_DIR: the extracted speechocean762 (WAVE/, train/, test/);
# DATA_FOLDER: ../shared/data (the mini corpus' speakers). The teacher is
# trained first if missing (ECAPA C=256, 8 epochs, 2-s crops). Students:
# ECAPA C=96, 4 epochs, 2-s crops, 8 views per segment shared by every
# seed (views_seed 1986) and one teacher cache for all KD runs.
# A run already recorded in bench/runs/so762/tab is skipped too (the
# records are committed, the checkpoints are not): RERUN=1 retrains it.
# Then: python bench/so762_table.py --figures bench/figures
set -euo pipefail
so762=$(realpath "$1")
data=$(realpath "$2")
seeds=${3:-"1986 1987 1988"}
bench=$(cd "$(dirname "$0")" && pwd)
cd "$bench/../recipes/MiniSpeakers"
corpus=(--corpus=so762 --so762_folder="$so762" --data_folder="$data"
        --out_n_neurons=394 --sentence_len=2.0 --noprogressbar
        "--trial_lists={mini: results/so762/prepared/mini_trials.txt}")
teacher=results/so762/teacher_ecapa/1986
if [ ! -f "$teacher/pretrained/hyperparams.yaml" ]; then
  python train_teacher.py hparams/teacher_ecapa.yaml "${corpus[@]}"
fi
common=("${corpus[@]}" --number_of_epochs=4 --teacher_source="$teacher/pretrained"
        --train_views=8 --views_seed=1986
        "--teacher_cache={enabled: True, folder: results/so762/teacher_cache}")
record() {  # row seed
  local src=results/so762/tab/$1/$2 dest=$bench/runs/so762/tab/$1/$2
  mkdir -p "$dest"
  cp "$src/verification.json" "$src/train_log.txt" "$src/wall_seconds.txt" "$dest/"
  cp "$src/pretrained/README.md" "$dest/card.md"
  python "$bench/so762_replicates.py" "$src" --out "$dest/replicates.json" \
    --test_csv results/so762/prepared/test.csv
}
run() {  # row yaml seed options...
  local row=$1 yaml=$2 seed=$3; shift 3
  local out=results/so762/tab/$row/$seed
  if [ -f "$out/verification.json" ] && grep -q student "$out/verification.json"; then
    echo "done: $out"; return; fi
  if [ -z "${RERUN:-}" ] && [ -f "$bench/runs/so762/tab/$row/$seed/verification.json" ]; then
    echo "recorded: bench/runs/so762/tab/$row/$seed (RERUN=1 retrains)"; return; fi
  echo "$(date -u +%FT%TZ) start $out"
  local t0; t0=$(date +%s)
  python train_kd.py "hparams/$yaml" "${common[@]}" --seed="$seed" "$@" \
    --output_folder="$out"
  echo "$(( $(date +%s) - t0 ))" > "$out/wall_seconds.txt"
  record "$row" "$seed"
}
tau="--tau_schedule={start_epoch: 1, end_epoch: 4}"
for s in $seeds; do
  run nokd nokd.yaml "$s"
  run trkd trkd.yaml "$s" "$tau"
  run kd kd.yaml "$s"
  run dkd dkd.yaml "$s"
done
for s in $seeds; do
  run gkd gkd.yaml "$s"
  run trkd_T1 trkd.yaml "$s" "$tau" --partition_T=1.0
  run trkd_fixed_tau trkd.yaml "$s" --tau_schedule=0.05
done
