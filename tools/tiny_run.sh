#!/usr/bin/env bash
# A tiny, seeded teacher -> TRKD student run on the mini corpus, to show
# that a refactoring changes no figure: run it before and after, on the
# same machine, and compare the printed lines (they must be equal).
#   bash tools/tiny_run.sh DATA_FOLDER OUT_FOLDER
# Teacher: ECAPA C=32, 2 epochs; student: ECAPA C=16, TRKD, 2 epochs
# (tau 1 -> 0.05 over epochs 1-2), seed 1986; about 2 minutes on 2 idle
# cores (run nothing else beside it: it is many times slower then).
set -euo pipefail
data=$(realpath "$1")
mkdir -p "$2"
out=$(realpath "$2")
cd "$(dirname "$0")/../recipes/MiniSpeakers"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
python train_teacher.py hparams/teacher_ecapa.yaml --data_folder="$data" \
  --noprogressbar --number_of_epochs=2 --channels=32 --seed=1986 \
  --output_folder="$out/teacher" > "$out/teacher.log" 2>&1
python train_kd.py hparams/trkd.yaml --data_folder="$data" \
  --noprogressbar --number_of_epochs=2 --channels=16 --seed=1986 \
  --teacher_source="$out/teacher/pretrained" \
  "--tau_schedule={start_at: 0.25, end_at: 0.75}" \
  --output_folder="$out/trkd" > "$out/trkd.log" 2>&1
python - "$out" <<'PY'
import json, sys
out = sys.argv[1]
for run in ("teacher", "trkd"):
    with open(f"{out}/{run}/train_log.txt") as f:
        for line in f:
            print(run, line.strip())
    with open(f"{out}/{run}/verification.json") as f:
        result = json.load(f)
    for name, r in result.items():
        print(run, name, f"EER {r['EER']:.6f} minDCF {r['minDCF']:.6f}")
PY
