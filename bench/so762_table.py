#!/usr/bin/env python3
"""The speechocean762 method table, with intervals, and its plots.

Reads the run records of ``bench/runs/so762/<row>/<seed>/``
(``verification.json``, ``replicates.json`` from ``so762_replicates.py``,
``train_log.txt``, ``card.md``) and prints a Markdown table:

- EER and minDCF (normalised, p_target 0.01) on the speechocean762 test
  trials: mean +- standard deviation over seeds, and the 95 % interval of
  the seed mean by bootstrap over test speakers (replicate ``b`` of every
  run is the same resample of speakers: the seed mean is taken replicate
  by replicate);
- the paired difference to no KD (the same seeds only): per replicate, the
  mean over common seeds of (row - no KD), its 95 % interval and the
  relative change;
- the mini corpus' trials, reported separately (EER mean over seeds).

With ``--figures DIR`` (matplotlib) it also draws the DET curves (seed
1986), EER vs parameters, and tau and the confusion-set size |F| over
training (TRKD rows).

    python bench/so762_table.py [--runs DIR] [--figures bench/figures] \
        [--results_md bench/RESULTS.md --readme README.md]

``--results_md`` / ``--readme`` write the tables into the marked blocks
of those files (``<!-- so762-table -->`` / ``<!-- so762-headline -->``).
"""

import argparse
import json
import os
import re
import sys

import numpy

from speechbrain_kd.fileio import atomic_write_text

ROWS = (
    ("nokd", "no KD"),
    ("kd", "KD (T=4)"),
    ("dkd", "DKD (alpha 1, beta 8, T=4)"),
    ("gkd", "GKD (90 %, T=4)"),
    ("trkd", "TRKD, triage at T (tau 1 -> 0.05, epochs 1-4)"),
    ("trkd_T1", "TRKD, triage at temperature 1"),
    ("trkd_fixed_tau", "TRKD, fixed tau = 0.05 from the start"),
)


def load_record(folder):
    """The record of one finished run (``replicates.json``,
    ``verification.json``, ``folder``), or None when incomplete."""
    rep = os.path.join(folder, "replicates.json")
    ver = os.path.join(folder, "verification.json")
    if not (os.path.isfile(rep) and os.path.isfile(ver)):
        return None
    with open(rep) as f:
        record = {"replicates": json.load(f)}
    with open(ver) as f:
        record["verification"] = json.load(f)
    record["folder"] = folder
    return record


def load_runs(root):
    """``{row: {seed: record}}`` of the finished runs under ``root``."""
    runs = {}
    for row in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        for seed in sorted(os.listdir(os.path.join(root, row))):
            record = load_record(os.path.join(root, row, seed))
            if record:
                runs.setdefault(row, {})[seed] = record
    return runs


def figures_of(record, model="student", trial_list="trials"):
    """The replicates entry of one model and trial list, or None."""
    return record["replicates"]["models"].get(model, {}).get(trial_list)


def parameters(folder, card="card.md"):
    """The embedding model's parameter count from the run's model card."""
    n = card_figure(folder, "embedding model parameters", card)
    return None if n is None else int(n)


def count(folder):
    """``parameters(folder)`` with thousands separators, or empty."""
    n = parameters(folder) if folder else None
    return f"{n:,}" if n else ""


def seed_mean(records, key, trial_list="trials", model="student"):
    """Per-replicate mean over seeds (array) and the per-seed values."""
    reps, values = [], []
    for record in records:
        fig = figures_of(record, model, trial_list)
        reps.append(
            [numpy.nan if v is None else v for v in fig[f"{key}_replicates"]]
        )
        values.append(fig[key])
    return numpy.nanmean(numpy.asarray(reps, float), axis=0), values


def ci(values):
    """95 % percentile interval of bootstrap values."""
    low, high = numpy.nanpercentile(values, [2.5, 97.5])
    return float(low), float(high)


def row_figures(rows, key, model="student"):
    """The records of ``rows[key]`` (seed order), the per-seed EERs and
    minDCFs of ``model`` and the 95 % intervals of their seed means."""
    records = [rows[key][s] for s in sorted(rows[key])]
    eer_rep, eers = seed_mean(records, "EER", model=model)
    dcf_rep, dcfs = seed_mean(records, "minDCF_norm", model=model)
    return records, eers, ci(eer_rep), dcfs, ci(dcf_rep)


def paired_difference(runs, row, other, models=("student", "student")):
    """Paired difference ``row - other`` over their common seeds
    (``models``: the model of each row's record, e.g. ``pruned``).

    Returns
    -------
    tuple or None
        ``(seeds, dEER, EER interval, other's mean EER, dminDCF, minDCF
        interval)``; None without a common seed.
    """
    common = sorted(set(runs.get(row, {})) & set(runs.get(other, {})))
    if not common:
        return None
    a = [runs[row][s] for s in common]
    b = [runs[other][s] for s in common]
    a_eer, a_vals = seed_mean(a, "EER", model=models[0])
    b_eer, b_vals = seed_mean(b, "EER", model=models[1])
    a_dcf, a_dcfs = seed_mean(a, "minDCF_norm", model=models[0])
    b_dcf, b_dcfs = seed_mean(b, "minDCF_norm", model=models[1])
    return (
        len(common),
        float(numpy.mean(a_vals) - numpy.mean(b_vals)),
        ci(a_eer - b_eer),
        float(numpy.mean(b_vals)),
        float(numpy.mean(a_dcfs) - numpy.mean(b_dcfs)),
        ci(a_dcf - b_dcf),
    )


PAIRS = (
    ("trkd", "kd"),
    ("trkd", "dkd"),
    ("dkd", "kd"),
    ("gkd", "kd"),
    ("trkd_T1", "trkd"),
    ("trkd_fixed_tau", "trkd"),
)


def pair_line(name, found):
    """A Markdown line of the paired difference ``found``
    (``paired_difference``) named ``name``."""
    n, diff, (lo, hi), base_mean, ddiff, (dlo, dhi) = found
    return (
        f"| {name} | {n} | {diff:+.2f} [{lo:+.2f}, {hi:+.2f}] | "
        f"{100 * diff / base_mean:+.1f} % | "
        f"{ddiff:+.3f} [{dlo:+.3f}, {dhi:+.3f}] |"
    )


PAIRS_HEADER = [
    "| difference | seeds | dEER % [95 % CI] | relative | dminDCF [95 % CI] |",
    "|---|---|---|---|---|",
]


def pairs_table(runs):
    """Markdown lines of the paired differences between methods."""
    names = dict(ROWS)
    lines = list(PAIRS_HEADER)
    for row, other in PAIRS:
        found = paired_difference(runs, row, other)
        if found:
            name = (
                f"{names[row].split(' (')[0]} - {names[other].split(' (')[0]}"
            )
            lines.append(pair_line(name, found))
    return lines


SEED_PAIRS_HEADER = [
    "| difference | seeds | per-seed dEER % | dEER % | speakers only "
    "[95 % CI] | speakers and seeds [95 % CI] | seeds only: t [95 % CI] "
    "| resolved |",
    "|---|---|---|---|---|---|---|---|",
]


def seed_pair_line(name, a_runs, b_runs, model="student"):
    """A Markdown line of ``a - b`` with the intervals of
    ``speechbrain_kd.scoring.seeds`` (``a_runs``, ``b_runs``: ``{seed:
    record}``), or None without a common seed. Resolved: both the
    speakers-and-seeds and the t interval exclude 0."""
    from speechbrain_kd.scoring.seeds import (
        seed_speaker_interval,
        seed_t_interval,
    )

    common = sorted(set(a_runs) & set(b_runs))
    if not common:
        return None

    def figs(runs, key):
        return {s: figures_of(runs[s], model)[key] for s in common}

    reps_a, reps_b = (
        figs(a_runs, "EER_replicates"),
        figs(b_runs, "EER_replicates"),
    )
    eer_a, eer_b = figs(a_runs, "EER"), figs(b_runs, "EER")
    _, lo2, hi2 = seed_speaker_interval(reps_a, reps_b)
    speakers = ci(
        numpy.mean([numpy.subtract(reps_a[s], reps_b[s]) for s in common], 0)
    )
    _, mean, tlo, thi = seed_t_interval(eer_a, eer_b)
    per_seed = ", ".join(f"{eer_a[s] - eer_b[s]:+.2f}" for s in common)
    t_cell = "-" if tlo is None else f"[{tlo:+.2f}, {thi:+.2f}]"
    resolved = tlo is not None and (
        (lo2 > 0 and tlo > 0) or (hi2 < 0 and thi < 0)
    )
    return (
        f"| {name} | {len(common)} | {per_seed} | {mean:+.2f} | "
        f"[{speakers[0]:+.2f}, {speakers[1]:+.2f}] | "
        f"[{lo2:+.2f}, {hi2:+.2f}] | {t_cell} | "
        f"{'yes' if resolved else 'not resolved'} |"
    )


def seed_pairs_table(runs, pairs, names):
    """Markdown lines of ``seed_pair_line`` for ``pairs`` of row keys."""
    lines = list(SEED_PAIRS_HEADER)
    for row, other in pairs:
        if row in runs and other in runs:
            name = (
                f"{names[row].split(' (')[0]} - {names[other].split(' (')[0]}"
            )
            line = seed_pair_line(name, runs[row], runs[other])
            if line:
                lines.append(line)
    return lines


TARGETS = ("0.5", "0.25", "0.125")
EXTRA = (
    ("mixer_trkd", "MLP-Mixer student (dim 104), TRKD at T", "student"),
    ("trkd_tau_end0.5", "TRKD, milder cut (tau 1 -> 0.5)", "student"),
    ("trkd_lconf2", "TRKD, lambda_conf 2 (not 8)", "student"),
    ("trkd_linear", "TRKD, linear curriculum (tau 1 -> 0.05)", "student"),
)


def paired_cells(runs, row, other="nokd", models=("student", "student")):
    """The cells ``dEER [CI] (seeds)``, ``relative`` and ``dminDCF [CI]``
    of ``row - other`` (``paired_difference`` with ``models``); empty
    without a common seed, or for ``other`` itself."""
    found = row != other and paired_difference(runs, row, other, models)
    if not found:
        return "", "", ""
    n, diff, (lo, hi), base_mean, ddiff, (dlo, dhi) = found
    return (
        f"{diff:+.2f} [{lo:+.2f}, {hi:+.2f}] ({n})",
        f"{100 * diff / base_mean:+.1f} %",
        f"{ddiff:+.3f} [{dlo:+.3f}, {dhi:+.3f}]",
    )


def mini_cell(records, model="student"):
    """Mean EER of ``model`` on the mini corpus' trials, or empty."""
    minis = [figures_of(r, model, "mini") for r in records]
    if not (minis and all(minis)):
        return ""
    return f"{numpy.mean([m['EER'] for m in minis]):.2f}"


def teacher_cells(record):
    """A teacher's EER, EER interval, minDCF and minDCF interval cells."""
    t = figures_of(record, "teacher")
    e_ci, d_ci = ci(t["EER_replicates"]), ci(t["minDCF_norm_replicates"])
    return (
        f"{t['EER']:.2f}",
        f"[{e_ci[0]:.2f}, {e_ci[1]:.2f}]",
        f"{t['minDCF_norm']:.3f}",
        f"[{d_ci[0]:.3f}, {d_ci[1]:.3f}]",
    )


MULTILEVEL = (
    ("nokd", "none (task loss only)"),
    ("utt", "utterance: segment6 x-vector"),
    ("frame", "frame: narrowBN + wideBN, frame-wise"),
    ("stats", "aggregated: stats of frame1-5"),
    ("lde", "aggregated: LDE of frame1-5"),
    ("concat", "concat: segment6 + narrowBN + wideBN"),
)


def student_width(records):
    """The x-vector student's label, from the ``--channels``,
    ``--wide_channels`` and ``--emb_dim`` of its ``command.txt`` (ml.yaml's
    160, 480 and 128 when absent)."""
    folder = records[0]["folder"]
    c, w, e = (
        option(folder, key) or default
        for key, default in (
            ("channels", "160"), ("wide_channels", "480"), ("emb_dim", "128")
        )
    )  # fmt: skip
    return f"x-vector {c}-{w}, {e}-d"


def load_groups(root):
    """``{group: runs}`` of the multi-level folders ``ml``, ``ml_c<C>``
    under ``root`` (``load_runs`` of each), ``ml`` first."""
    names = sorted(
        (n for n in os.listdir(root) if n == "ml" or n.startswith("ml_c")),
        key=lambda n: (n != "ml", n),
    ) if os.path.isdir(root) else []  # fmt: skip
    groups = {n: load_runs(os.path.join(root, n)) for n in names}
    return {n: runs for n, runs in groups.items() if runs}


ML_PAIRS = (("frame", "utt"), ("concat", "utt"), ("concat", "frame"))


def multilevel_table(groups, teacher=None):
    """Markdown lines of the multi-level x-vector rows (``groups``:
    ``{group: {level: {seed: record}}}``, one group per student width;
    ``teacher``: the x-vector teacher's record), each with its paired
    difference to the level ``nokd`` of the same student."""
    header = (
        "model", "teacher knowledge", "seeds", "EER %", "EER 95 % CI",
        "minDCF", "dEER vs none [95 % CI] (seeds)", "relative",
        "dminDCF vs none [95 % CI]", "mini EER %", "params",
    )  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    if teacher and figures_of(teacher, "teacher"):
        eer, e_ci, dcf, _ = teacher_cells(teacher)
        lines.append(
            f"| x-vector teacher (512-1500, 512-d) | - | 1 | {eer} | {e_ci} | "
            f"{dcf} | | | | {mini_cell([teacher], 'teacher')} | "
            f"{count(teacher['folder'])} |"
        )
    for ml in groups.values():
        for key, label in MULTILEVEL:
            if key not in ml:
                continue
            records, eers, e_ci, dcfs, _ = row_figures(ml, key)
            paired, rel, dpaired = paired_cells(ml, key)
            lines.append(
                f"| {student_width(records)} | {label} | {len(records)} | "
                f"{numpy.mean(eers):.2f} | [{e_ci[0]:.2f}, {e_ci[1]:.2f}] | "
                f"{numpy.mean(dcfs):.3f} | {paired} | {rel} | {dpaired} | "
                f"{mini_cell(records)} | {count(records[0]['folder'])} |"
            )
    names = dict(MULTILEVEL)
    pairs = []
    for ml in groups.values():
        for row, other in ML_PAIRS:
            found = paired_difference(ml, row, other)
            if found:
                width = student_width(list(ml[row].values()))
                name = (
                    f"{width}: {names[row].split(':')[0]} - "
                    f"{names[other].split(':')[0]}"
                )
                pairs.append(pair_line(name, found))
    if pairs:
        lines += [""] + PAIRS_HEADER + pairs
    return lines


def card_figure(folder, name, card="card.md"):
    """The number in the model card row that starts with ``name``."""
    path = os.path.join(folder, card)
    if not os.path.isfile(path):
        return None
    match = re.search(
        rf"\| {re.escape(name)}[^|]*\|\s*([\d,.]+)", open(path).read()
    )
    return float(match.group(1).replace(",", "")) if match else None


def option(folder, key):
    """The value of ``--key=`` in the run's ``command.txt``, or None."""
    path = os.path.join(folder, "command.txt")
    if not os.path.isfile(path):
        return None
    match = re.search(rf"--{key}=(\S+)", open(path).read())
    return match.group(1) if match else None


def extra_rows():
    """``(row, label, model, card)`` of the one-seed rows, in order."""
    rows = []
    for t in TARGETS:
        rows.append(
            (f"dyn_{t}", f"learned width, FLOPs target {t} (pruned)",
             "pruned", "card_pruned.md")
        )  # fmt: skip
        rows.append((f"fixed_{t}", "fixed width C={C}", "student", "card.md"))
    return rows + [
        (key, label, model, "card.md") for key, label, model in EXTRA
    ]


def width_macs(extra, fixed_key):
    """Counted MACs of the pruned learned-width student and of the fixed
    width it is compared with, the same way for both (embedding model,
    ``torch.utils.flop_counter``, on the pruning record's frames)."""
    from matched_width import fixed_macs

    seed = sorted(extra[fixed_key])[0]
    dyn = extra[f"dyn_{fixed_key[6:]}"][seed]["folder"]
    with open(os.path.join(dyn, "pruning.json")) as f:
        facts = json.load(f)
    folder = extra[fixed_key][seed]["folder"]
    channels = int(option(folder, "channels"))
    return facts["macs_pruned_counted"], fixed_macs(channels, facts["frames"])


def extra_table(runs, extra):
    """Markdown lines of the one-seed rows (``extra``: their records),
    each with its paired difference to no KD and to TRKD at T of the
    table on the same seeds, and the learned - fixed width differences."""
    merged = dict(runs, **extra)
    header = (
        "student", "seeds", "EER %", "EER 95 % CI", "minDCF",
        "dEER vs no KD [95 % CI]", "dEER vs TRKD at T [95 % CI]",
        "params", "MACs / 3 s",
    )  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    pairs = []
    for key, label, model, card in extra_rows():
        if key not in extra:
            continue
        records, eers, e_ci, dcfs, _ = row_figures(extra, key, model)
        folder = records[0]["folder"]
        label = label.format(C=option(folder, "channels"))
        cells = [
            paired_cells(merged, key, other, (model, "student"))[0]
            for other in ("nokd", "trkd")
        ]
        params = parameters(folder, card)
        macs = card_figure(folder, "MACs per 3 s", card)
        lines.append(
            f"| {label} | {len(records)} | {numpy.mean(eers):.2f} | "
            f"[{e_ci[0]:.2f}, {e_ci[1]:.2f}] | {numpy.mean(dcfs):.3f} | "
            f"{cells[0]} | {cells[1]} | "
            f"{f'{params:,.0f}' if params else ''} | "
            f"{f'{macs:.1f} M' if macs else ''} |"
        )
        if key.startswith("fixed_") and f"dyn_{key[6:]}" in extra:
            found = paired_difference(
                merged, f"dyn_{key[6:]}", key, ("pruned", "student")
            )
            if found:
                learned, fixed = width_macs(extra, key)
                name = (
                    f"learned width {key[6:]} ({learned / 1e6:.1f} M MACs) - "
                    f"{label} ({fixed / 1e6:.1f} M, "
                    f"{100 * (fixed - learned) / learned:+.1f} %)"
                )
                pairs.append(pair_line(name, found))
    if pairs:
        lines += [""] + PAIRS_HEADER + pairs
    return lines


def table(runs, teacher_folder=None):
    """The Markdown lines of the table (``teacher_folder``: the teacher's
    run record, for its parameter count)."""
    header = (
        "method",
        "seeds",
        "EER % (mean +- std)",
        "EER 95 % CI",
        "minDCF (mean +- std)",
        "minDCF 95 % CI",
        "paired dEER vs no KD [95 % CI] (seeds)",
        "relative",
        "dminDCF vs no KD [95 % CI]",
        "mini EER %",
        "params",
    )
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    teacher = None
    for row in runs.values():
        for record in row.values():
            if figures_of(record, "teacher"):
                teacher = record
                break
        if teacher:
            break
    if teacher:
        eer, e_ci, dcf, d_ci = teacher_cells(teacher)
        lines.append(
            f"| teacher ECAPA C=256 (8 epochs) | 1 | {eer} | {e_ci} | {dcf} | "
            f"{d_ci} | | | | {mini_cell([teacher], 'teacher')} | "
            f"{count(teacher_folder)} |"
        )
    for key, label in ROWS:
        if key not in runs:
            continue
        records, eers, e_ci, dcfs, d_ci = row_figures(runs, key)
        std = lambda v: numpy.std(v, ddof=1) if len(v) > 1 else float("nan")  # noqa: E731
        paired, rel, dpaired = paired_cells(runs, key)
        mini = mini_cell(records)
        lines.append(
            f"| {label} | {len(records)} | {numpy.mean(eers):.2f} +- "
            f"{std(eers):.2f} | [{e_ci[0]:.2f}, {e_ci[1]:.2f}] | "
            f"{numpy.mean(dcfs):.3f} +- {std(dcfs):.3f} | "
            f"[{d_ci[0]:.3f}, {d_ci[1]:.3f}] | {paired} | {rel} | "
            f"{dpaired} | {mini} | {count(records[0]['folder'])} |"
        )
    return lines, teacher


def draw(
    runs, teacher, folder, teacher_folder=None, extra=None, ml=None,
    ml_teacher=None,
):  # fmt: skip
    """DET curves, EER vs parameters (with the learned and fixed widths
    of ``extra``, the multi-level x-vector groups of ``ml``, as
    ``multilevel_table`` takes them, and ``ml_teacher``), tau and |F| over
    training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    from speechbrain_kd.train_log import read_train_log

    os.makedirs(folder, exist_ok=True)
    probit = lambda p: norm.ppf(numpy.clip(p, 1e-4, 1 - 1e-4))  # noqa: E731
    fig, ax = plt.subplots(figsize=(5, 5))
    curves = [("teacher", figures_of(teacher, "teacher"))] if teacher else []
    for key, label in ROWS:
        record = runs.get(key, {}).get("1986")
        if record:
            curves.append(
                (
                    label.split(" (")[0].split(",")[0]
                    + (
                        ""
                        if key in ("nokd", "kd", "dkd", "gkd", "trkd")
                        else " " + key[5:]
                    ),
                    figures_of(record),
                )
            )
    for label, fig_ in curves:
        det = numpy.asarray(fig_["det"])
        ax.plot(probit(det[:, 0]), probit(det[:, 1]), label=label)
    ticks = [0.01, 0.02, 0.05, 0.1, 0.2, 0.4]
    ax.set_xticks(probit(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_yticks(probit(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_xlim(probit(0.005), probit(0.5))
    ax.set_ylim(probit(0.005), probit(0.5))
    ax.set_xlabel("false accept rate (%)")
    ax.set_ylabel("false reject rate (%)")
    ax.set_title("speechocean762 test, seed 1986")
    if curves:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "so762_det.png"), dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    for i, (key, label) in enumerate(ROWS):
        for seed, record in sorted(runs.get(key, {}).items()):
            params = parameters(record["folder"])
            if params:
                ax.scatter(
                    params,
                    figures_of(record)["EER"],
                    s=12,
                    color=f"C{i}",  # every seed of a row in its colour
                    label=label.split(" (")[0] if seed == "1986" else None,
                )
    teacher_card = teacher_folder if teacher else None
    if teacher_card and parameters(teacher_card):
        ax.scatter(
            parameters(teacher_card),
            figures_of(teacher, "teacher")["EER"],
            marker="*",
            s=60,
            label="teacher",
        )
    for prefix, model, card, label in (
        ("dyn_", "pruned", "card_pruned.md", "TRKD, learned width (pruned)"),
        ("fixed_", "student", "card.md", "TRKD, fixed width"),
    ):
        points = []
        for t in TARGETS:
            record = (extra or {}).get(prefix + t, {}).get("1986")
            if record:
                params = parameters(record["folder"], card)
                points.append((params, figures_of(record, model)["EER"]))
        if points:
            points.sort()
            ax.plot(*zip(*points), "o--", ms=4, label=label)
    for ml in (ml or {}).values():
        for key, label in MULTILEVEL:
            record = ml.get(key, {}).get("1986")
            if record and parameters(record["folder"]):
                knowledge = label.split(":")[0].split(" (")[0]
                ax.scatter(
                    parameters(record["folder"]),
                    figures_of(record)["EER"],
                    marker="x",
                    s=20,
                    label=f"{student_width([record])}, {knowledge}",
                )
    if ml_teacher and parameters(ml_teacher["folder"]):
        ax.scatter(
            parameters(ml_teacher["folder"]),
            figures_of(ml_teacher, "teacher")["EER"],
            marker="P",
            s=50,
            label="x-vector teacher",
        )
    ax.set_xscale("log")
    ax.set_xlabel("parameters (embedding model)")
    ax.set_ylabel("EER (%)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "so762_eer_vs_params.png"), dpi=120)
    plt.close(fig)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3.5))
    for key in ("trkd", "trkd_T1", "trkd_fixed_tau"):
        record = runs.get(key, {}).get("1986")
        if not record:
            continue
        log = read_train_log(os.path.join(record["folder"], "train_log.txt"))
        epochs = [e["epoch"] for e in log]
        ax1.plot(
            epochs, [e.get("tau", numpy.nan) for e in log], "o-", label=key
        )
        ax2.plot(
            epochs,
            [e.get("train trkd_F_mean", numpy.nan) for e in log],
            "o-",
            label=key,
        )
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("tau")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("mean |F| (confusion set)")
    ax2.set_yscale("log")
    if ax1.lines:
        ax1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "so762_tau_F.png"), dpi=120)
    plt.close(fig)


HEADLINE = (
    ("nokd", "student, no KD"),
    ("kd", "student, KD"),
    ("dkd", "student, DKD"),
    ("gkd", "student, GKD"),
    ("trkd", "student, TRKD (triage at T)"),
    ("trkd_T1", "student, TRKD (triage at temperature 1)"),
    ("trkd_fixed_tau", "student, TRKD (fixed tau 0.05)"),
)


def headline(runs):
    """The README's short table: EER, minDCF, paired EER change."""
    lines = [
        "| model | seeds | EER % | minDCF | EER vs no KD [95 % CI] |",
        "|---|---|---|---|---|",
    ]
    for record in (r for row in runs.values() for r in row.values()):
        t = figures_of(record, "teacher")
        if t:
            lines.append(
                f"| teacher ECAPA C=256, 8 epochs | 1 | {t['EER']:.2f} | "
                f"{t['minDCF_norm']:.3f} | |"
            )
            break
    for key, label in HEADLINE:
        if key not in runs:
            continue
        records = list(runs[key].values())
        eers = [figures_of(r)["EER"] for r in records]
        dcfs = [figures_of(r)["minDCF_norm"] for r in records]
        eer = f"{numpy.mean(eers):.2f}"
        if len(eers) > 1:
            eer += f" +- {numpy.std(eers, ddof=1):.2f}"
        paired = ""
        found = key != "nokd" and paired_difference(runs, key, "nokd")
        if found:
            n, diff, (lo, hi), base = found[:4]
            paired = (
                f"{diff:+.2f} [{lo:+.2f}, {hi:+.2f}] "
                f"({100 * diff / base:+.1f} %)"
            )
        lines.append(
            f"| {label} | {len(eers)} | {eer} | {numpy.mean(dcfs):.3f} | "
            f"{paired} |"
        )
    return lines


def splice(path, marker, lines):
    """Replaces what lies between ``<!-- marker -->`` and ``<!-- /marker
    -->`` in ``path`` with ``lines``."""
    text = open(path).read()
    start, end = f"<!-- {marker} -->\n", f"<!-- /{marker} -->"
    if start not in text or end not in text:
        raise ValueError(f"{path}: no '{start.strip()}' ... '{end}' block")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    body = "\n".join(lines) + "\n"
    atomic_write_text(path, head + start + body + end + tail)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="bench/runs/so762/tab")
    parser.add_argument(
        "--extra",
        default=None,
        help="records of the one-seed rows (default: extra/ beside --runs)",
    )
    parser.add_argument(
        "--multilevel",
        default=None,
        help="folder of the multi-level x-vector records: ml/ and "
        "ml_c<C>/ (other student widths), teacher_xvector/1986/ "
        "(default: beside --runs)",
    )
    parser.add_argument("--figures", default=None)
    parser.add_argument(
        "--results_md",
        default=None,
        help="splice the tables into this file's so762-table block",
    )
    parser.add_argument(
        "--readme",
        default=None,
        help="splice the headline table into this file's so762-headline block",
    )
    args = parser.parse_args(argv)
    runs = load_runs(args.runs)
    root = os.path.dirname(os.path.abspath(args.runs))
    extra = load_runs(args.extra or os.path.join(root, "extra"))
    ml = load_groups(args.multilevel or root)
    ml_teacher = load_record(
        os.path.join(args.multilevel or root, "teacher_xvector", "1986")
    )
    teacher_folder = os.path.join(root, "teacher_ecapa", "1986")
    lines, teacher = table(runs, teacher_folder)
    lines += [""] + pairs_table(runs)
    vs_nokd = [(k, "nokd") for k, _ in ROWS if k != "nokd"]
    lines += [""] + seed_pairs_table(runs, vs_nokd + list(PAIRS), dict(ROWS))
    if extra:
        lines += [""] + extra_table(runs, extra)
    if ml or ml_teacher:
        lines += [""] + multilevel_table(ml, ml_teacher)
    print("\n".join(lines))
    if args.results_md:
        splice(args.results_md, "so762-table", lines)
    if args.readme:
        splice(args.readme, "so762-headline", headline(runs))
    if args.figures:
        draw(runs, teacher, args.figures, teacher_folder, extra, ml, ml_teacher)
    return 0


if __name__ == "__main__":
    sys.exit(main())
