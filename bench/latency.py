#!/usr/bin/env python3
"""CPU latency table of published speaker models: ms per utterance.

For each ``LABEL=FOLDER`` (a published folder; pass copies: with
``--update_cards`` their model cards get a "Latency" section): exports
the float and the static int8 ONNX graphs (int8 calibrated on
``--calibration_crops`` 3-s crops of ``--calibration_csv``, else on
synthetic speech-like signals), then times the runtimes of
``speechbrain_kd.onnx.latency`` (PyTorch, float and int8 ONNX Runtime,
SpeechBrain's ``encode_batch``) at 1 and 2 threads, on 1, 3 and 10 s of
white noise, batch 1 and 16 (ms per utterance = ms per call / batch).
With 1 thread the runners are called in turn, with 2 one after the other
(idle thread pools spin and would take each other's cores); each runs as
many times as fit ``--budget`` seconds (10 to 200). Peak resident memory:
one child process per runtime, length and batch.

    python bench/latency.py teacher=T_DIR student=S_DIR \\
        [--calibration_csv TRAIN.csv --data_folder DATA] \\
        [--json bench/latency.json] [--results_md bench/RESULTS.md] \\
        [--update_cards]

Prints the table and the goal ratios (1 thread, 3 s, batch 1; the first
label is the reference, "teacher"): student / teacher time per runtime,
student int8 / its float ONNX and / its ``encode_batch``.
"""

import argparse
import itertools
import json
import os
import sys
import tempfile
import time

from speechbrain_kd.fileio import atomic_write_text
from speechbrain_kd.onnx.latency import (
    RUNTIMES,
    make_runner,
    noise_signal,
    peak_rss_mb,
    summary,
    time_interleaved,
)
from speechbrain_kd.onnx.latency_report import (
    latency_table,
    machine_description,
    ratios,
    replace_block,
    results_block,
    sizes_mb,
    sizes_table,
    update_card_latency,
)


def prepare(label, folder, args, tmp):
    """Float and int8 ONNX files of ``folder`` in ``tmp/label``."""
    from speechbrain_kd.onnx import export_int8, export_onnx

    os.makedirs(os.path.join(tmp, label))
    dest = os.path.join(tmp, label, "embedding_model.onnx")
    info = export_onnx(folder, dest=dest, update_card=False)
    int8 = export_int8(
        info, args.calibration_csv, args.data_folder, args.calibration_crops, 0
    )
    return {"onnx_float": info["path"], "onnx_int8": int8["path"]}


def measure(models, files, args, tmp):
    rows = []
    cells = itertools.product(args.threads, args.seconds, args.batches)
    for threads, seconds, batch in cells:
        wav = noise_signal(batch, seconds)
        runners = {}
        for label, folder in models.items():
            for runtime in RUNTIMES:
                source = files[label].get(runtime, folder)
                runners[(label, runtime)] = make_runner(
                    runtime,
                    source,
                    threads,
                    wav,
                    savedir=os.path.join(tmp, f"sv_{label}"),
                )
        t0 = time.perf_counter()
        times = time_interleaved(
            runners, args.budget, args.min_runs, args.max_runs,
            interleave=threads == 1,
        )  # fmt: skip
        for (label, runtime), values in times.items():
            rows.append(
                dict(model=label, runtime=runtime, threads=threads,
                     seconds=seconds, batch=batch,
                     **summary(values, batch, seconds))
            )  # fmt: skip
        print(
            f"{threads} thread(s), {seconds:g} s, batch {batch}: "
            f"{time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    return rows


def add_memory(rows, models, files, args):
    """Peak RSS per model, runtime, length and batch (1-thread child);
    the same figure goes to the 2-thread rows."""
    peak = {}
    for label, folder in models.items():
        for runtime in RUNTIMES:
            source = files[label].get(runtime, folder)
            for seconds in args.seconds:
                for batch in args.batches:
                    peak[(label, runtime, seconds, batch)] = peak_rss_mb(
                        runtime, source, 1, batch, seconds, calls=1
                    )
    for r in rows:
        key = (r["model"], r["runtime"], r["seconds"], r["batch"])
        r["peak_rss_mb"] = peak[key]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="LABEL=FOLDER")
    parser.add_argument("--calibration_csv", default=None)
    parser.add_argument("--data_folder", default="")
    parser.add_argument("--calibration_crops", type=int, default=100)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--seconds", type=float, nargs="+", default=[1.0, 3.0, 10.0]
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--min_runs", type=int, default=10)
    parser.add_argument("--max_runs", type=int, default=200)
    parser.add_argument("--json", default=None)
    parser.add_argument("--results_md", default=None)
    parser.add_argument("--update_cards", action="store_true")
    args = parser.parse_args(argv)
    models = {}
    for item in args.models:
        label, sep, folder = item.partition("=")
        if not sep or not os.path.isfile(
            os.path.join(folder, "hyperparams.yaml")
        ):
            parser.error(f"{item!r}: expected LABEL=PUBLISHED_FOLDER")
        models[label] = folder
    command = "python bench/latency.py " + " ".join(
        a if "=" not in a or a.startswith("--") else a.split("=")[0] + "=DIR"
        for a in (argv if argv is not None else sys.argv[1:])
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        files = {k: prepare(k, f, args, tmp) for k, f in models.items()}
        sizes = {k: sizes_mb(models[k], files[k]) for k in models}
        print(f"exports: {time.perf_counter() - start:.0f} s", flush=True)
        rows = measure(models, files, args, tmp)
        t0 = time.perf_counter()
        add_memory(rows, models, files, args)
        print(f"memory: {time.perf_counter() - t0:.0f} s", flush=True)
    machine = machine_description()
    result = {
        "machine": machine,
        "command": command,
        "rows": rows,
        "sizes_mb": sizes,
        "ratios_1thread_3s_batch1": ratios(rows, list(models)),
        "total_s": round(time.perf_counter() - start),
    }
    print(f"\n{machine}\n\n{latency_table(rows, tuple(args.seconds))}")
    print(f"\nFile MB (PyTorch: checkpoint)\n\n{sizes_table(sizes)}")
    print("\nRatios of medians, 1 thread, 3 s, batch 1:")
    for k, v in result["ratios_1thread_3s_batch1"].items():
        print(f"  {k}: {v:.3f}")
    print(f"total {result['total_s']} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.results_md:
        with open(args.results_md) as f:
            text = f.read()
        block = results_block(result, tuple(args.seconds))
        atomic_write_text(args.results_md, replace_block(text, block))
    if args.update_cards:
        for label, folder in models.items():
            mine = [r for r in rows if r["model"] == label]
            update_card_latency(
                folder, mine, command, machine, tuple(args.seconds)
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
