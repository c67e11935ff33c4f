#!/usr/bin/env python3
"""Writes the marked blocks of bench/RESULTS.md and README.md from the run
records (``bench/runs/so762/<row>/<seed>/record.json``).

Each block is declared below as data: its rows (a record folder, the
model in it, and what to add to the label the method's fragment gives),
its baseline and the pairs it compares. Every paired difference has three
intervals: over test speakers only (seeds averaged inside each speaker
resample), over speakers and seeds together, and a Student t interval
over the per-seed differences; "resolved" needs the last two to exclude 0.

    python bench/tables.py            # writes the blocks
    python bench/tables.py --check    # exits 1 if a block would change
"""

import argparse
import os
import sys

import numpy

from speechbrain_kd.fileio import atomic_write_text
from speechbrain_kd.records import load_records, paired_difference

BENCH = os.path.dirname(os.path.abspath(__file__))
RUNS = os.path.join(BENCH, "runs", "so762")
TAB_TRKD = "tau 1 -> 0.05 over epochs 1-4"
CONV_TRKD = "tau 1 -> 0.05 over steps 10/150 -> 60/150"


def row(path, extra="", model="student", label=None):
    return {"path": path, "extra": extra, "model": model, "label": label}


TEACHER = "teacher ECAPA C=256"
BLOCKS = {
    "so762-table": {
        "rows": [
            row("tab/nokd", model="teacher", label=TEACHER + " (8 epochs)"),
            row("tab/nokd"),
            row("tab/kd"),
            row("tab/dkd"),
            row("tab/gkd"),
            row("tab/trkd", "triage at T, " + TAB_TRKD),
            row("tab/trkd_T1", "triage at temperature 1"),
            row("tab/trkd_fixed_tau", "fixed tau 0.05 from the start"),
        ],
        "baseline": "tab/nokd",
        "pairs": [
            ("tab/trkd", "tab/kd"),
            ("tab/trkd", "tab/dkd"),
            ("tab/dkd", "tab/kd"),
            ("tab/gkd", "tab/kd"),
            ("tab/trkd_T1", "tab/trkd"),
            ("tab/trkd_fixed_tau", "tab/trkd"),
        ],  # fmt: skip
    },
    "so762-one-seed": {
        "rows": [
            row("extra/dyn_0.5", "learned width, FLOPs target 0.5, pruned"),
            row("extra/fixed_0.5", "fixed width C=56"),
            row("extra/dyn_0.25", "learned width, FLOPs target 0.25, pruned"),
            row("extra/fixed_0.25", "fixed width C=32"),
            row("extra/dyn_0.125", "learned width, FLOPs target 0.125, pruned"),
            row("extra/fixed_0.125", "fixed width C=16"),
            row("extra/mixer_trkd", "MLP-Mixer student (dim 104)"),
            row("extra/trkd_tau_end0.5", "tau 1 -> 0.5"),
            row("extra/trkd_lconf2", "lambda_F 2"),
            row("extra/trkd_linear", "linear curriculum 1 -> 0.05"),
        ],
        "baseline": "tab/trkd",
        "names": {"tab/trkd": "TRKD at T (the table above)"},
        "pairs": [
            ("extra/dyn_0.5", "extra/fixed_0.5"),
            ("extra/dyn_0.25", "extra/fixed_0.25"),
            ("extra/dyn_0.125", "extra/fixed_0.125"),
        ],  # fmt: skip
    },
    "so762-multilevel": {
        "rows": [
            row("ml/nokd", model="teacher", label="x-vector teacher"),
            row("ml/nokd", "x-vector 160-480"),
            row("ml/utt", "x-vector 160-480, utterance level"),
            row("ml/frame", "x-vector 160-480, frame level"),
            row("ml/concat", "x-vector 160-480, concatenated levels"),
            row("ml_c64/nokd", "x-vector 64-192"),
            row("ml_c64/frame", "x-vector 64-192, frame level"),
        ],
        "baseline": "ml/nokd",
        "pairs": [
            ("ml/frame", "ml/utt"),
            ("ml/concat", "ml/frame"),
            ("ml_c64/frame", "ml_c64/nokd"),
        ],  # fmt: skip
    },
    "so762-converged": {
        "rows": [
            row(
                "teacher_ecapa_16ep",
                model="teacher",
                label=TEACHER + ", 16 epochs",
            ),
            row(
                "teacher_ecapa_aug",
                model="teacher",
                label=TEACHER + ", 20 epochs, augmented",
            ),
            row("conv/nokd"),
            row("conv/kd"),
            row("conv/dkd"),
            row("conv/gkd"),
            row("conv/cosine"),
            row("conv/kd_cosine"),
            row("conv/trkd", CONV_TRKD),
            row("conv/trkd_end0.2", "tau_end 0.2"),
            row("conv/trkd_end0.4", "tau_end 0.4"),
            row("conv/trkd_T1", "triage at temperature 1"),
            row("conv/trkd_size", "cut by set size, 393 -> 3 classes"),
            row("conv_t16/kd", "from the 16-epoch teacher"),
        ],  # fmt: skip
        "baseline": "conv/nokd",
        "pairs": [
            ("conv/trkd", "conv/kd"),
            ("conv/trkd", "conv/dkd"),
            ("conv/dkd", "conv/kd"),
            ("conv/gkd", "conv/kd"),
            ("conv/kd_cosine", "conv/kd"),
            ("conv/trkd_size", "conv/trkd"),
            ("conv/trkd_T1", "conv/trkd"),
        ],  # fmt: skip
    },
}


def spread(values, digits):
    """``mean +- std`` (std over seeds; the mean alone for one seed)."""
    text = f"{numpy.mean(values):.{digits}f}"
    if len(values) > 1:
        text += f" +- {numpy.std(values, ddof=1):.{digits}f}"
    return text


def where(spec):
    return {"model": spec["model"]}


def cells(spec, runs):
    """The cells of one row of a main table (a teacher: from the first of
    the records that score it with replicates)."""
    teacher = spec["model"] == "teacher"
    if teacher:
        runs = {
            s: r for s, r in runs.items()
            if "EER_replicates" in r["models"]["teacher"]["trials"]["cosine"]
        }  # fmt: skip
        runs = dict(list(runs.items())[:1])
    first = next(iter(runs.values()))
    figs = [r["models"][spec["model"]] for r in runs.values()]
    eers = [f["trials"]["cosine"]["EER"] for f in figs]
    dcfs = [f["trials"]["cosine"]["minDCF_norm"] for f in figs]
    reps = numpy.array(
        [[numpy.nan if v is None else v
          for v in f["trials"]["cosine"]["EER_replicates"]] for f in figs]
    ).mean(0)  # fmt: skip
    low, high = numpy.nanpercentile(reps, [2.5, 97.5])
    mini = [f["mini"]["cosine"]["EER"] for f in figs if "mini" in f]
    params = first.get("pruned_parameters") or first.get("parameters")
    # A pruned record's MACs are the masked model's: not shown
    macs = None if "pruning" in first else first.get("macs_3s")
    valid = [r["history"][-1].get("valid ErrorRate") for r in runs.values()]
    n_seeds = len(runs)
    return [
        spec["label"]
        or first["label"] + ", " * bool(spec["extra"]) + spec["extra"],
        str(n_seeds),
        "" if teacher else str(first["epochs"]),
        spread(eers[:n_seeds], 2),
        f"[{low:.2f}, {high:.2f}]",
        spread(dcfs[:n_seeds], 3),
        spread(mini[:n_seeds], 2) if mini else "",
        "" if teacher or not params else f"{params:,}",
        "" if teacher or not macs else f"{macs / 1e6:.1f} M",
        "" if teacher or None in valid else spread(valid, 3),
    ]


def pair_line(name, a, b, spec_a, spec_b):
    """One line of a difference table."""
    d = paired_difference(a, b, "EER", where(spec_a), where(spec_b))
    m = paired_difference(a, b, "minDCF_norm", where(spec_a), where(spec_b))

    def ci(bounds):
        return "-" if bounds is None else "[{:+.2f}, {:+.2f}]".format(*bounds)

    per_seed = ", ".join(f"{x:+.2f}" for x in d["per_seed"])
    dcf = "[{:+.3f}, {:+.3f}]".format(*m["speakers_seeds"])
    return (
        f"| {name} | {len(d['seeds'])} | {per_seed} | {d['mean']:+.2f} | "
        f"{ci(d['speakers'])} | {ci(d['speakers_seeds'])} | {ci(d['t'])} | "
        f"{m['mean']:+.3f} {dcf} | "
        f"{'yes' if d['resolved'] else 'not resolved'} |"
    )


MAIN_HEAD = (
    "| model | seeds | epochs | EER % (mean +- std) | EER 95 % CI "
    "(speakers) | minDCF (mean +- std) | mini EER % | params | MACs / 3 s "
    "| last valid error |\n|---|---|---|---|---|---|---|---|---|---|"
)
PAIR_HEAD = (
    "| difference | seeds | per-seed dEER % | dEER % | speakers only "
    "[95 % CI] | speakers and seeds [95 % CI] | seeds only: t [95 % CI] | "
    "dminDCF [speakers and seeds] | resolved |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def block(spec, records):
    """The lines of one block: the main table, then the differences."""
    lines, labels = [MAIN_HEAD], dict(spec.get("names", {}))
    for r in spec["rows"]:
        runs = records.get(r["path"])
        if runs:
            line = cells(r, runs)
            if r["model"] != "teacher":
                labels.setdefault(r["path"], line[0])
            lines.append("| " + " | ".join(line) + " |")
    base = spec["baseline"]
    pairs = [
        (r["path"], base)
        for r in spec["rows"]
        if r["model"] != "teacher" and r["path"] != base
    ]
    pairs += spec["pairs"]  # fmt: skip
    by_path = {r["path"]: r for r in spec["rows"] if r["model"] != "teacher"}
    base_spec = by_path.get(base, row(base))
    found = []
    for a, b in pairs:
        if records.get(a) and records.get(b):
            name = f"{labels.get(a, a)} - {labels.get(b, b)}"
            spec_a, spec_b = by_path.get(a, row(a)), by_path.get(b, base_spec)
            found.append(pair_line(name, records[a], records[b], spec_a,
                                   spec_b))  # fmt: skip
    if found:
        lines += ["", PAIR_HEAD] + found
    return lines


def headline(records):
    """The README's short table: the converged benchmark's main rows."""
    spec = dict(BLOCKS["so762-converged"])
    spec["rows"] = spec["rows"][:9]
    return block({**spec, "pairs": []}, records)


def splice(text, marker, lines, path):
    start, end = f"<!-- {marker} -->\n", f"<!-- /{marker} -->"
    if start not in text or end not in text:
        raise ValueError(f"{path}: no '{start.strip()}' ... '{end}' block")
    head, rest = text.split(start, 1)
    return head + start + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1]


def load(runs_root):
    paths = {r["path"] for s in BLOCKS.values() for r in s["rows"]}
    paths |= {p for s in BLOCKS.values() for pair in s["pairs"] for p in pair}
    return {p: load_records(os.path.join(runs_root, p)) for p in paths}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default=RUNS)
    parser.add_argument(
        "--results_md", default=os.path.join(BENCH, "RESULTS.md")
    )
    parser.add_argument(
        "--readme", default=os.path.join(BENCH, "..", "README.md")
    )
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    records = load(args.runs)
    changed = []
    for path, blocks in (
        (args.results_md, {k: block(s, records) for k, s in BLOCKS.items()}),
        (args.readme, {"so762-headline": headline(records)}),
    ):
        with open(path, encoding="utf-8") as f:
            old = f.read()
        new = old
        for marker, lines in blocks.items():
            new = splice(new, marker, lines, path)
        if new != old:
            changed.append(path)
            if not args.check:
                atomic_write_text(path, new)
    for path in changed:
        print(("would change: " if args.check else "wrote: ") + path)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
