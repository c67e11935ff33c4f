#!/usr/bin/env python3
"""Front-end candidates: time of the 80-band log-mel features of 3 s of
16 kHz audio, 1 thread, median of ``--runs`` calls, and their largest
difference to SpeechBrain's ``Fbank`` (dB).

- ``onnx_stft``: SpeechBrain's Fbank exported as is (``torch.stft`` ->
  ONNX ``STFT`` / DFT operator);
- ``onnx_conv``: the DFT as a strided convolution (``export_friendly``'s
  STFT patch, ``fast_front_end=False``);
- ``onnx_direct``: the direct DFT as one matmul, the window folded into
  an ``[n_fft, n_fft]`` matrix (cosines of the 201 bins, sines of the
  199 non-zero ones), power + mel as one matmul;
- ``onnx_matmul``: ``speechbrain_kd.lobes.fbank.MatmulFbank`` (the DFT in
  two matmul stages, 20 x 20, power + mel as one matmul);
- ``numpy_rfft``: the features outside any graph (numpy rfft, mel matmul,
  log), what a ``features`` input would ask the caller to compute;
- ``torch_fbank`` / ``torch_matmul``: the two modules in PyTorch.

    python bench/frontend.py [--seconds 3] [--runs 200] [--json OUT]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy
import torch

from speechbrain_kd.lobes.fbank import MatmulFbank, mel_matrix


def median_ms(runners, runs, warmup=10):
    """Median ms per call of each runner, the runners called in turn (so
    that load on the machine hits them alike)."""
    times = {k: [] for k in runners}
    for i in range(warmup + runs):
        for k, fn in runners.items():
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                times[k].append(time.perf_counter() - t0)
    return {k: round(1000 * statistics.median(t), 3) for k, t in times.items()}


def export(module, wav, path):
    torch.onnx.export(
        module,
        (wav,),
        path,
        dynamo=True,
        opset_version=18,
        dynamic_shapes={"wav": {0: torch.export.Dim.AUTO, 1: "time"}},
        input_names=["wav"],
        output_names=["feats"],
        external_data=False,
        verbose=False,
    )


class DirectDFT(torch.nn.Module):
    """``MatmulFbank``'s frames, then the direct DFT as one matmul."""

    def __init__(self, fbank):
        super().__init__()
        self.fbank = fbank
        n = torch.arange(400, dtype=torch.float64)
        angle = 2 * torch.pi * (torch.outer(n, n[:201]) % 400) / 400
        dft = torch.cat([torch.cos(angle), -torch.sin(angle[:, 1:200])], 1)
        window = torch.hamming_window(400, dtype=torch.float64)
        self.register_buffer("dft", (dft * window[:, None]).float())
        mel = mel_matrix(80, 400, 16000, 0, 8000)
        self.register_buffer("mel", torch.cat([mel, mel[1:200]]))

    def forward(self, wav):
        spec = self.fbank.frames(wav) @ self.dft
        db = 10 * torch.log10(torch.clamp((spec * spec) @ self.mel, 1e-10))
        return torch.max(db, db.amax(dim=(1, 2), keepdim=True) - 80)


def numpy_features():
    """Log-mel features with numpy's rfft, same conventions as Fbank."""
    window = torch.hamming_window(400).numpy()
    mel = mel_matrix(80, 400, 16000, 0, 8000).numpy()

    def run(wav):
        pad = numpy.pad(wav, ((0, 0), (200, 200)))
        n = wav.shape[1] // 160 + 1
        idx = 160 * numpy.arange(n)[:, None] + numpy.arange(400)
        spec = numpy.fft.rfft(pad[:, idx] * window, axis=-1)
        power = spec.real**2 + spec.imag**2
        db = 10 * numpy.log10(numpy.maximum(power @ mel, 1e-10))
        return numpy.maximum(db, db.max(axis=(1, 2), keepdims=True) - 80)

    return run


def main(argv=None):
    import onnxruntime as ort
    from speechbrain.lobes.features import Fbank

    from speechbrain_kd.sb_private.export_patches import export_friendly

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    wav = 0.05 * torch.randn(1, int(args.seconds * 16000), generator=g)
    sb = Fbank(n_mels=80).eval()
    ours = MatmulFbank.from_fbank(sb).eval()
    with torch.no_grad():
        ref = sb(wav).numpy()
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    result = {"seconds": args.seconds, "runs": args.runs, "ms": {}}
    diffs = {}
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {}
        try:
            export(sb, wav, os.path.join(tmp, "stft.onnx"))
            graphs["onnx_stft"] = "stft.onnx"
        except Exception as err:  # noqa: BLE001 - report and go on
            result["onnx_stft_error"] = str(err).splitlines()[0][:300]
        with export_friendly():
            export(sb, wav, os.path.join(tmp, "conv.onnx"))
        graphs["onnx_conv"] = "conv.onnx"
        export(DirectDFT(ours), wav, os.path.join(tmp, "direct.onnx"))
        graphs["onnx_direct"] = "direct.onnx"
        export(ours, wav, os.path.join(tmp, "matmul.onnx"))
        graphs["onnx_matmul"] = "matmul.onnx"
        x = wav.numpy()
        runners = {}
        for name, file in graphs.items():
            sess = ort.InferenceSession(
                os.path.join(tmp, file), options, ["CPUExecutionProvider"]
            )
            diffs[name] = float(abs(sess.run(None, {"wav": x})[0] - ref).max())
            runners[name] = lambda s=sess: s.run(None, {"wav": x})
        run_np = numpy_features()
        diffs["numpy_rfft"] = float(abs(run_np(x) - ref).max())
        runners["numpy_rfft"] = lambda: run_np(x)
        with torch.no_grad():
            diffs["torch_matmul"] = float((ours(wav) - sb(wav)).abs().max())
            runners["torch_fbank"] = lambda: sb(wav)
            runners["torch_matmul"] = lambda: ours(wav)
            result["ms"] = median_ms(runners, args.runs)
    result["max_abs_diff_db"] = diffs
    for name, ms in result["ms"].items():
        d = diffs.get(name)
        extra = f", max |diff| to Fbank {d:.1e} dB" if d is not None else ""
        print(f"{name:14s} {ms:8.3f} ms / {args.seconds:g} s{extra}")
    if "onnx_stft_error" in result:
        print("onnx_stft export failed:", result["onnx_stft_error"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
