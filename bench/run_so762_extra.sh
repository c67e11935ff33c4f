#!/usr/bin/env bash
# Trains the one-seed rows of the speechocean762 benchmark that follow the
# method table (bench/RESULTS.md), one after the other, in
# recipes/MiniSpeakers, and records each run in
# bench/runs/so762/extra/<row>/<seed>/ like bench/run_so762_table.sh
# (plus pruning.json for the learned widths):
#   - learned widths (dyn_trkd.yaml, TRKD, FLOPs targets 0.5, 0.25, 0.125
#     of the C=96 student), trained, then pruned (prune_student.py);
#   - fixed widths at matched FLOPs: trkd.yaml with the channel count
#     whose counted MACs are nearest to each pruned student's
#     (bench/matched_width.py);
#   - the MLP-Mixer student with TRKD (mixer_trkd.yaml at dim 104:
#     512,192 parameters, 24.99 % of the teacher; dim 128 would be 36 %);
#   - TRKD tuning, against TRKD at T of the table (tau 1 -> 0.05,
#     exponential, epochs 1-4; lambda_conf 8): a milder cut (tau 1 -> 0.5),
#     a lighter confusion-set term (lambda_conf 2) and a linear curriculum
#     (tau 1, 0.68, 0.37, 0.05 over the 4 epochs).
#   bash bench/run_so762_extra.sh SO762_DIR DATA_FOLDER [SEED]
# Needs the table's teacher (results/so762/teacher_ecapa/1986, trained by
# run_so762_table.sh); the teacher cache is shared with the table (built
# if missing). A recorded run is skipped (RERUN=1 retrains it).
# Then: python bench/so762_table.py --figures bench/figures
set -euo pipefail
so762=$(realpath "$1")
data=$(realpath "$2")
seed=${3:-1986}
bench=$(cd "$(dirname "$0")" && pwd)
cd "$bench/../recipes/MiniSpeakers"
teacher=results/so762/teacher_ecapa/1986
if [ ! -f "$teacher/pretrained/hyperparams.yaml" ]; then
  echo "no teacher in $teacher: run bench/run_so762_table.sh first" >&2
  exit 2
fi
common=(--corpus=so762 --so762_folder="$so762" --data_folder="$data"
        --out_n_neurons=394 --sentence_len=2.0 --noprogressbar
        "--trial_lists={mini: results/so762/prepared/mini_trials.txt}"
        --number_of_epochs=4 --teacher_source="$teacher/pretrained"
        --train_views=8 --views_seed=1986
        "--teacher_cache={enabled: True, folder: results/so762/teacher_cache}"
        --seed="$seed")
tau="--tau_schedule={start_epoch: 1, end_epoch: 4}"
record() {  # row
  local row=$1
  local src=results/so762/extra/$row/$seed dest=$bench/runs/so762/extra/$row/$seed
  mkdir -p "$dest"
  cp "$src/verification.json" "$src/train_log.txt" "$src/wall_seconds.txt" \
    "$src/command.txt" "$dest/"
  cp "$src/pretrained/README.md" "$dest/card.md"
  if [ -f "$src/pruning.json" ]; then
    cp "$src/pruning.json" "$dest/"
    cp "$src/pruned/README.md" "$dest/card_pruned.md"
  fi
  python "$bench/so762_replicates.py" "$src" --out "$dest/replicates.json" \
    --test_csv results/so762/prepared/test.csv
}
recorded() {  # row
  [ -z "${RERUN:-}" ] && [ -f "$bench/runs/so762/extra/$1/$seed/replicates.json" ]
}
train() {  # row yaml options...
  local row=$1 yaml=$2; shift 2
  local out=results/so762/extra/$row/$seed
  if [ -f "$out/verification.json" ] && grep -q student "$out/verification.json"; then
    echo "trained: $out"; return; fi
  echo "$(date -u +%FT%TZ) start $out"
  local t0; t0=$(date +%s)
  mkdir -p "$out"
  printf '%s\n' "train_kd.py hparams/$yaml" "$@" > "$out/command.txt"
  python train_kd.py "hparams/$yaml" "${common[@]}" "$@" --output_folder="$out"
  echo "$(( $(date +%s) - t0 ))" > "$out/wall_seconds.txt"
}
run() {  # row yaml options...
  if recorded "$1"; then echo "recorded: $1/$seed (RERUN=1 retrains)"; return; fi
  train "$@"
  record "$1"
}
run trkd_tau_end0.5 trkd.yaml "--tau_schedule={start_epoch: 1, end_epoch: 4, end: 0.5}"
run trkd_lconf2 trkd.yaml "$tau" "--method={lambda_conf: 2.0}"
for target in 0.5 0.25 0.125; do
  row=dyn_$target
  if ! recorded "$row"; then
    opts=(--flops_target="$target" "$tau")
    train "$row" dyn_trkd.yaml "${opts[@]}"
    out=results/so762/extra/$row/$seed
    if [ ! -f "$out/pruning.json" ]; then
      python prune_student.py hparams/dyn_trkd.yaml "${common[@]}" \
        "${opts[@]}" --output_folder="$out"
    fi
    record "$row"
  fi
  channels=$(python "$bench/matched_width.py" --verbose \
    "$bench/runs/so762/extra/$row/$seed/pruning.json")
  run "fixed_$target" trkd.yaml --channels="$channels" "$tau"
done
run mixer_trkd mixer_trkd.yaml --dim=104 "$tau"
run trkd_linear trkd.yaml "--tau_schedule={start_epoch: 1, end_epoch: 4, shape: linear}"
