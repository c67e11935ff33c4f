#!/usr/bin/env bash
# The speechocean762 method table in the converged regime: a teacher
# trained 20 epochs with augmentation and students trained EPOCHS epochs
# (default 12: the learning rate decays linearly to lr_final over the
# run), TRKD with its curriculum in training progress (the paper's
# proportions: tau 1 for 10/150 of the steps, down to its end at 60/150).
# One run at a time in recipes/MiniSpeakers; a finished run is
# skipped, an interrupted one resumes; each run is recorded in
# bench/runs/so762/conv/<row>/<seed>/ (bench/so762_common.sh, command.txt
# included).
#   bash bench/run_so762_converged.sh SO762_DIR DATA_FOLDER [SEEDS [ROWS]]
# Rows (every seed, in this order): nokd kd dkd gkd cosine kd_cosine trkd
# trkd_end0.2 trkd_end0.4 trkd_T1 trkd_size. Students: ECAPA C=96
# (CHANNELS=C: width C, recorded under conv_c<C>/ instead of conv/), 2-s
# crops, 8 views per segment shared by every seed (views_seed 1986), one
# teacher cache for every KD run. trkd_size cuts F by set size: the
# ceil(tau * 393) most probable non-targets, tau 1 -> 0.0076 (3 classes,
# the |F| the mass cut ends with at 394 classes). Any other row name runs
# the recipe YAML of that name (a new method: hparams/NAME.yaml), and
# bench/tables.py reports every record under conv/ (rows.yaml orders the
# known ones; the others follow, labelled by their method fragment).
set -euo pipefail
source "$(dirname "$0")/so762_common.sh"
so762_init "$1" "$2"
seeds=${3:-"1986 1987 1988"}
rows=" ${4:-nokd kd dkd gkd cosine kd_cosine trkd trkd_end0.2 trkd_end0.4
  trkd_T1 trkd_size} "
rows=${rows//$'\n'/ }
epochs=${EPOCHS:-12}
# The teacher: ECAPA C=256, 20 epochs with data-free waveform augmentation
# (hparams/augment/data_free.yaml): the 16-epoch teacher without it
# (teacher_ecapa_16ep, 4.81 %) was no better than the no-KD student.
teacher=teacher_ecapa_aug/1986
teacher_opts=(--number_of_epochs=20 --augment=True)
cache=results/so762/teacher_cache_aug
students=(--number_of_epochs="$epochs" --train_views=8 --views_seed=1986)
conv=conv
if [ "${CHANNELS:-96}" != 96 ]; then
  conv=conv_c$CHANNELS
  students+=(--channels="$CHANNELS")
fi
kd=("${students[@]}" --teacher_source="results/so762/$teacher/pretrained"
    "--teacher_cache={enabled: True, folder: $cache}")
row() {  # row yaml seed options...
  local row=$1 yaml=$2 seed=$3
  shift 3
  [[ $rows == *" $row "* ]] || return 0
  if so762_recorded "$conv/$row/$seed"; then
    echo "recorded: bench/runs/so762/$conv/$row/$seed (RERUN=1 retrains)"
    return
  fi
  so762_run "$teacher" train_teacher.py teacher_ecapa.yaml \
    "${teacher_opts[@]}"
  so762_train "$conv/$row/$seed" train_kd.py "$yaml" "${kd[@]}" \
    --seed="$seed" "$@"
  so762_record "$conv/$row/$seed"
}
known="nokd kd trkd dkd gkd trkd_end0.2 trkd_end0.4 trkd_T1 trkd_size"
for s in $seeds; do
  row nokd nokd.yaml "$s"
  row kd kd.yaml "$s"
  row trkd trkd.yaml "$s"
  row dkd dkd.yaml "$s"
  row gkd gkd.yaml "$s"
  row trkd_end0.2 trkd.yaml "$s" "--tau_schedule={end: 0.2}"
  row trkd_end0.4 trkd.yaml "$s" "--tau_schedule={end: 0.4}"
  row trkd_T1 trkd.yaml "$s" --partition_T=1.0
  row trkd_size trkd.yaml "$s" "--method={cut: size}" \
    "--tau_schedule={end: 0.0076}"
  for r in $rows; do  # any other row: the recipe YAML of that name
    case " $known " in *" $r "*) ;; *) row "$r" "$r.yaml" "$s" ;; esac
  done
done
