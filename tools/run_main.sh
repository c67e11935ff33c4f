#!/usr/bin/env bash
# The main job: trains an ECAPA-TDNN teacher, distils it into a small
# ECAPA-TDNN student with TRKD, scores both on the trial list (EER, minDCF)
# and publishes both as SpeechBrain pretrained folders.
#
#   bash tools/run_main.sh [DATA_FOLDER] [extra recipe options...]
#
# DATA_FOLDER defaults to ../shared/data (LibriSpeech samples + Arabic
# Speech Commands). Extra options go to both scripts, SpeechBrain style,
# e.g. --device=cuda:0 --precision=fp16 --number_of_epochs=4.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/tools/setup_env.sh"

data="${1:-$repo/../shared/data}"
[ $# -gt 0 ] && shift
if [ ! -d "$data/arabic-speech-commands" ]; then
    echo "error: data folder '$data' lacks arabic-speech-commands/ and" \
         "librispeech-samples/ (the project's shared/data)" >&2
    exit 2
fi
data="$(cd "$data" && pwd)"
echo "Data: real mini corpus in $data"

cd "$repo/recipes/MiniSpeakers"
start=$(date +%s)
python train_teacher.py hparams/teacher_ecapa.yaml --data_folder="$data" \
    --noprogressbar "$@"
python train_kd.py hparams/trkd.yaml --data_folder="$data" \
    --noprogressbar "$@"
end=$(date +%s)
python - "$((end - start))" <<'PY'
import json, sys
t = json.load(open("results/mini/teacher_ecapa/1986/verification.json"))
s = json.load(open("results/mini/trkd/1986/verification.json"))
rows = [("teacher (ECAPA C=256)", t["teacher"]),
        ("TRKD student (ECAPA C=96)", s["student"])]
print("\n| model | EER (%) | minDCF (p=0.01) | minDCF normalised |")
print("|---|---|---|---|")
for name, r in rows:
    print(f"| {name} | {r['EER']:.2f} | {r['minDCF']:.5f} "
          f"| {r['minDCF_norm']:.3f} |")
print(f"\nWall time: {int(sys.argv[1])} s. Published: "
      "recipes/MiniSpeakers/results/mini/{teacher_ecapa,trkd}/1986/pretrained")
PY
