#!/usr/bin/env python3
"""Bootstrap replicates and DET points of one run, from its score files.

A run of the speechocean762 table writes per-trial cosine scores
(``<output_folder>/scores/<model>_<list>_cosine.txt``, ``enrol test label
score``). This script keeps, in a small JSON next to the run's
``verification.json``, what the table needs without the scores:

- for every model (teacher, student) and trial list: the EER (%) and the
  normalised minDCF (p_target 0.01) on the whole list and on ``num``
  bootstrap resamples of the test speakers (a trial belongs to the speaker
  of its enrolment utterance; speakers drawn with replacement, each keeping
  its trials). The resamples depend only on the trial list and ``seed``, so
  replicate ``b`` of two runs is the same resample: paired differences
  between methods are taken replicate by replicate
  (``bench/so762_table.py``);
- the DET curve (false-reject vs false-accept rates) at 60 thresholds.

    python bench/so762_replicates.py RUN_FOLDER --test_csv PREP/test.csv \
        --out bench/runs/so762/<row>/<seed>/replicates.json
"""

import argparse
import glob
import json
import os
import sys

from speechbrain_kd.data import read_csv
from speechbrain_kd.scoring import det_points, read_scores
from speechbrain_kd.scoring.bootstrap import eer_of, min_dcf_of, resamples


def det_list(scores, labels, num=60):
    """``[[far, frr], ...]`` at ``num`` thresholds (score quantiles)."""
    far, frr = det_points(scores[labels == 1], scores[labels == 0], num)
    return [[round(float(a), 6), round(float(b), 6)] for a, b in zip(far, frr)]


def replicates(path, speaker_of, num, seed, p_target):
    """The figures of one score file on all trials and on each resample."""
    enrol, labels, scores = read_scores(path)
    missing = sorted({e for e in enrol if e not in speaker_of})
    if missing:
        raise ValueError(
            f"{path}: enrolment IDs not in the test manifest, e.g. "
            f"{missing[:3]}"
        )
    speakers = [speaker_of[e] for e in enrol]
    eers, dcfs = [], []
    for idx in resamples(speakers, num, seed):
        y = labels[idx]
        if y.min() == y.max():
            eers.append(None)
            dcfs.append(None)
            continue
        eers.append(round(eer_of(scores[idx], y), 4))
        dcfs.append(round(min_dcf_of(scores[idx], y, p_target), 5))
    return {
        "EER": round(eer_of(scores, labels), 4),
        "minDCF_norm": round(min_dcf_of(scores, labels, p_target), 5),
        "speakers": len(set(speakers)),
        "trials": int(len(labels)),
        "EER_replicates": eers,
        "minDCF_norm_replicates": dcfs,
        "det": det_list(scores, labels),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="output folder of the run (has scores/)")
    parser.add_argument("--test_csv", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--p_target", type=float, default=0.01)
    parser.add_argument(
        "--models", nargs="*", default=None, help="e.g. student (default: all)"
    )
    args = parser.parse_args(argv)
    speaker_of = {row["ID"]: row["spk_id"] for row in read_csv(args.test_csv)}
    files = sorted(glob.glob(os.path.join(args.run, "scores", "*_cosine.txt")))
    if not files:
        raise FileNotFoundError(
            f"no *_cosine.txt score files in {args.run}/scores"
        )
    result = {"resamples": args.num, "seed": args.seed, "models": {}}
    for path in files:
        name = os.path.basename(path)[: -len("_cosine.txt")]
        model, trial_list = name.split("_", 1)
        if args.models and model not in args.models:
            continue
        figures = replicates(
            path, speaker_of, args.num, args.seed, args.p_target
        )
        result["models"].setdefault(model, {})[trial_list] = figures
        print(f"{model} {trial_list}: EER {figures['EER']:.3f} %")
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
