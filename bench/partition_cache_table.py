#!/usr/bin/env python3
"""Table of the TRKD triage-temperature and teacher-cache runs.

Reads the runs of ``bench/run_partition_cache.sh`` (``tab4/trkd_T``,
``tab4/trkd_cache``, ``tab4/trkd_T1`` under the MiniSpeakers results
folder, or their copies in ``bench/runs/``), prints a Markdown table: EER
and normalised minDCF (mean +- std over seeds), the confusion-set size of
the last epoch (mean of the per-run medians / means), the wall time per
run, and the paired EER difference of each row to TRKD at T (same seeds).

    python bench/partition_cache_table.py [--results DIR] [--copy]

``--copy`` copies each finished run's ``verification.json``,
``train_log.txt`` and wall time into ``bench/runs/<row>/<seed>/`` (small
files, committed, so that the table survives a new machine).
"""

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

from speechbrain_kd.train_log import read_train_log

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "recipes" / "MiniSpeakers" / "results" / "mini" / "tab4"
COPIES = ROOT / "bench" / "runs"
ROWS = [
    ("trkd_T1", "TRKD, triage at temperature 1 (`--partition_T=1.0`)"),
    ("trkd_T", "TRKD, triage at T = 4 (default)"),
    ("trkd_cache", "TRKD at T = 4, teacher cache (8 views, float16)"),
]
FILES = ("verification.json", "train_log.txt", "wall_seconds.txt")


def runs_of(name, results):
    """``{seed: folder}`` of the finished runs of row ``name``."""
    found = {}
    for base in (COPIES / name, results / name):
        if not base.is_dir():
            continue
        for folder in sorted(base.iterdir()):
            if (folder / "verification.json").is_file():
                found.setdefault(folder.name, folder)
    return found


def mean_std(values):
    if len(values) < 2:
        return (values[0] if values else float("nan")), float("nan")
    return statistics.mean(values), statistics.stdev(values)


def fmt(values, digits=2):
    m, s = mean_std(values)
    if s != s:  # nan
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} +- {s:.{digits}f}"


def row_figures(folder):
    result = json.loads((folder / "verification.json").read_text())
    student = result["student"]
    last = read_train_log(folder / "train_log.txt")[-1]
    wall = folder / "wall_seconds.txt"
    return {
        "eer": student["EER"],
        "dcf": student["minDCF_norm"],
        "f_median": last.get("train trkd_F_median"),
        "f_mean": last.get("train trkd_F_mean"),
        "wall": float(wall.read_text()) if wall.is_file() else None,
        "teacher_eer": result.get("teacher", {}).get("EER"),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--copy", action="store_true")
    args = parser.parse_args(argv)
    table = {}
    for name, _ in ROWS:
        runs = runs_of(name, args.results)
        if args.copy:
            for seed, folder in runs.items():
                dest = COPIES / name / seed
                if folder == dest:
                    continue
                dest.mkdir(parents=True, exist_ok=True)
                for f in FILES:
                    if (folder / f).is_file():
                        shutil.copy(folder / f, dest / f)
        table[name] = {s: row_figures(f) for s, f in runs.items()}
    base = table.get("trkd_T", {})
    print(
        "| run | seeds | EER % | minDCF (norm.) | last-epoch |F| median "
        "(mean) | wall s / run | EER - TRKD at T (paired) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    teacher = set()
    for name, label in ROWS:
        runs = table[name]
        if not runs:
            continue
        seeds = sorted(runs)

        def get(key, runs=runs, seeds=seeds):
            return [runs[s][key] for s in seeds if runs[s][key] is not None]

        teacher.update(get("teacher_eer"))
        paired = [runs[s]["eer"] - base[s]["eer"] for s in seeds if s in base]
        diff = "-" if name == "trkd_T" or not paired else fmt(paired)
        size = f"{fmt(get('f_median'), 1)} ({fmt(get('f_mean'), 1)})"
        print(
            f"| {label} | {','.join(seeds)} | {fmt(get('eer'))} "
            f"| {fmt(get('dcf'), 3)} | {size} | {fmt(get('wall'), 0)} "
            f"| {diff} |"
        )
    if teacher:
        print(f"\nTeacher EER on the same trials: {sorted(teacher)} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
