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
import yaml

from speechbrain_kd.fileio import atomic_write_text
from speechbrain_kd.records import load_records, paired_difference

BENCH = os.path.dirname(os.path.abspath(__file__))
RUNS = os.path.join(BENCH, "runs", "so762")
CLASSES, PAPER_CLASSES = 394, 5994


def blocks(path=os.path.join(BENCH, "rows.yaml")):
    """The blocks of ``rows.yaml``: rows (``path``, ``model``, ``label``
    or ``extra`` after the method's label), ``baseline``, ``pairs``."""
    with open(path, encoding="utf-8") as f:
        found = yaml.safe_load(f)
    for spec in found.values():
        spec["rows"] = [row(**r) for r in spec["rows"]]
        spec["pairs"] = [tuple(p) for p in spec["pairs"]]
    return found


def row(path, extra="", model="student", label=None):
    return {"path": path, "extra": extra, "model": model, "label": label}


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
    # A pruned record's macs_3s are the masked model's
    macs = first.get("pruned_macs_3s" if "pruning" in first else "macs_3s")
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
    spec = dict(spec, rows=spec["rows"] + discovered(spec, records))
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
    pairs = list(dict.fromkeys(pairs + spec["pairs"]))  # once each
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


def discovered(spec, records):
    """Rows for the record folders under ``spec["discover"]`` that the
    block does not declare (a new method shows up without a rows.yaml
    entry, labelled by its method fragment)."""
    if "discover" not in spec:
        return []
    known = {r["path"] for r in spec["rows"]}
    prefix = spec["discover"] + "/"
    return [
        row(p)
        for p in sorted(records)
        if p.startswith(prefix) and p not in known
    ]


def headline(records):
    """The README's short table: the 4-epoch table's rows (3 seeds each)."""
    return block({**blocks()["so762-table"], "pairs": [], "baseline": ""},
                 records)[:10]  # fmt: skip


def splice(text, marker, lines, path):
    start, end = f"<!-- {marker} -->\n", f"<!-- /{marker} -->"
    if start not in text or end not in text:
        raise ValueError(f"{path}: no '{start.strip()}' ... '{end}' block")
    head, rest = text.split(start, 1)
    return head + start + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1]


def load(runs_root, found):
    paths = {r["path"] for s in found.values() for r in s["rows"]}
    paths |= {p for s in found.values() for pair in s["pairs"] for p in pair}
    for spec in found.values():
        if "discover" in spec:
            root = os.path.join(runs_root, spec["discover"])
            names = sorted(os.listdir(root)) if os.path.isdir(root) else []
            paths |= {f"{spec['discover']}/{n}" for n in names}
    return {p: load_records(os.path.join(runs_root, p)) for p in paths}


TRIAGE_ROWS = ("tab/trkd", "tab/trkd_fixed_tau", "extra/trkd_lconf2",
               "extra/trkd_linear", "extra/trkd_tau_end0.5")  # fmt: skip


def triage_points(runs_root, rows=TRIAGE_ROWS):
    """``{tau: (mean |F|, background mass)}`` over the logged epochs of the
    TRKD records cut at T from the 8-epoch teacher (the teacher's masses
    depend on the teacher, views and tau only, so every epoch of every
    run is a sample)."""
    found = {}
    for name in rows:
        for record in load_records(os.path.join(runs_root, name)).values():
            for e in record["history"]:
                if "train trkd_F_mean" in e and "tau" in e:
                    found.setdefault(e["tau"], []).append(
                        (e["train trkd_F_mean"],
                         e["train trkd_mass_background"])
                    )  # fmt: skip
    return {t: tuple(numpy.mean(v, 0)) for t, v in sorted(found.items())}


def class_count(runs_root):
    """The class-count block: |F| and background mass against tau, and
    the set size tau 0.05 would give at 5,994 classes if |F| scaled with
    the class count, with the tau that gives it at 394 classes."""
    points = triage_points(runs_root)
    lines = ["| tau | mean \\|F\\| | \\|F\\| / 393 | background mass at T |",
             "|---|---|---|---|"]  # fmt: skip
    for tau, (size, back) in points.items():
        lines.append(f"| {tau:g} | {size:.1f} | {size / (CLASSES - 1):.4f} "
                     f"| {back:.3f} |")  # fmt: skip
    taus = numpy.array(sorted(points))
    sizes = numpy.array([points[t][0] for t in taus])
    end = sizes[0]
    scaled = end / (CLASSES - 1) * (PAPER_CLASSES - 1)
    keep = numpy.exp(numpy.interp(numpy.log(scaled), numpy.log(sizes),
                                  numpy.log(taus)))  # fmt: skip
    lines += ["", f"At tau {taus[0]:g}: mean \\|F\\| {end:.2f} of "
              f"{CLASSES - 1}. At {PAPER_CLASSES} classes the same share "
              f"would be {scaled:.0f} classes, which tau {keep:.2f} gives "
              f"at {CLASSES} classes (log-log interpolation)."]  # fmt: skip
    return lines


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
    found = blocks()
    records = load(args.runs, found)
    results = {k: block(s, records) for k, s in found.items()}
    results["class-count"] = class_count(args.runs)
    changed = []
    for path, new_blocks in (
        (args.results_md, results),
        (args.readme, {"so762-headline": headline(records)}),
    ):
        with open(path, encoding="utf-8") as f:
            old = f.read()
        new = old
        for marker, lines in new_blocks.items():
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
