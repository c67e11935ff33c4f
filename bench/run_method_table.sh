#!/usr/bin/env bash
# Trains the runs behind bench/RESULTS.md, one after the other, in
# recipes/MiniSpeakers (a run already finished is skipped):
#   - the method table: nokd, kd, dkd, gkd, trkd x SEEDS, 4 epochs each,
#     same ECAPA C=96 student, from the ECAPA teacher TEACHER;
#   - the multi-level x-vector runs (ml.yaml / ml_ecapa.yaml at each
#     --ml_level, seed 1986, 4 epochs) from
#     the x-vector teacher (results/mini/teacher_xvector/1986/pretrained,
#     trained first if missing).
# Usage: bash bench/run_method_table.sh DATA_FOLDER TEACHER_PRETRAINED \
#            [SEEDS (default "1986 1987 1988")]
# Then the MLP-Mixer student (mixer_trkd.yaml, first seed).
# About 7 min per table run and 5 min per multi-level run on 2 CPU cores.
set -euo pipefail
data=$(realpath "$1")
teacher=$(realpath "$2")
seeds=${3:-"1986 1987 1988"}
cd "$(dirname "$0")/../recipes/MiniSpeakers"
common=(--data_folder="$data" --noprogressbar --number_of_epochs=4)
run() {  # output folder, command...
  local out=$1; shift
  if [ -f "$out/verification.json" ] && grep -q student "$out/verification.json"; then
    echo "done: $out"; return
  fi
  echo "$(date -u +%FT%TZ) start $out"
  python "$@" --output_folder="$out"
}
if [ ! -d results/mini/teacher_xvector/1986/pretrained ]; then
  python train_teacher.py hparams/teacher_xvector.yaml --data_folder="$data" \
    --noprogressbar
fi
# run folder ml_<level> / ml_ecapa_<level>: <yaml> --ml_level=<level>
for m in ml_nokd ml_utt ml_frame ml_stats ml_lde ml_concat ml_ecapa_nokd \
    ml_ecapa_concat; do
  yaml=${m%_*} level=${m##*_}
  run "results/mini/$m/1986" train_kd.py "hparams/$yaml.yaml" \
    --ml_level="$level" "${common[@]}"
done
for s in $seeds; do
  for m in nokd kd dkd trkd gkd; do
    extra=()
    if [ "$m" = trkd ]; then
      extra=("--tau_schedule={start_epoch: 1, end_epoch: 4}")
    fi
    run "results/mini/tab4/$m/$s" train_kd.py "hparams/$m.yaml" \
      "${common[@]}" --teacher_source="$teacher" --seed="$s" "${extra[@]}"
  done
done
# the MLP-Mixer student (first seed only)
s=${seeds%% *}
run "results/mini/tab4/mixer_trkd/$s" train_kd.py hparams/mixer_trkd.yaml \
  "${common[@]}" --teacher_source="$teacher" --seed="$s" \
  "--tau_schedule={start_epoch: 1, end_epoch: 4}"
