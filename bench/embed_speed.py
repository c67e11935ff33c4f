#!/usr/bin/env python3
"""Student vs teacher: time to embed 3 s of audio on CPU, PyTorch and ONNX.

Each published folder is loaded with ``EncoderClassifier.from_hparams``
(PyTorch: ``encode_batch``, inference mode) and exported with
``speechbrain_kd.onnx`` (ONNX Runtime, CPU provider, same thread
count); one utterance of ``--seconds`` per call, median of ``--runs`` calls
after ``--warmup``. All four timings come from one process, interleaved,
so the ratios hold under machine load.

    python bench/embed_speed.py --student S_DIR --teacher T_DIR

Without folders, random models of ``trkd.yaml`` (student, ECAPA C=96) and
``teacher_ecapa.yaml`` (teacher, ECAPA C=256) are published and timed
(speed does not depend on the weights).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kd_step_time import publish_random  # noqa: E402


def timer(fn, runs, warmup):
    out = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        fn()
        if i >= warmup:
            out.append(time.perf_counter() - t0)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default=None)
    parser.add_argument("--teacher", default=None)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import onnxruntime as ort
    from speechbrain.inference.speaker import EncoderClassifier

    from speechbrain_kd.model_size import count_parameters
    from speechbrain_kd.onnx import export_onnx

    threads = torch.get_num_threads()
    wav = 0.1 * torch.randn(1, int(args.seconds * 16000))
    figures = {"seconds": args.seconds, "threads": threads}
    calls = {}
    with tempfile.TemporaryDirectory() as tmp:
        folders = {
            "student": args.student or publish_random(tmp, "trkd", 269),
            "teacher": args.teacher
            or publish_random(tmp, "teacher_ecapa", 269),
        }
        for role, folder in folders.items():
            model = EncoderClassifier.from_hparams(
                source=os.path.abspath(folder),
                savedir=os.path.join(tmp, f"{role}_sv"),
            )
            info = export_onnx(
                folder,
                dest=os.path.join(tmp, f"{role}.onnx"),
                update_card=False,
            )
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            sess = ort.InferenceSession(
                info["path"], options, providers=["CPUExecutionProvider"]
            )
            feed = {"wav": wav.numpy()}
            if info["batched"]:
                feed["wav_lens"] = torch.ones(1).numpy()

            def torch_call(model=model):
                with torch.inference_mode():
                    model.encode_batch(wav)

            calls[f"{role}_pytorch"] = torch_call
            calls[f"{role}_onnx"] = lambda s=sess, f=feed: s.run(None, f)
            figures[f"{role}_params"] = count_parameters(
                model.mods.embedding_model
            )
            figures[f"{role}_onnx_max_abs_diff"] = info["max_abs_diff"]
            figures[f"{role}_onnx_max_rel_diff"] = info["max_rel_diff"]
        times = {name: [] for name in calls}
        for _ in range(args.warmup):
            for fn in calls.values():
                fn()
        for _ in range(args.runs):  # interleaved: same load for all four
            for name, fn in calls.items():
                times[name] += timer(fn, 1, 0)
    for name, values in times.items():
        figures[f"{name}_ms"] = round(1000 * statistics.median(values), 2)
    figures["teacher/student pytorch"] = round(
        figures["teacher_pytorch_ms"] / figures["student_pytorch_ms"], 2
    )
    figures["teacher/student onnx"] = round(
        figures["teacher_onnx_ms"] / figures["student_onnx_ms"], 2
    )
    figures["student pytorch/onnx"] = round(
        figures["student_pytorch_ms"] / figures["student_onnx_ms"], 2
    )
    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
