"""What the Res2Net BatchNorm fold buys: student and teacher ONNX (float,
int8) exported with the pooling folds only and with the Res2Net folds
too; embedding differences, 1-thread median ms per 3 s (200 interleaved
runs) and the student's int8 operator profile.

    python tools/fold_gain.py STUDENT_DIR TEACHER_DIR TRAIN_CSV DATA_FOLDER
"""

import json
import os
import statistics
import sys
import tempfile
import time

import numpy
import torch

from speechbrain_kd.data import read_csv
from speechbrain_kd.onnx import calibration_signals, export_onnx, quantize_int8
from speechbrain_kd.onnx import fold as F
from speechbrain_kd.onnx.latency import make_runner, op_profile

torch.set_num_threads(1)
student, teacher, train_csv, data_folder = sys.argv[1:5]
models = {"student": student, "teacher": teacher}
calib = calibration_signals(read_csv(train_csv), data_folder, num=100)
tmp = tempfile.mkdtemp()
files = {}
orig = F._fold_block
for variant in ("pool_fold", "res2net_fold"):
    F._fold_block = orig if variant == "res2net_fold" else (lambda b: b)
    for m, src in models.items():
        d = os.path.join(tmp, variant, m)
        os.makedirs(d)
        info = export_onnx(
            src, dest=os.path.join(d, "m.onnx"), update_card=False
        )
        files[(m, variant, "float")] = info["path"]
        files[(m, variant, "int8")] = quantize_int8(
            info["path"], os.path.join(d, "m.int8.onnx"), calib, info["batched"]
        )
F._fold_block = orig
g = numpy.random.default_rng(0)
wav = (0.05 * g.standard_normal((1, 48000))).astype("float32")
runners = {
    k: make_runner(
        "onnx_" + ("float" if k[2] == "float" else "int8"), p, 1, wav
    )
    for k, p in files.items()
}
outs = {}
for k, r in runners.items():
    out = r()  # one call: make_runner's ONNX runners return a list
    outs[k] = numpy.asarray(out[0] if isinstance(out, list) else out)
    outs[k] = outs[k].reshape(-1)
for m in models:
    for kind in ("float", "int8"):
        a, b = outs[(m, "pool_fold", kind)], outs[(m, "res2net_fold", kind)]
        cos = float(a @ b / numpy.linalg.norm(a) / numpy.linalg.norm(b))
        print(
            m,
            kind,
            "max abs diff",
            float(abs(a - b).max()),
            "cos",
            round(cos, 6),
            "scale",
            float(abs(a).max()),
        )
times = {k: [] for k in runners}
for i in range(220):
    for k, r in runners.items():
        t0 = time.perf_counter()
        r()
        dt = time.perf_counter() - t0
        if i >= 20:
            times[k].append(dt)
res = {
    "/".join(k): round(1000 * statistics.median(v), 3) for k, v in times.items()
}
for k, v in res.items():
    print(k, v, "ms")
for v in ("pool_fold", "res2net_fold"):
    for kind in ("float", "int8"):
        print(
            v,
            kind,
            "student/teacher",
            round(res[f"student/{v}/{kind}"] / res[f"teacher/{v}/{kind}"], 3),
        )
    print(
        v,
        "student int8/float",
        round(res[f"student/{v}/int8"] / res[f"student/{v}/float"], 3),
    )
prof = {
    v: op_profile(files[("student", v, "int8")], wav[0], True)
    for v in ("pool_fold", "res2net_fold")
}
print(json.dumps(prof))
