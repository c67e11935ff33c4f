#!/usr/bin/env python3
"""|F| and the teacher's background mass as a function of tau, at 394
classes, from the TRKD run records' training logs (the teacher's masses
depend only on the teacher, the views and tau, not on the student, so
every logged epoch is a sample), and the tau that would keep a set size
at 5,994 classes under two bounding assumptions.

    python bench/class_count.py [--runs bench/runs/so762] [--figure PNG]
"""

import argparse
import glob
import os
import sys

import numpy

from speechbrain_kd.train_log import read_train_log

CLASSES, PAPER_CLASSES = 394, 5994


def samples(root):
    """``{tau: (|F| mean, background mass)}`` of the epochs of every TRKD
    record cut at T (not the temperature-1 or size-cut rows)."""
    found = {}
    for log in sorted(glob.glob(os.path.join(root, "*", "trkd*", "*",
                                             "train_log.txt"))):  # fmt: skip
        if "_T1" in log or "_size" in log:
            continue
        for epoch in read_train_log(log):
            if "train trkd_F_mean" in epoch and "tau" in epoch:
                found.setdefault(epoch["tau"], []).append(
                    (epoch["train trkd_F_mean"],
                     epoch["train trkd_mass_background"])
                )  # fmt: skip
    return {t: tuple(numpy.mean(v, 0)) for t, v in sorted(found.items())}


def tau_for_fraction(points, fraction):
    """The tau whose |F| is ``fraction`` of the 393 non-targets (log-log
    interpolation between the logged points), or None outside them."""
    taus = numpy.array(sorted(points))
    sizes = numpy.array([points[t][0] for t in taus]) / (CLASSES - 1)
    if not sizes.min() <= fraction <= sizes.max():
        return None
    log_tau = numpy.interp(numpy.log(fraction), numpy.log(sizes),
                           numpy.log(taus))  # fmt: skip
    return float(numpy.exp(log_tau))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="bench/runs/so762")
    parser.add_argument("--figure", default=None)
    args = parser.parse_args(argv)
    points = samples(args.runs)
    if not points:
        raise FileNotFoundError(f"no TRKD training logs under {args.runs}")
    print("| tau | mean |F| | |F| / 393 | background mass at T |")
    print("|---|---|---|---|")
    for tau, (size, back) in points.items():
        print(f"| {tau:g} | {size:.1f} | {size / (CLASSES - 1):.4f} | "
              f"{back:.3f} |")  # fmt: skip
    end = points[min(points)]
    share = end[0] / (CLASSES - 1)
    size_at_paper = share * (PAPER_CLASSES - 1)
    keep = tau_for_fraction(points, size_at_paper / (CLASSES - 1))
    print(f"\ntau {min(points):g}: |F| {end[0]:.2f} of {CLASSES - 1} "
          f"({100 * share:.2f} % of the non-targets).")  # fmt: skip
    print(
        f"The same tau at {PAPER_CLASSES} classes: |F| {end[0]:.1f} if "
        "the top classes' masses do not depend on the class count, "
        f"{size_at_paper:.0f} if |F| scales with it. The tau that gives "
        f"{size_at_paper:.0f} classes at {CLASSES}: "
        f"{'outside the logged range' if keep is None else f'{keep:.2f}'}"
    )
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        taus = list(points)
        fig, ax = plt.subplots(figsize=(5, 3.6))
        ax.plot(taus, [points[t][0] for t in taus], "o-", label="mean |F|")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tau")
        ax.set_ylabel(f"|F| (of {CLASSES - 1} non-targets)")
        right = ax.twinx()
        right.plot(taus, [points[t][1] for t in taus], "s--", color="C1",
                   label="background mass at T")  # fmt: skip
        right.set_ylabel("teacher background mass at T = 4")
        ax.set_title(f"speechocean762, {CLASSES} classes, teacher at T = 4")
        handles = ax.get_legend_handles_labels()[0]
        handles += right.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="center left", fontsize=8)
        fig.tight_layout()
        fig.savefig(args.figure, dpi=120)
        plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
