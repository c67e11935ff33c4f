#!/usr/bin/env python3
"""CPU latency table of published speaker models: ms per utterance.

For each ``LABEL=FOLDER`` (a published folder; pass copies, the model
cards there get a "Latency" section with ``--update_cards``): exports the
float ONNX graph and the static int8 one (``speechbrain_kd.onnx``; int8
calibrated on ``--calibration_crops`` 3-s crops of ``--calibration_csv``,
else on synthetic speech-like signals), then times four runtimes:
``pytorch`` (the exported modules in PyTorch), ``onnx_float``,
``onnx_int8`` (ONNX Runtime) and ``sb_encode_batch`` (SpeechBrain's
``EncoderClassifier.from_hparams(source=FOLDER).encode_batch``, under
``torch.no_grad``), at 1 and 2 threads, on 1, 3 and 10 s of audio,
batch 1 and 16 (white noise; time per utterance = time per call / batch).
In each (threads, length, batch) cell the runners of every model and
runtime are called in turn (1 thread); each runs as many times as fit
``--budget`` seconds, between ``--min_runs`` and ``--max_runs`` (200):
the table gives the count. Peak resident memory: a child process per
runtime, length and batch (1 thread) that builds the runner and calls it
once (``os.wait4`` maxrss; Python, libraries and model included). With 2
threads the runners are timed one after the other, each in one block
after its warm-up, with the runtimes' default thread pools: idle worker
threads spin for a while after a call and would take the next runner's
cores if interleaved (making them sleep instead, ``OMP_WAIT_POLICY=
PASSIVE``, made the 2-thread PyTorch student 2.6x slower).

    python bench/latency.py teacher=T_DIR student=S_DIR \\
        [--calibration_csv TRAIN.csv --data_folder DATA] \\
        [--json bench/latency.json] [--results_md bench/RESULTS.md] \\
        [--update_cards]

Prints the table and the goal ratios (same runtime, 1 thread, 3 s,
batch 1): student / teacher time, student int8 / its float ONNX, student
int8 / its ``encode_batch``. The first label is the reference model of
the ratios ("teacher"), the others are students.
"""

import argparse
import json
import os
import sys
import tempfile
import time

from speechbrain_kd.onnx.latency import (
    RUNTIMES,
    latency_table,
    machine_description,
    make_runner,
    noise_signal,
    peak_rss_mb,
    replace_block,
    summary,
    time_interleaved,
    update_card_latency,
)


def prepare(label, folder, args, tmp):
    """Float and int8 ONNX files of ``folder`` in ``tmp``."""
    from speechbrain_kd.onnx import (
        calibration_signals,
        export_onnx,
        quantize_int8,
        speech_like,
    )

    info = export_onnx(
        folder, dest=os.path.join(tmp, f"{label}.onnx"), update_card=False
    )
    if args.calibration_csv:
        from speechbrain_kd.data import read_csv

        calib = calibration_signals(
            read_csv(args.calibration_csv),
            args.data_folder,
            num=args.calibration_crops,
        )
    else:
        import torch

        g = torch.Generator().manual_seed(0)
        calib = [
            speech_like(48000, 16000, g).numpy()[None]
            for _ in range(args.calibration_crops)
        ]
    int8 = quantize_int8(
        info["path"],
        os.path.join(tmp, f"{label}.int8.onnx"),
        calib,
        info["batched"],
    )
    return {"onnx_float": info["path"], "onnx_int8": int8}


def sizes_mb(folder, files):
    ckpt = os.path.getsize(os.path.join(folder, "embedding_model.ckpt"))
    out = {"pytorch": ckpt, "sb_encode_batch": ckpt}
    out.update({k: os.path.getsize(p) for k, p in files.items()})
    return {k: round(v / 1e6, 3) for k, v in out.items()}


def measure(models, files, args, tmp):
    rows = []
    for threads in args.threads:
        for seconds in args.seconds:
            for batch in args.batches:
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
                    runners,
                    args.budget,
                    args.min_runs,
                    args.max_runs,
                    interleave=threads == 1,
                )
                for (label, runtime), values in times.items():
                    rows.append(
                        {
                            "model": label,
                            "runtime": runtime,
                            "threads": threads,
                            "seconds": seconds,
                            "batch": batch,
                            **summary(values, batch, seconds),
                        }
                    )
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


def pick(rows, model, runtime, threads=1, seconds=3.0, batch=1):
    """Median ms per utterance of one configuration."""
    for r in rows:
        if (r["model"], r["runtime"], r["threads"]) == (
            model,
            runtime,
            threads,
        ) and (r["seconds"], r["batch"]) == (seconds, batch):
            return r["median_ms"]
    raise KeyError((model, runtime, threads, seconds, batch))


def ratios(rows, labels):
    """The goal ratios: 1 thread, 3 s, batch 1."""
    teacher, students = labels[0], labels[1:]
    out = {}
    for s in students:
        for runtime in RUNTIMES:
            out[f"{s}/{teacher} {runtime}"] = pick(rows, s, runtime) / pick(
                rows, teacher, runtime
            )
        out[f"{s} int8/float ONNX"] = pick(rows, s, "onnx_int8") / pick(
            rows, s, "onnx_float"
        )
        out[f"{s} int8/encode_batch"] = pick(rows, s, "onnx_int8") / pick(
            rows, s, "sb_encode_batch"
        )
    return {k: round(v, 3) for k, v in out.items()}


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
    table = latency_table(rows, tuple(args.seconds))
    size_lines = ["| model | " + " | ".join(RUNTIMES) + " |"]
    size_lines.append("|---|" + "---|" * len(RUNTIMES))
    for k, s in sizes.items():
        size_lines.append(
            f"| {k} | " + " | ".join(f"{s[r]:.2f}" for r in RUNTIMES) + " |"
        )
    result = {
        "machine": machine,
        "command": command,
        "rows": rows,
        "sizes_mb": sizes,
        "ratios_1thread_3s_batch1": ratios(rows, list(models)),
        "total_s": round(time.perf_counter() - start),
    }
    print(f"\n{machine}\n\n{table}\n\nFile MB (PyTorch: checkpoint)\n")
    print("\n".join(size_lines))
    print("\nRatios of medians, 1 thread, 3 s, batch 1:")
    for k, v in result["ratios_1thread_3s_batch1"].items():
        print(f"  {k}: {v:.3f}")
    print(f"total {result['total_s']} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.results_md:
        block = "\n".join(
            [
                f"Machine: {machine}. Command: `{command}` "
                f"({result['total_s']} s).",
                "",
                table,
                "",
                "File MB (PyTorch: the embedding model checkpoint):",
                "",
                *size_lines,
                "",
                "Ratios of medians (1 thread, 3 s, batch 1): "
                + "; ".join(
                    f"{k} {v:.2f}"
                    for k, v in result["ratios_1thread_3s_batch1"].items()
                )
                + ".",
            ]
        )
        with open(args.results_md) as f:
            text = f.read()
        from speechbrain_kd.fileio import atomic_write_text

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
