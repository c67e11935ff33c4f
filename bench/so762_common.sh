# Sourced by bench/run_so762_*.sh: the options every run of the
# speechocean762 benchmark takes, and training and recording one run.
# A record (bench/runs/so762/<run>/) keeps what the tables need without
# the checkpoints and scores: record.json (speechbrain_kd.records, written
# by the recipe when it publishes), and for people train_log.txt,
# command.txt, card.md (the published model card) and card_pruned.md
# (learned widths).

# so762_init SO762_DIR DATA_FOLDER: sets so762, data, bench, corpus (the
# corpus options) and students (the student training options shared by
# every row: 4 epochs, 8 fixed views per segment shared by every seed),
# and changes to recipes/MiniSpeakers.
so762_init() {
  so762=$(realpath "$1")
  data=$(realpath "$2")
  bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  cd "$bench/../recipes/MiniSpeakers"
  corpus=(--corpus=so762 --so762_folder="$so762" --data_folder="$data"
          --out_n_neurons=394 --sentence_len=2.0 --noprogressbar
          "--trial_lists={mini: results/so762/prepared/mini_trials.txt}")
  students=(--number_of_epochs=4 --train_views=8 --views_seed=1986)
}

# so762_recorded RUN: bench/runs/so762/RUN is complete (RERUN=1: never).
so762_recorded() {
  [ -z "${RERUN:-}" ] && [ -f "$bench/runs/so762/$1/record.json" ]
}

# so762_record RUN: copies the record of results/so762/RUN into
# bench/runs/so762/RUN (record.json last: without it a record is
# incomplete and is written again).
so762_record() {
  local src=results/so762/$1 dest=$bench/runs/so762/$1 f
  mkdir -p "$dest"
  rm -f "$dest/record.json"
  cp "$src/train_log.txt" "$src/command.txt" "$dest/"
  cp "$src/pretrained/README.md" "$dest/card.md"
  if [ -f "$src/pruned/README.md" ]; then
    cp "$src/pruned/README.md" "$dest/card_pruned.md"
  fi
  cp "$src/record.json" "$dest/"
}

# so762_train RUN SCRIPT YAML OPTIONS...: trains (or resumes) the run in
# results/so762/RUN with the corpus options; a finished run is kept. Its
# command.txt holds the whole command line, one argument per line (run
# in recipes/MiniSpeakers).
so762_train() {
  local run=$1 script=$2 yaml=$3 t0
  shift 3
  local out=results/so762/$run
  if [ -f "$out/pretrained/hyperparams.yaml" ] && \
      [ -f "$out/verification.json" ]; then
    echo "trained: $out"
    return
  fi
  echo "$(date -u +%FT%TZ) start $out"
  t0=$(date +%s)
  mkdir -p "$out"
  printf '%s\n' "$script hparams/$yaml" "${corpus[@]}" "$@" \
    --output_folder="$out" > "$out/command.txt"
  python "$script" "hparams/$yaml" "${corpus[@]}" "$@" --output_folder="$out"
  echo "$(( $(date +%s) - t0 ))" > "$out/wall_seconds.txt"
}

# so762_run RUN SCRIPT YAML OPTIONS...: so762_train, then so762_record,
# unless the run is recorded.
so762_run() {
  if so762_recorded "$1"; then
    echo "recorded: bench/runs/so762/$1 (RERUN=1 retrains)"
    return
  fi
  so762_train "$@"
  so762_record "$1"
}
