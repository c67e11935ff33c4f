"""ONNX export of a published speaker model (waveform in, embedding out).

The exported graph is the whole ``EncoderClassifier.encode_batch`` path of a
published folder: ``compute_features`` (Fbank, STFT included),
``mean_var_norm`` and ``embedding_model``, so an ONNX Runtime user feeds
16 kHz audio and gets the same embedding as PyTorch (checked to ``tol``)::

    python -m speechbrain_kd.onnx_export results/mini/trkd/1986/pretrained

writes ``embedding_model.onnx`` into the folder and an "ONNX" section into
its model card. The time axis is always dynamic. The batch axis is dynamic
too when the model allows it (``wav`` ``[batch, time]`` plus relative
lengths ``wav_lens`` ``[batch]``, SpeechBrain's convention); models whose
code loops over the batch or sizes tensors from data (SpeechBrain's
``StatisticsPooling`` with lengths, used by the x-vector) are exported for
one utterance at a time (``wav`` ``[1, time]``, no lengths), which is how
embeddings are extracted on device anyway.

Requires ``onnx``, ``onnxscript`` and ``onnxruntime``
(``pip install speechbrain_kd[onnx]``).
"""

import argparse
import json
import logging
import os
import sys
import tempfile

import torch

from speechbrain_kd.fileio import atomic_write_text
from speechbrain_kd.sb_private.export_patches import export_friendly

logger = logging.getLogger(__name__)

ONNX_NAME = "embedding_model.onnx"
CHECK_SECONDS = (1.0, 3.0, 7.3)


class WaveformEncoder(torch.nn.Module):
    """``encode_batch`` of a speaker model as one module: wav -> embedding.

    Arguments
    ---------
    compute_features, mean_var_norm, embedding_model : torch.nn.Module
        The modules of a published folder (``EncoderClassifier.mods``).
    use_lengths : bool
        Whether ``forward`` takes relative lengths (batched export) or one
        unpadded utterance.

    Example
    -------
    >>> import torch
    >>> from speechbrain.lobes.features import Fbank
    >>> from speechbrain.processing.features import InputNormalization
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    >>> enc = WaveformEncoder(
    ...     Fbank(n_mels=24),
    ...     InputNormalization(norm_type="sentence", std_norm=False),
    ...     ECAPA_TDNN(24, channels=[16, 16, 16, 16, 48], lin_neurons=8),
    ... ).eval()
    >>> enc(torch.randn(2, 16000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 8])
    """

    def __init__(
        self, compute_features, mean_var_norm, embedding_model, use_lengths=True
    ):
        super().__init__()
        self.compute_features = compute_features
        self.mean_var_norm = mean_var_norm
        self.embedding_model = embedding_model
        self.use_lengths = use_lengths

    def forward(self, wav, wav_lens=None):
        """Embeddings ``[batch, dim]`` of ``wav`` ``[batch, time]``."""
        if not self.use_lengths:
            wav_lens = None
        elif wav_lens is None:
            wav_lens = torch.ones(wav.shape[0], device=wav.device)
        feats = self.compute_features(wav)
        if wav_lens is None:
            ones = torch.ones(feats.shape[0], device=feats.device)
            feats = self.mean_var_norm(feats, ones)
        else:
            feats = self.mean_var_norm(feats, wav_lens)
        emb = self.embedding_model(feats, wav_lens)
        return emb.reshape(emb.shape[0], -1)


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "ONNX export needs onnx, onnxscript and onnxruntime: "
            "pip install speechbrain_kd[onnx]"
        ) from err


def _export(module, args, path, dynamic_shapes, opset):
    with export_friendly():
        torch.onnx.export(
            module,
            args,
            path,
            dynamo=True,
            opset_version=opset,
            dynamic_shapes=dynamic_shapes,
            input_names=["wav", "wav_lens"][: len(args)],
            output_names=["embedding"],
            external_data=False,
            verbose=False,
        )


def _speech_like(n, sample_rate, generator):
    """A voiced-speech-like test signal: harmonics of a wandering f0 under a
    syllable-rate envelope, breath noise, and a near-silent pause (the
    low-energy bins where float32 FFTs differ most)."""
    t = torch.arange(n) / sample_rate
    f0 = 100 + 150 * torch.rand(1, generator=generator)
    phase = (
        2
        * torch.pi
        * torch.cumsum(f0 * (1 + 0.1 * torch.sin(2 * torch.pi * 1.3 * t)), 0)
        / sample_rate
    )
    voiced = sum(torch.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1 + torch.sin(2 * torch.pi * 4 * t)) ** 2
    wav = 0.05 * envelope * voiced
    wav = wav + 0.003 * torch.randn(n, generator=generator)
    pause = slice(n // 3, n // 3 + n // 8)
    wav[pause] = 1e-4 * torch.randn(n // 8, generator=generator)
    return wav


def _check_batches(batched, sample_rate, generator):
    """Test inputs: several lengths of white noise and of a speech-like
    signal; a padded batch when ``batched``."""
    cases = []
    for seconds in CHECK_SECONDS:
        n = int(seconds * sample_rate)
        cases.append((0.1 * torch.randn(1, n, generator=generator), None))
        speech = _speech_like(n, sample_rate, generator).unsqueeze(0)
        cases.append((speech, None))
    if batched:
        n = int(CHECK_SECONDS[-1] * sample_rate)
        wav = torch.stack(
            [_speech_like(n, sample_rate, generator) for _ in range(3)]
        )
        lens = torch.tensor([1.0, 0.55, 0.8])
        for i, rel in enumerate(lens.tolist()):
            wav[i, round(rel * n) :] = 0.0
        cases.append((wav, lens))
    return [
        (wav, torch.ones(wav.shape[0]) if lens is None else lens)
        for wav, lens in cases
    ]


@torch.no_grad()
def onnx_differences(path, module, batched, sample_rate=16000, seed=0):
    """|ONNX Runtime - PyTorch| embedding differences over the check inputs.

    Arguments
    ---------
    path : str
        ``.onnx`` file.
    module : WaveformEncoder
        The PyTorch model it was exported from.
    batched : bool
        Whether the graph takes ``wav_lens`` and a dynamic batch.
    sample_rate : int
        Rate of the synthetic test audio.
    seed : int
        Seed of the test audio.

    Returns
    -------
    dict
        ``max_abs_diff``; ``max_rel_diff``: the difference divided by the
        embedding's scale (its largest magnitude, at least 1), worst case;
        ``max_cosine_diff``: the difference of the length-normalised
        embeddings (what cosine scoring sees).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        path, options, providers=["CPUExecutionProvider"]
    )
    generator = torch.Generator().manual_seed(seed)
    out = {"max_abs_diff": 0.0, "max_rel_diff": 0.0, "max_cosine_diff": 0.0}
    for wav, lens in _check_batches(batched, sample_rate, generator):
        feed = {"wav": wav.numpy()}
        if batched:
            feed["wav_lens"] = lens.numpy()
            ref = module(wav, lens)
        else:
            ref = module(wav)
        got = torch.from_numpy(session.run(None, feed)[0])
        if got.shape != ref.shape:
            raise RuntimeError(
                f"{path}: ONNX output shape {tuple(got.shape)} != PyTorch "
                f"{tuple(ref.shape)}"
            )
        diff = (got - ref).abs()
        scale = ref.abs().amax(-1, keepdim=True).clamp_min(1.0)
        unit = torch.nn.functional.normalize
        figures = {
            "max_abs_diff": float(diff.max()),
            "max_rel_diff": float((diff / scale).max()),
            "max_cosine_diff": float(
                (unit(got, dim=-1) - unit(ref, dim=-1)).abs().max()
            ),
        }
        for key, value in figures.items():
            out[key] = max(out[key], value)
    return out


def export_onnx(
    source,
    dest=None,
    savedir=None,
    opset=18,
    tol=1e-4,
    sample_rate=16000,
    update_card=True,
):
    """Exports a published folder's encoder to ONNX and checks it.

    Arguments
    ---------
    source : str
        Published folder (anything ``EncoderClassifier.from_hparams``
        loads).
    dest : str, optional
        Output ``.onnx`` path; default ``<source>/embedding_model.onnx``.
    savedir : str, optional
        Where ``from_hparams`` links the files; default a temporary folder.
    opset : int
        ONNX opset (>= 17: the STFT of the features is an ONNX op there).
    tol : float
        Largest |ONNX Runtime - PyTorch| embedding difference accepted on
        the check inputs (white noise and a speech-like signal of 1, 3 and
        7.3 s; a padded batch when batched), relative to the embedding's
        scale (its largest magnitude, at least 1). PyTorch computes the
        spectrum with an FFT, the graph with a DFT convolution: both float32,
        they differ by up to ~1e-3 dB in the log-mel features of real
        speech, ~1e-5 of the embedding scale.
    sample_rate : int
        Sample rate of the model's input.
    update_card : bool
        Append an "ONNX" section to ``<source>/README.md`` if it exists.

    Returns
    -------
    dict
        ``path``, ``batched`` (dynamic batch + ``wav_lens`` input, else one
        utterance), ``inputs``, ``output``, ``sample_rate``, ``opset`` and
        the differences of ``onnx_differences``.
    """
    _require_onnx()
    from speechbrain.inference.speaker import EncoderClassifier

    if not os.path.isfile(os.path.join(source, "hyperparams.yaml")):
        raise FileNotFoundError(
            f"{source}: not a published folder (no hyperparams.yaml)"
        )
    dest = os.path.abspath(dest or os.path.join(source, ONNX_NAME))
    with tempfile.TemporaryDirectory() as tmp:
        model = EncoderClassifier.from_hparams(
            source=os.path.abspath(source),
            savedir=savedir or os.path.join(tmp, "model"),
            run_opts={"device": "cpu"},
        )
        mods = model.mods
        tmp_path = os.path.join(
            os.path.dirname(dest), f".{os.path.basename(dest)}.tmp"
        )
        example = 0.1 * torch.randn(2, 3 * sample_rate)
        lens = torch.tensor([1.0, 0.8])
        batch = torch.export.Dim("batch", min=1, max=1024)
        time = torch.export.Dim.AUTO
        batched = True
        try:
            module = WaveformEncoder(
                mods.compute_features, mods.mean_var_norm, mods.embedding_model
            ).eval()
            _export(
                module,
                (example, lens),
                tmp_path,
                {"wav": {0: batch, 1: time}, "wav_lens": {0: batch}},
                opset,
            )
        except Exception as err:  # noqa: BLE001 - any export failure
            logger.info(
                "Batched export failed (%s); exporting one utterance at a time",
                str(err).splitlines()[0][:200],
            )
            batched = False
            module = WaveformEncoder(
                mods.compute_features,
                mods.mean_var_norm,
                mods.embedding_model,
                use_lengths=False,
            ).eval()
            _export(module, (example[:1],), tmp_path, {"wav": {1: time}}, opset)
        try:
            with export_friendly():
                diffs = onnx_differences(tmp_path, module, batched, sample_rate)
            if diffs["max_rel_diff"] > tol:
                raise RuntimeError(
                    f"{source}: ONNX embeddings differ from PyTorch by "
                    f"{diffs['max_rel_diff']:.2e} of their scale (> tol "
                    f"{tol}; max abs diff {diffs['max_abs_diff']:.2e})"
                )
            os.replace(tmp_path, dest)
        finally:
            if os.path.exists(tmp_path):
                os.remove(tmp_path)
    inputs = (
        "wav [batch, time] float32, wav_lens [batch] relative lengths"
        if batched
        else "wav [1, time] float32 (one utterance)"
    )
    info = {
        "path": dest,
        "batched": batched,
        "inputs": inputs,
        "output": "embedding [batch, dim]",
        "sample_rate": sample_rate,
        **diffs,
        "opset": opset,
    }
    card = os.path.join(source, "README.md")
    if update_card and os.path.isfile(card):
        _update_card(card, info)
    logger.info(
        "Exported %s (max diff to PyTorch %.2e abs, %.2e of the scale)",
        dest,
        diffs["max_abs_diff"],
        diffs["max_rel_diff"],
    )
    return info


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


def quantize_int8(float_path, dest, signals, batched=True):
    """Static int8 quantization of an exported model (ONNX Runtime).

    The convolutions of the embedding model get int8 weights (per output
    channel) and int8 activations (QDQ format), their ranges calibrated on
    ``signals`` (MinMax); the feature extraction stays float32: the first
    convolution of the graph is the STFT's DFT (weights cos / sin of the
    waveform), whose 8-bit activations would put the quantization noise of
    the loudest sample into the quiet frequency bins of the log-mel
    features. Only ``Conv`` is quantized: the element-wise int8 ops
    (QLinearMul/Add) are slower than float ones on CPU. Measured against
    dynamic quantization (int8 weights, activations quantized at run
    time: ``ConvInteger``) on the C=96 student, 3 s, 1 thread: static
    2.85 ms, dynamic 8.55 ms, float 3.24 ms (``bench/onnx_int8.py``).

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
    """
    import numpy
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model = onnx.load(float_path)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    if not convs:
        raise ValueError(f"{float_path}: no Conv node to quantize")
    stft = convs[0].name  # the DFT of the features (see above)

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
    try:
        quantize_static(
            float_path,
            tmp,
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            op_types_to_quantize=["Conv"],
            nodes_to_exclude=[stft],
        )
        # The quantizer's inferred shapes merge symbolic time dimensions
        # that differ by one frame; ONNX Runtime then fails to plan buffers
        # for some lengths. The shapes are optional: drop them.
        quantized = onnx.load(tmp)
        del quantized.graph.value_info[:]
        onnx.save(quantized, tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
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


def _update_card(card, info):
    with open(card) as f:
        text = f.read()
    text = text.split("\n## ONNX\n")[0].rstrip("\n") + "\n"
    feed = '{"wav": wav}'
    if info["batched"]:
        feed = '{"wav": wav, "wav_lens": np.ones(len(wav), "float32")}'
    text += "\n".join(
        [
            "",
            "## ONNX",
            "",
            f"`{os.path.basename(info['path'])}`: Fbank features, "
            "normalisation and embedding model in one graph (opset "
            f"{info['opset']}), dynamic time axis; inputs: {info['inputs']}; "
            f"output: {info['output']}. Max |ONNX Runtime - PyTorch| on the "
            f"export check: {info['max_abs_diff']:.1e} "
            f"({info['max_rel_diff']:.1e} of the embedding scale; "
            f"{info['max_cosine_diff']:.1e} after length normalisation).",
            "",
            "```python",
            "import numpy as np, onnxruntime as ort",
            f"sess = ort.InferenceSession('{os.path.basename(info['path'])}')",
            f"emb = sess.run(None, {feed})[0]  # wav: float32 "
            f"[batch, samples] at {info['sample_rate']} Hz",
            "```",
            "",
        ]
    )
    atomic_write_text(card, text)


def main(argv=None):
    """``python -m speechbrain_kd.onnx_export DIR [--dest F] [--tol T]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="published folder")
    parser.add_argument("--dest", default=None, help="output .onnx path")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--no-card", action="store_true")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write a static int8 model (embedding_model.int8.onnx)",
    )
    parser.add_argument(
        "--calibration_csv",
        default=None,
        help="manifest of calibration audio (e.g. the training CSV)",
    )
    parser.add_argument("--data_folder", default="", help="of the CSV")
    parser.add_argument("--calibration_crops", type=int, default=200)
    parser.add_argument(
        "--min_cosine",
        type=float,
        default=0.99,
        help="least int8/float embedding cosine accepted on the check",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    info = export_onnx(
        args.source,
        dest=args.dest,
        opset=args.opset,
        tol=args.tol,
        update_card=not args.no_card,
    )
    if args.int8:
        info["int8"] = export_int8(
            info,
            args.calibration_csv,
            args.data_folder,
            args.calibration_crops,
            args.min_cosine,
        )
    print(json.dumps(info, indent=1))
    return 0


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
            _speech_like(48000, 16000, g).numpy()[None] for _ in range(crops)
        ]
        check = [_speech_like(48000, 16000, g).numpy()[None] for _ in range(8)]
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


if __name__ == "__main__":
    sys.exit(main())
