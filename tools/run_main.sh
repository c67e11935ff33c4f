#!/usr/bin/env bash
# The main job: trains an ECAPA-TDNN teacher, distils it into a small
# ECAPA-TDNN student with TRKD, scores both on the trial list (EER, minDCF)
# and publishes both as SpeechBrain pretrained folders.
#
#   bash tools/run_main.sh [DATA_FOLDER] [extra recipe options...]
#
# DATA_FOLDER defaults to ../shared/data (LibriSpeech samples + Arabic
# Speech Commands). When no such folder is given or found, the job runs on
# the synthetic espeak-ng corpus instead (generated once into
# recipes/MiniSpeakers/results/synthetic/data). Extra options go to both
# scripts, SpeechBrain style, e.g. --device=cuda:0 --precision=fp16.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/tools/setup_env.sh"
recipe="$repo/recipes/MiniSpeakers"

data=""
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then
    data="$1"
    shift
    if [ ! -d "$data/arabic-speech-commands" ] \
        || [ ! -d "$data/librispeech-samples" ]; then
        echo "error: data folder '$data' lacks arabic-speech-commands/ and" \
             "librispeech-samples/ (the project's shared/data)" >&2
        exit 2
    fi
elif [ -d "$repo/../shared/data/arabic-speech-commands" ]; then
    data="$repo/../shared/data"
fi

if [ -n "$data" ]; then
    data="$(cd "$data" && pwd)"
    corpus=mini
    corpus_opts=(--corpus=mini --data_folder="$data")
    echo "Data: the real mini corpus in $data"
else
    corpus=synthetic
    corpus_opts=(--corpus=synthetic --data_folder="$recipe/results/synthetic/data"
                 --out_n_neurons=200)
    echo "Data: no data folder given or found next to the repository;" \
         "using the synthetic espeak-ng corpus (200 training speakers)"
fi

cd "$recipe"
start=$(date +%s)
python train_teacher.py hparams/teacher_ecapa.yaml "${corpus_opts[@]}" \
    --noprogressbar "$@"
python train_kd.py hparams/trkd.yaml "${corpus_opts[@]}" \
    --noprogressbar "$@"
end=$(date +%s)
python - "$corpus" "$((end - start))" <<'PY'
import json, sys
corpus, seconds = sys.argv[1], int(sys.argv[2])
t = json.load(open(f"results/{corpus}/teacher_ecapa/1986/verification.json"))
s = json.load(open(f"results/{corpus}/trkd/1986/verification.json"))
rows = [("teacher (ECAPA C=256)", t["teacher"]),
        ("TRKD student (ECAPA C=96)", s["student"])]
print(f"\nCorpus: {corpus}")
print("| model | EER (%) | minDCF (p=0.01) | minDCF normalised |")
print("|---|---|---|---|")
for name, r in rows:
    print(f"| {name} | {r['EER']:.2f} | {r['minDCF']:.5f} "
          f"| {r['minDCF_norm']:.3f} |")
print(f"\nWall time: {seconds} s. Published: recipes/MiniSpeakers/results/"
      f"{corpus}/{{teacher_ecapa,trkd}}/1986/pretrained")
PY
