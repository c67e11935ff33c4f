#!/usr/bin/env bash
# CUDA smoke test: a tiny teacher -> TRKD student run on the GPU, once with
# --precision=fp16 and once with bf16, then the KD-step timing bench on the
# GPU. Prints a short table (step times, final losses, EER of the tiny run)
# and fails on any error. Needs a CUDA GPU and the package installed
# (pip install -e .); CI never runs it.
#
#   bash tools/gpu_smoke.sh [WORK_DIR]
#
# The corpus is the synthetic espeak-ng one (no download), 40 training
# speakers, generated into WORK_DIR/data.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(realpath -m "${1:-$(mktemp -d)}")"
mkdir -p "$work"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
  || { echo "gpu_smoke: no CUDA GPU visible to torch" >&2; exit 1; }
python -c "import torch; print('GPU:', torch.cuda.get_device_name(0), \
'torch', torch.__version__)"

cd "$repo/recipes/MiniSpeakers"
corpus=(--corpus=synthetic --data_folder="$work/data" --out_n_neurons=40
        "--synthetic_opts={num_train_speakers: 40, num_test_speakers: 10}"
        --prep_folder="$work/prepared" --noprogressbar --device=cuda:0)
for prec in fp16 bf16; do
  python train_teacher.py hparams/teacher_ecapa.yaml "${corpus[@]}" \
    --precision="$prec" --number_of_epochs=2 \
    --output_folder="$work/teacher_$prec"
  python train_kd.py hparams/trkd.yaml "${corpus[@]}" --precision="$prec" \
    --number_of_epochs=2 "--tau_schedule={start_at: 0.25, end_at: 0.75}" \
    --teacher_source="$work/teacher_$prec/pretrained" \
    --output_folder="$work/trkd_$prec"
done

cd "$repo"
python bench/kd_step_time.py --device=cuda:0 --precision=fp16 \
  --json="$work/kd_step_time_fp16.json"
python bench/kd_step_time.py --device=cuda:0 --precision=bf16 \
  --json="$work/kd_step_time_bf16.json"

python - "$work" <<'PY'
import json, math, sys
from pathlib import Path

from speechbrain_kd.train_log import read_train_log

work = Path(sys.argv[1])


def last_log(path):
    return read_train_log(path / "train_log.txt")[-1]


print("\n| precision | KD step (s) | plain step (s) | ratio | final train "
      "loss (TRKD run) | final trkd term | student EER % | teacher EER % |")
print("|---|---|---|---|---|---|---|---|")
for prec in ("fp16", "bf16"):
    step = json.loads((work / f"kd_step_time_{prec}.json").read_text())
    log = last_log(work / f"trkd_{prec}")
    ver = json.loads((work / f"trkd_{prec}" / "verification.json").read_text())
    for key in ("train loss", "train trkd"):
        if not math.isfinite(log[key]):
            sys.exit(f"{prec}: non-finite {key}")
    print(f"| {prec} | {step['kd_step_s']} | {step['plain_step_s']} "
          f"| {step['ratio']} "
          f"| {log['train loss']:.3f} | {log['train trkd']:.3f} "
          f"| {ver['student']['EER']:.2f} | {ver['teacher']['EER']:.2f} |")
PY
