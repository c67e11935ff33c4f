"""Time per 3 s of an ECAPA-TDNN student by width and Res2Net scale (float
and int8 ONNX, 1 thread): untrained weights, so the times only.

Each (C, scale) variant is the published STUDENT_DIR with its
``embedding_model`` re-shaped (channels C, C, C, C, 3C; ``res2net_scale``)
and seeded random weights. It is exported and quantized as the recipes
export it (``speechbrain_kd.onnx``: folds, ``MatmulFbank``, int8 calibrated
on 50 crops of TRAIN_CSV), then timed: the 2 x len(variants) runtimes
called in turn, 100 to 200 runs each.

    python tools/res2net_scale_latency.py STUDENT_DIR TRAIN_CSV DATA_FOLDER \\
        [C:SCALE ...]     # default: 96:8 96:4 96:2 128:4 128:2

Prints parameters, MACs per 3 s (``speechbrain_kd.model_size``) and the
median ms of each variant. A scale changes the model: a variant's EER
needs its own training (``--res2net_scale`` of the recipe YAMLs).
"""

import os
import shutil
import statistics
import sys
import tempfile

import numpy
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_kd.data import read_csv
from speechbrain_kd.model_size import count_parameters, embedding_macs
from speechbrain_kd.onnx import calibration_signals, export_onnx, quantize_int8
from speechbrain_kd.onnx.latency import make_runner, time_interleaved


def variant(source, dest, channels, scale):
    """A copy of the published folder ``source`` at ``dest`` whose
    embedding model has ``channels`` and ``res2net_scale`` ``scale``
    (seeded random weights); returns its modules."""
    shutil.copytree(source, dest)
    path = os.path.join(dest, "hyperparams.yaml")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    old = text[text.index("  channels: [") :].split("\n", 1)[0]
    new = f"  channels: [{', '.join([str(channels)] * 4)}, {3 * channels}]"
    text = text.replace(old, f"{new}\n  res2net_scale: {scale}", 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    with open(path, encoding="utf-8") as f:
        hp = load_hyperpyyaml(f)
    torch.manual_seed(0)
    model = hp["embedding_model"]
    for module in model.modules():  # keep the BatchNorm scales positive
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.weight.data.uniform_(0.5, 1.5)
    torch.save(model.state_dict(), os.path.join(dest, "embedding_model.ckpt"))
    return hp


def main(argv):
    source, train_csv, data_folder = argv[:3]
    shapes = [tuple(map(int, a.split(":"))) for a in argv[3:]] or [
        (96, 8), (96, 4), (96, 2), (128, 4), (128, 2)
    ]  # fmt: skip
    torch.set_num_threads(1)
    calib = calibration_signals(read_csv(train_csv), data_folder, num=50)
    g = numpy.random.default_rng(0)
    wav = (0.05 * g.standard_normal((1, 48000))).astype("float32")
    tmp = tempfile.mkdtemp()
    runners, sizes = {}, {}
    for c, scale in shapes:
        d = os.path.join(tmp, f"c{c}_s{scale}")
        hp = variant(source, d, c, scale)
        modules = {k: hp[k] for k in ("compute_features", "embedding_model")}
        sizes[(c, scale)] = (
            count_parameters(hp["embedding_model"]),
            embedding_macs(modules),
        )
        info = export_onnx(d, dest=os.path.join(d, "m.onnx"), update_card=False)
        int8 = quantize_int8(
            info["path"], os.path.join(d, "m.int8.onnx"), calib, info["batched"]
        )
        runners[(c, scale, "float")] = make_runner(
            "onnx_float", info["path"], 1, wav
        )
        runners[(c, scale, "int8")] = make_runner("onnx_int8", int8, 1, wav)
    times = time_interleaved(runners, 3.0, 100, 200)
    print("| C | scale | params | MACs / 3 s | float ms | int8 ms | int8/float")
    print("|---|---|---|---|---|---|---|")
    for (c, scale), (params, macs) in sizes.items():
        f, q = (
            1000 * statistics.median(times[(c, scale, k)])
            for k in ("float", "int8")
        )
        print(
            f"| {c} | {scale} | {params:,} | {macs / 1e6:.1f} M | {f:.2f} | "
            f"{q:.2f} | {q / f:.2f}"
        )
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main(sys.argv[1:])
