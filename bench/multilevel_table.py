#!/usr/bin/env python3
"""EER table of the multi-level x-vector distillation runs.

    python bench/multilevel_table.py [--results RESULTS_DIR]

Reads, for the x-vector teacher and each ``ml_*`` student run that exists
under ``--results`` (``<run>/1986/``): ``verification.json`` (EER, minDCF
of the cosine-scored trial list), the published
``pretrained/embedding_model.ckpt`` (parameter count: weights, without
BatchNorm statistics), ``train_log.txt`` (epochs, last validation error) and
``log.txt`` (wall times of the last session: training, and the whole run
from start to publication). Prints a markdown table. Runs are trained with
``python train_kd.py hparams/ml.yaml --ml_level=<level> --data_folder=...``
(run ``ml_<level>``; ``ml_ecapa.yaml`` for ``ml_ecapa_<level>``) in
``recipes/MiniSpeakers``.
"""

import argparse
import datetime
import json
import os
import re

import torch

RUNS = [
    ("teacher_xvector", "x-vector teacher (512-1500, 512-d)", "-"),
    ("ml_nokd", "small x-vector", "none (task loss only)"),
    ("ml_utt", "small x-vector", "utterance: segment6 x-vector"),
    ("ml_frame", "small x-vector", "frame: narrowBN + wideBN, frame-wise"),
    ("ml_stats", "small x-vector", "aggregated: stats of frame1-5"),
    ("ml_lde", "small x-vector", "aggregated: LDE of frame1-5"),
    ("ml_concat", "small x-vector", "concat: segment6 + narrowBN + wideBN"),
    ("ml_ecapa_nokd", "small ECAPA (C=96)", "none (task loss only)"),
    (
        "ml_ecapa_concat",
        "small ECAPA (C=96)",
        "concat: segment6 + narrowBN + wideBN",
    ),
]
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})")
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def parameters(ckpt):
    """Weights in a state-dict checkpoint (BatchNorm statistics excluded)."""
    state = torch.load(ckpt, map_location="cpu")
    return sum(v.numel() for k, v in state.items() if not k.endswith(BUFFERS))


def stamp(line):
    m = STAMP.match(line)
    if not m:
        return None
    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
    return t + datetime.timedelta(milliseconds=int(m.group(2)))


def wall_times(log_path):
    """(training seconds, whole-run seconds) of the last session of a log."""
    with open(log_path, errors="replace") as f:
        lines = f.readlines()
    starts = [i for i, ln in enumerate(lines) if "Beginning experiment" in ln]
    lines = lines[starts[-1] :] if starts else lines
    times = [(stamp(ln), ln) for ln in lines]
    times = [(t, ln) for t, ln in times if t is not None]
    if not times:
        return None, None
    epoch_start = next((t for t, ln in times if "Going into epoch" in ln), None)
    epoch_ends = [
        t for t, ln in times if "train_logger" in ln and "epoch:" in ln
    ]
    train = (
        (epoch_ends[-1] - epoch_start).total_seconds()
        if epoch_start and epoch_ends
        else None
    )
    return train, (times[-1][0] - times[0][0]).total_seconds()


def last_epoch(train_log):
    """(epochs, last validation error rate) from train_log.txt."""
    with open(train_log) as f:
        lines = [ln for ln in f if ln.startswith("epoch:")]
    if not lines:
        return 0, None
    epoch = int(re.match(r"epoch: (\d+)", lines[-1]).group(1))
    err = re.search(r"valid ErrorRate: ([\d.e+-]+)", lines[-1])
    return epoch, float(err.group(1)) if err else None


def minutes(seconds):
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--results", default="recipes/MiniSpeakers/results/mini"
    )
    parser.add_argument("--seed", default="1986")
    args = parser.parse_args()

    rows, teacher_params = [], None
    for run, student, target in RUNS:
        folder = os.path.join(args.results, run, args.seed)
        ver = os.path.join(folder, "verification.json")
        if not os.path.isfile(ver):
            continue
        with open(ver) as f:
            result = json.load(f)
        key = "teacher" if run.startswith("teacher") else "student"
        if key not in result:
            continue
        params = parameters(
            os.path.join(folder, "pretrained", "embedding_model.ckpt")
        )
        if run.startswith("teacher"):
            teacher_params = params
        epochs, err = last_epoch(os.path.join(folder, "train_log.txt"))
        train, total = wall_times(os.path.join(folder, "log.txt"))
        rows.append(
            (
                run,
                student,
                target,
                params,
                result[key],
                epochs,
                err,
                train,
                total,
            )
        )
    if not rows:
        raise SystemExit(f"no finished run under {args.results}")
    print(
        "| run | student | teacher knowledge | parameters | % of teacher "
        "| EER (%) | minDCF (norm.) | epochs | valid err. | train (min) "
        "| run (min) |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run, student, target, params, r, epochs, err, train, total in rows:
        share = (
            f"{100 * params / teacher_params:.1f}" if teacher_params else "-"
        )
        print(
            f"| {run} | {student} | {target} | {params:,} | {share} "
            f"| {r['EER']:.2f} | {r['minDCF_norm']:.3f} | {epochs} "
            f"| {'-' if err is None else f'{err:.3f}'} | {minutes(train)} "
            f"| {minutes(total)} |"
        )
    trials = rows[0][4]
    print(
        f"\n{trials['target_trials']} target + {trials['nontarget_trials']} "
        "non-target trials, cosine scoring."
    )


if __name__ == "__main__":
    main()
