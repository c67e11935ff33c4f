#!/usr/bin/env python3
"""Draws the figures of bench/RESULTS.md from the run records
(``bench/runs/so762/``, rows of ``bench/rows.yaml``; matplotlib).

- ``so762_det.png``: DET curves (FRR against FAR on normal-deviate axes)
  of the 4-epoch and converged tables, seed 1986;
- ``so762_eer_vs_params.png``: EER against parameters, every student row;
- ``so762_tau_F.png``: tau and mean |F| over training, TRKD rows;
- ``so762_class_count.png``: |F| and the background mass against tau;
- ``so762_conv_triage.png``: |F| and the three teacher masses against
  training progress, per TRKD method of the converged table.

    python bench/plots.py [--figures bench/figures] [--dump_det JSON]

``--dump_det`` writes the plotted DET points (and draws nothing).
"""

import argparse
import json
import os
import sys

import numpy
from scipy.stats import norm
from tables import BENCH, RUNS, blocks, load, triage_points


def det_curve(record, model="student"):
    """The plotted DET points ``(x, y)`` of a record: normal deviates of
    FAR and FRR (rates clipped to [1e-4, 1 - 1e-4]), in order of FAR
    ascending (ties: FRR descending)."""
    points = numpy.array(record["models"][model]["trials"]["cosine"]["det"])
    points = points[numpy.lexsort((-points[:, 1], points[:, 0]))]
    far, frr = numpy.clip(points, 1e-4, 1 - 1e-4).T
    return norm.ppf(far), norm.ppf(frr)


def students(spec, records, seed=None):
    """``(label, row, {seed: record})`` of a block's student rows."""
    for r in spec["rows"]:
        runs = records.get(r["path"])
        if r["model"] == "teacher" or not runs:
            continue
        if seed is not None:
            runs = {s: v for s, v in runs.items() if s == seed}
        if runs:
            first = next(iter(runs.values()))
            label = r["label"] or ", ".join(
                x for x in (first["label"], r["extra"]) if x
            )
            yield label, r, runs


def det_points_of(found, records):
    out = {}
    for name in ("so762-table", "so762-converged"):
        for label, r, runs in students(found[name], records, seed=1986):
            x, y = det_curve(runs[1986], r["model"])
            out[f"{name}: {label}"] = [x.tolist(), y.tolist()]
    return out


def draw_det(plt, curves, path):
    fig, ax = plt.subplots(figsize=(6, 5))
    for label, (x, y) in curves.items():
        ax.plot(x, y, label=label, lw=1)
    ticks = [0.001, 0.01, 0.05, 0.2, 0.5]
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_xlim(norm.ppf(0.0005), norm.ppf(0.6))
    ax.set_ylim(norm.ppf(0.0005), norm.ppf(0.6))
    ax.set_xlabel("false-accept rate (%)")
    ax.set_ylabel("false-reject rate (%)")
    ax.set_title("speechocean762, cosine, seed 1986")
    ax.legend(fontsize=5)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def draw_size(plt, found, records, path):
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("so762-table", "so762-one-seed", "so762-multilevel"):
        for label, _, runs in students(found[name], records):
            first = next(iter(runs.values()))
            eer = numpy.mean([
                r["models"]["student"]["trials"]["cosine"]["EER"]
                for r in runs.values()
            ])  # fmt: skip
            params = first.get("pruned_parameters") or first["parameters"]
            ax.scatter(params, eer, s=12)
            ax.annotate(label, (params, eer), fontsize=4)
    ax.set_xscale("log")
    ax.set_xlabel("embedding-model parameters")
    ax.set_ylabel("EER % (mean over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def progress(history):
    epochs = len(history)
    return [e["epoch"] / epochs for e in history]


def draw_triage(plt, spec, records, path, masses):
    rows = 3 if masses else 2
    fig, axes = plt.subplots(rows, 1, figsize=(6, 2.2 * rows), sharex=True)
    for i, (label, _, runs) in enumerate(students(spec, records)):
        logs = [r["history"] for r in runs.values()]
        if "train trkd_F_mean" not in logs[0][0]:
            continue
        x, colour = progress(logs[0]), f"C{i % 10}"
        mean = lambda key: numpy.mean([[e[key] for e in h] for h in logs], 0)  # noqa: E731
        axes[0].plot(x, mean("tau"), color=colour, label=label)
        axes[1].plot(x, mean("train trkd_F_mean"), color=colour)
        if masses:
            for key, style in (("target", "-"), ("confusion", ":"),
                               ("background", "--")):  # fmt: skip
                axes[2].plot(x, mean(f"train trkd_mass_{key}"), style,
                             color=colour)  # fmt: skip
    axes[0].set_ylabel("tau")
    axes[1].set_ylabel("mean |F|")
    axes[1].set_yscale("log")
    if masses:
        axes[2].set_ylabel("mass: target - F : B --")
    axes[-1].set_xlabel("training progress (epoch / epochs)")
    axes[0].legend(fontsize=5)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def draw_class_count(plt, points, path):
    taus = list(points)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(taus, [points[t][0] for t in taus], "o-", label="mean |F|")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tau")
    ax.set_ylabel("|F| (of 393 non-targets)")
    right = ax.twinx()
    right.plot(taus, [points[t][1] for t in taus], "s--", color="C1",
               label="background mass at T")  # fmt: skip
    right.set_ylabel("teacher background mass at T = 4")
    handles = ax.get_legend_handles_labels()[0]
    handles += right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="center left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default=RUNS)
    parser.add_argument("--figures", default=os.path.join(BENCH, "figures"))
    parser.add_argument("--dump_det", default=None)
    args = parser.parse_args(argv)
    found = blocks()
    records = load(args.runs, found)
    curves = det_points_of(found, records)
    if args.dump_det:
        with open(args.dump_det, "w") as f:
            json.dump(curves, f)
        return 0
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def out(name):
        return os.path.join(args.figures, name)

    draw_det(plt, curves, out("so762_det.png"))
    draw_size(plt, found, records, out("so762_eer_vs_params.png"))
    draw_triage(plt, found["so762-table"], records, out("so762_tau_F.png"),
                masses=False)  # fmt: skip
    draw_triage(plt, found["so762-converged"], records,
                out("so762_conv_triage.png"), masses=True)  # fmt: skip
    draw_class_count(
        plt, triage_points(args.runs), out("so762_class_count.png")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
