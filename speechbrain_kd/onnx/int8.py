"""Static int8 quantization of an exported model, calibrated and checked.

``export_int8`` writes ``embedding_model.int8.onnx`` next to the float
model: ONNX Runtime's static quantization (``quantize_int8``) with ranges
calibrated on training crops (``calibration_signals``), checked against
the float model by the cosine of their embeddings
(``int8_differences``).
"""

import logging
import os

import torch

from speechbrain_kd.onnx.check import speech_like

logger = logging.getLogger(__name__)

INT8_NAME = "embedding_model.int8.onnx"


def calibration_signals(rows, data_folder, num=200, seconds=3.0, seed=0):
    """Crops for static int8 calibration: ``num`` random ``seconds`` crops
    of the manifest ``rows`` (e.g. the training CSV), seeded.

    Returns a list of ``[1, samples]`` float32 arrays.
    """
    import numpy

    from speechbrain_kd.data import (
        crop_generator,
        load_random_crop,
        resolve_path,
    )

    generator = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(rows), generator=generator)[:num].tolist()
    out = []
    for i in picks:
        row = rows[i]
        sig = load_random_crop(
            resolve_path(data_folder, row["wav"]),
            int(row["start"]),
            int(row["stop"]),
            int(seconds * 16000),
            crop_generator(seed, "calibration", row["ID"]),
        )
        out.append(numpy.asarray(sig, dtype="float32")[None])
    return out


def waveform_convs(model, wav="wav"):
    """Names of the ``Conv`` nodes of an ONNX ``model`` that read the
    waveform: those reached from the input ``wav`` through no other
    ``Conv``, no ``Log`` (the end of a log-mel front end) and no
    ``Shape`` (sizes computed from the waveform's length). That is the
    DFT convolution of SpeechBrain's STFT as the export patches it
    (``export_friendly``), or the first convolution of a raw-waveform
    model; ``quantize_int8`` keeps them float. A ``MatmulFbank`` front end
    has none (its MatMul nodes are not quantized).
    """
    raw = {wav}
    found = []
    for node in model.graph.node:  # ONNX nodes are topologically sorted
        if not raw.intersection(node.input):
            continue
        if node.op_type == "Conv":
            found.append(node.name)
        elif node.op_type not in ("Log", "Shape", "Size"):
            raw.update(node.output)
    return found


def quantize_int8(
    float_path,
    dest,
    signals,
    batched=True,
    op_types=("Conv", "Relu"),
    pre_process=True,
):
    """Static int8 quantization of an exported model (ONNX Runtime).

    The graph is first pre-processed (``quant_pre_process``: shape
    inference and ONNX Runtime's basic optimisations, constant folding
    among them). Its convolutions get int8 weights (per output channel)
    and int8 activations (QDQ format), and the ReLU after each: ONNX
    Runtime fuses DequantizeLinear -> Conv -> Relu -> QuantizeLinear into
    one ``QLinearConv``. Ranges are calibrated on ``signals`` (MinMax).
    The feature extraction stays float32: its DFT (``MatmulFbank``'s
    MatMul nodes, or the DFT convolution of a patched STFT,
    ``waveform_convs``) reads the waveform, and 8-bit activations there
    would put the quantization noise of the loudest sample into the quiet
    frequency bins of the log-mel features. The other element-wise ops
    (BatchNorm, Mul, Add) stay float: quantizing Mul, Add, Concat and
    Split as well (QLinearMul / QLinearAdd) made the C=96 student slower
    (3.68 against 3.45 ms for 3 s, 1 thread) and moved its embeddings
    (cosine to float 0.90 against 0.998); ONNX Runtime runs each
    ``QLinearConv`` in NHWC between two Transpose nodes (~10 % of the
    int8 student's time), which cancel only between int8 ops: replacing
    the BatchNorms by Mul + Add (which ONNX Runtime can run in NHWC)
    removed 61 of the 68 Transpose nodes but made the model slower
    (3.15 against 2.84 ms). Dynamic quantization (``ConvInteger``) was
    ~3x slower than static (``bench/onnx_int8.py``).

    Arguments
    ---------
    float_path : str
        The float ``.onnx`` model (``export_onnx``).
    dest : str
        The int8 ``.onnx`` path (written atomically).
    signals : list of numpy.ndarray
        ``[1, samples]`` calibration waveforms.
    batched : bool
        Whether the graph takes ``wav_lens``.
    op_types : sequence of str
        ONNX op types to quantize; ``("Conv",)`` without
        ``pre_process`` is the plain quantization, for comparisons.
    pre_process : bool
        Run ``quant_pre_process`` first.
    """
    import numpy
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(float_path)
    if not any(n.op_type == "Conv" for n in model.graph.node):
        raise ValueError(f"{float_path}: no Conv node to quantize")
    excluded = waveform_convs(model)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(signals)

        def get_next(self):
            wav = next(self.items, None)
            if wav is None:
                return None
            feed = {"wav": wav}
            if batched:
                feed["wav_lens"] = numpy.ones(len(wav), dtype="float32")
            return feed

    tmp = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.tmp")
    pre = f"{tmp}.pre"
    try:
        source = float_path
        if pre_process:
            quant_pre_process(float_path, pre, skip_symbolic_shape=True)
            source = pre
        quantize_static(
            source,
            tmp,
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            op_types_to_quantize=list(op_types),
            nodes_to_exclude=excluded,
        )
        # The quantizer's inferred shapes merge symbolic time dimensions
        # that differ by one frame; ONNX Runtime then fails to plan buffers
        # for some lengths. The shapes are optional: drop them.
        quantized = onnx.load(tmp)
        del quantized.graph.value_info[:]
        onnx.save(quantized, tmp)
        os.replace(tmp, dest)
    finally:
        for path in (tmp, pre):
            if os.path.exists(path):
                os.remove(path)
    return dest


def int8_differences(float_path, int8_path, signals, batched=True):
    """Cosine similarity of int8 vs float embeddings (ONNX Runtime) on
    ``signals``: ``{"min_cosine": ..., "mean_cosine": ...}``."""
    import numpy
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = [
        ort.InferenceSession(p, options, providers=["CPUExecutionProvider"])
        for p in (float_path, int8_path)
    ]
    cosines = []
    for wav in signals:
        feed = {"wav": wav}
        if batched:
            feed["wav_lens"] = numpy.ones(len(wav), dtype="float32")
        a, b = (s.run(None, feed)[0] for s in sessions)
        cos = (a * b).sum(-1) / (
            numpy.linalg.norm(a, axis=-1) * numpy.linalg.norm(b, axis=-1)
        )
        cosines += cos.tolist()
    return {
        "min_cosine": float(min(cosines)),
        "mean_cosine": float(sum(cosines) / len(cosines)),
    }


def export_int8(info, calibration_csv, data_folder, crops, min_cosine):
    """Writes ``embedding_model.int8.onnx`` next to the float model of
    ``info`` (``export_onnx``'s result), calibrated on ``crops`` 3-s crops
    of ``calibration_csv`` (or, without a CSV, speech-like synthetic
    signals, with a warning), and checks it against the float model on
    other crops: a smallest cosine below ``min_cosine`` is an error."""
    from speechbrain_kd.data import read_csv

    if calibration_csv:
        rows = read_csv(calibration_csv)
        calib = calibration_signals(rows, data_folder, crops, seed=0)
        check = calibration_signals(rows, data_folder, 20, seed=1)
    else:
        logger.warning(
            "No --calibration_csv: calibrating int8 ranges on synthetic "
            "speech-like signals (give training crops for a real model)"
        )
        g = torch.Generator().manual_seed(0)
        calib = [
            speech_like(48000, 16000, g).numpy()[None] for _ in range(crops)
        ]
        check = [speech_like(48000, 16000, g).numpy()[None] for _ in range(8)]
    dest = os.path.join(os.path.dirname(info["path"]), INT8_NAME)
    quantize_int8(info["path"], dest, calib, info["batched"])
    diffs = int8_differences(info["path"], dest, check, info["batched"])
    if diffs["min_cosine"] < min_cosine:
        os.remove(dest)
        raise RuntimeError(
            f"{dest}: int8 embeddings differ from the float model (smallest "
            f"cosine {diffs['min_cosine']:.4f} < --min_cosine={min_cosine})"
        )
    size = os.path.getsize(dest) / os.path.getsize(info["path"])
    logger.info(
        "Exported %s (cosine to float >= %.4f, %.2f x the float size)",
        dest,
        diffs["min_cosine"],
        size,
    )
    return {"path": dest, "size_ratio": round(size, 3), **diffs}
