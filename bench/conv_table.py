#!/usr/bin/env python3
"""The converged speechocean762 table (bench/run_so762_converged.sh): rows
declared as data, every difference with its speakers-and-seeds and its
per-seed t interval, and, per method, |F| and the teacher's three masses
against training progress.

    python bench/conv_table.py [--runs bench/runs/so762/conv] \
        [--results_md bench/RESULTS.md] [--figure PNG]

``--results_md`` writes the block ``<!-- so762-converged -->``.
"""

import argparse
import os
import sys

import numpy
from so762_table import (
    figures_of,
    load_runs,
    paired_cells,
    row_figures,
    seed_pair_line,
    splice,
    teacher_cells,
)

from speechbrain_kd.train_log import read_train_log

# key: label (the method, as its fragment names it, and the run options)
ROWS = {
    "nokd": "no KD",
    "kd": "KD (T=4)",
    "dkd": "DKD (alpha 1, beta 8, T=4)",
    "gkd": "GKD (90 %, T=4)",
    "cosine": "embedding cosine KD",
    "kd_cosine": "KD + embedding cosine KD",
    "trkd": "TRKD, paper proportions (tau 1 -> 0.05)",
    "trkd_end0.2": "TRKD, tau_end 0.2",
    "trkd_end0.4": "TRKD, tau_end 0.4",
    "trkd_T1": "TRKD, triage at temperature 1",
    "trkd_size": "TRKD, cut by set size (3 classes at the end)",
}
PAIRS = [(k, "nokd") for k in ROWS if k != "nokd"] + [
    ("trkd", "kd"), ("trkd", "dkd"), ("dkd", "kd"), ("gkd", "kd"),
    ("kd_cosine", "kd"), ("cosine", "kd"), ("trkd_end0.2", "trkd"),
    ("trkd_end0.4", "trkd"), ("trkd_T1", "trkd"), ("trkd_size", "trkd"),
]  # fmt: skip


def epochs_of(record):
    """The run's training epochs (``read_train_log`` of its record)."""
    return read_train_log(os.path.join(record["folder"], "train_log.txt"))


def spread(values, digits):
    """`` +- std`` of several seeds' values, empty for one."""
    if len(values) < 2:
        return ""
    return f" +- {numpy.std(values, ddof=1):.{digits}f}"


def table(runs):
    """Markdown lines: one row per method, then the differences."""
    lines = [
        "| method | seeds | epochs | EER % (mean +- std) | EER 95 % CI "
        "(speakers) | minDCF (mean +- std) | dEER vs no KD | relative | "
        "last valid error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    teacher = next(
        (r for row in runs.values() for r in row.values()
         if figures_of(r, "teacher")), None,
    )  # fmt: skip
    if teacher:
        eer, e_ci, dcf, _ = teacher_cells(teacher)
        lines.append(f"| teacher ECAPA C=256 (16 epochs) | 1 | 16 | {eer} | "
                     f"{e_ci} | {dcf} | | | |")  # fmt: skip
    for key, label in ROWS.items():
        if key not in runs:
            continue
        records, eers, e_ci, dcfs, _ = row_figures(runs, key)
        logs = [epochs_of(r) for r in records]
        paired, rel, _ = paired_cells(runs, key)
        valid = numpy.mean([log[-1]["valid ErrorRate"] for log in logs])
        lines.append(
            f"| {label} | {len(records)} | {len(logs[0])} | "
            f"{numpy.mean(eers):.2f}{spread(eers, 2)} | "
            f"[{e_ci[0]:.2f}, {e_ci[1]:.2f}] | {numpy.mean(dcfs):.3f}"
            f"{spread(dcfs, 3)} | {paired.split(' [')[0]} | {rel} | "
            f"{valid:.3f} |"
        )
    from so762_table import SEED_PAIRS_HEADER

    lines += ["", *SEED_PAIRS_HEADER]
    for row, other in PAIRS:
        if row in runs and other in runs:
            name = f"{ROWS[row]} - {ROWS[other]}"
            line = seed_pair_line(name, runs[row], runs[other])
            if line:
                lines.append(line)
    return lines


def draw_triage(runs, path):
    """Per TRKD row (first seed): |F| and the teacher's target, F and
    background masses against training progress (epoch / epochs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 6), sharex=True)
    for i, key in enumerate(k for k in ROWS if k.startswith("trkd")):
        if key not in runs:
            continue
        log = epochs_of(runs[key][sorted(runs[key])[0]])
        x = [e["epoch"] / len(log) for e in log]
        colour = f"C{i}"
        top.plot(x, [e["train trkd_F_mean"] for e in log], "o-",
                 color=colour, label=ROWS[key])  # fmt: skip
        for mass, style in (("target", ":"), ("confusion", "-"),
                            ("background", "--")):  # fmt: skip
            bottom.plot(x, [e[f"train trkd_mass_{mass}"] for e in log],
                        style, color=colour)  # fmt: skip
    top.set_yscale("log")
    top.set_ylabel("mean |F| (of 393)")
    top.legend(fontsize=7)
    bottom.set_ylabel("teacher mass: target : F - B --")
    bottom.set_xlabel("training progress (epoch / epochs)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="bench/runs/so762/conv")
    parser.add_argument("--results_md", default=None)
    parser.add_argument("--figure", default=None)
    args = parser.parse_args(argv)
    runs = load_runs(args.runs)
    if not runs:
        raise FileNotFoundError(f"no finished run records under {args.runs}")
    lines = table(runs)
    print("\n".join(lines))
    if args.results_md:
        splice(args.results_md, "so762-converged", lines)
    if args.figure:
        draw_triage(runs, args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
