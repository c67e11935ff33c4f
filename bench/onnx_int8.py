#!/usr/bin/env python3
"""int8 ONNX vs float ONNX vs PyTorch: EER, size and CPU time, student and
teacher.

For each published folder: exports the float ONNX model and the static
int8 one (``speechbrain_kd.onnx``, calibrated on 200 crops of the
training manifest), embeds every test utterance with the three runtimes
(one utterance per call, 1 thread), scores the trial list (cosine) and
reports EER / minDCF with 95 % intervals by bootstrap over test speakers,
the paired EER difference int8 - float with its interval, the file sizes,
and the median time to embed 3 s of audio. Targets: EER change
<= 0.2 points; int8 >= 1.5x faster than float ONNX; student >= 4x faster
than the teacher in the same runtime. An ONNX Runtime profile of the
student (share of time per operator type) says what dominates.

    python bench/onnx_int8.py --student S_DIR --teacher T_DIR \\
        --data_folder ../shared/data --prep PREP_DIR [--json OUT] \\
        [--calibration_csv TRAIN.csv]

``PREP_DIR`` holds ``train.csv``, ``test.csv`` and ``veri_test2.txt``
(the MiniSpeakers recipe's ``results/mini/prepared``); the int8 ranges
are calibrated on ``--calibration_csv`` (default ``PREP_DIR/train.csv``;
give the models' own training manifest when they were trained on
another corpus).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

import numpy
import torch

from speechbrain_kd.onnx.latency import op_profile, time_interleaved
from speechbrain_kd.onnx.latency_report import sizes_mb


def sessions(paths):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return {
        k: ort.InferenceSession(p, options, providers=["CPUExecutionProvider"])
        for k, p in paths.items()
    }


def onnx_embed(session, wav, batched):
    feed = {"wav": wav[None].astype("float32")}
    if batched:
        feed["wav_lens"] = numpy.ones(1, dtype="float32")
    return session.run(None, feed)[0][0]


def evaluate(name, folder, args, rows, trials, speakers, tmp):
    from speechbrain.inference.speaker import EncoderClassifier

    from speechbrain_kd.data import load_audio, read_csv, resolve_path
    from speechbrain_kd.onnx import (
        calibration_signals,
        export_onnx,
        quantize_int8,
    )
    from speechbrain_kd.scoring import eer_of, interval, min_dcf_of

    info = export_onnx(
        folder, dest=os.path.join(tmp, f"{name}.onnx"), update_card=False
    )
    calib = calibration_signals(
        read_csv(args.calibration_csv or os.path.join(args.prep, "train.csv")),
        args.data_folder,
        num=args.calibration_crops,
    )
    int8 = quantize_int8(
        info["path"],
        os.path.join(tmp, f"{name}.int8.onnx"),
        calib,
        info["batched"],
    )
    model = EncoderClassifier.from_hparams(
        source=os.path.abspath(folder),
        savedir=os.path.join(tmp, f"{name}_model"),
        run_opts={"device": "cpu"},
    )
    sess = sessions({"onnx_float": info["path"], "onnx_int8": int8})
    embeddings = {"pytorch": {}, "onnx_float": {}, "onnx_int8": {}}
    for row in rows:
        path = resolve_path(args.data_folder, row["wav"])
        wav = load_audio(path, int(row["start"]), int(row["stop"]))
        with torch.inference_mode():
            emb = model.encode_batch(wav[None]).reshape(-1).numpy()
        embeddings["pytorch"][row["ID"]] = emb
        for k, s in sess.items():
            embeddings[k][row["ID"]] = onnx_embed(
                s, wav.numpy(), info["batched"]
            )
    labels = numpy.array([t[0] for t in trials])
    scores = {}
    for k, emb in embeddings.items():
        unit = {i: e / numpy.linalg.norm(e) for i, e in emb.items()}
        scores[k] = numpy.array([unit[a] @ unit[b] for _, a, b in trials])
    out = {"systems": {}}
    for k, s in scores.items():
        eer = interval(eer_of, [s], labels, speakers, args.bootstrap)
        dcf = interval(min_dcf_of, [s], labels, speakers, args.bootstrap)
        out["systems"][k] = {"EER": eer, "minDCF_norm": dcf}
    out["int8_minus_float_EER"] = interval(
        lambda a, b, y: eer_of(a, y) - eer_of(b, y),
        [scores["onnx_int8"], scores["onnx_float"]],
        labels,
        speakers,
        args.bootstrap,
    )
    files = {"onnx_float": info["path"], "onnx_int8": int8}
    out["sizes_mb"] = sizes_mb(folder, files)
    # timed later, interleaved with the other model's runners
    g = numpy.random.default_rng(0)
    wav = (0.05 * g.standard_normal(3 * 16000)).astype("float32")
    tw = torch.from_numpy(wav)[None]
    out["runners"] = {
        "pytorch": lambda: model.encode_batch(tw),
        **{
            k: (lambda s=s: onnx_embed(s, wav, info["batched"]))
            for k, s in sess.items()
        },
    }
    out["profile_float"] = op_profile(info["path"], wav, info["batched"])
    out["profile_int8"] = op_profile(int8, wav, info["batched"])
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--prep", required=True)
    parser.add_argument("--calibration_crops", type=int, default=200)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", default=None)
    parser.add_argument("--calibration_csv", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from speechbrain_kd.data import read_csv, read_trials

    rows = read_csv(os.path.join(args.prep, "test.csv"))
    speaker_of = {r["ID"]: r["spk_id"] for r in rows}
    trials = read_trials(os.path.join(args.prep, "veri_test2.txt"))
    speakers = [speaker_of[a] for _, a, _ in trials]
    result = {"trials": len(trials), "test_speakers": len(set(speakers))}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("student", "teacher"):
            result[name] = evaluate(
                name, getattr(args, name), args, rows, trials, speakers, tmp
            )
    # time per 3 s utterance, 1 thread: every runtime of both models in
    # turn, so that load on the machine hits them alike
    runners = {
        (name, k): run
        for name in ("student", "teacher")
        for k, run in result[name].pop("runners").items()
    }
    with torch.inference_mode():  # exactly --runs timed calls each
        times = time_interleaved(runners, 0.0, args.runs, args.runs,
                                 args.warmup)  # fmt: skip
    for (name, k), values in times.items():
        result[name].setdefault("ms_per_3s", {})[k] = round(
            1000 * statistics.median(values), 2
        )
    s, t = result["student"], result["teacher"]
    print(f"\n{result['trials']} trials, {result['test_speakers']} speakers")
    print(
        "| model | runtime | EER % [95 % CI] | minDCF norm. | size MB "
        "| ms / 3 s (1 thread) |"
    )
    print("|---|---|---|---|---|---|")
    for name, r in (("student", s), ("teacher", t)):
        for k, f in r["systems"].items():
            e, lo, hi = f["EER"]
            print(
                f"| {name} | {k} | {e:.2f} [{lo:.2f}, {hi:.2f}] "
                f"| {f['minDCF_norm'][0]:.3f} "
                f"| {r['sizes_mb'][k]} "
                f"| {r['ms_per_3s'][k]} |"
            )
    for name, r in (("student", s), ("teacher", t)):
        d, lo, hi = r["int8_minus_float_EER"]
        ms = r["ms_per_3s"]
        speedup = ms["onnx_float"] / ms["onnx_int8"]
        print(
            f"{name}: EER int8 - float {d:+.2f} [{lo:+.2f}, {hi:+.2f}] pt; "
            f"int8 / float ONNX speed-up {speedup:.2f}x; "
            f"size int8 / float "
            f"{r['sizes_mb']['onnx_int8'] / r['sizes_mb']['onnx_float']:.2f}"
        )
    for k in ("pytorch", "onnx_float", "onnx_int8"):
        print(
            f"teacher / student time, {k}: "
            f"{t['ms_per_3s'][k] / s['ms_per_3s'][k]:.2f}x"
        )
    for key in sorted(k for k in s if k.startswith("profile")):
        print(f"student {key}:", s[key])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
