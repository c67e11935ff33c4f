"""ONNX export of a published speaker model (waveform in, embedding out).

::

    python -m speechbrain_kd.onnx results/mini/trkd/1986/pretrained

writes ``embedding_model.onnx`` (Fbank features, normalisation and
embedding model in one graph) into the published folder, checked in ONNX
Runtime against PyTorch, and an "ONNX" section into its model card;
``--int8`` also writes a static int8 model (``embedding_model.int8.onnx``).

Modules: ``export`` (the graph, ``export_onnx``, the model card section),
``fold`` (exact BatchNorm folds of ECAPA-TDNN, applied before export),
``check`` (ONNX Runtime vs PyTorch on synthetic test audio), ``int8``
(static int8 quantization, calibrated on training crops and checked
against the float model), ``__main__`` (the command line). Every public
name is importable from ``speechbrain_kd.onnx``.

Requires ``onnx``, ``onnxscript`` and ``onnxruntime``
(``pip install speechbrain_kd[onnx]``). Inside this package ``import
onnx`` is an absolute import: it is the ``onnx`` library, never this
package.
"""

from speechbrain_kd.onnx.check import (
    CHECK_SECONDS,
    onnx_differences,
    speech_like,
)
from speechbrain_kd.onnx.export import (
    ONNX_NAME,
    WaveformEncoder,
    export_onnx,
    fast_features,
)
from speechbrain_kd.onnx.fold import fold_ecapa
from speechbrain_kd.onnx.int8 import (
    INT8_NAME,
    calibration_signals,
    export_int8,
    int8_differences,
    quantize_int8,
    waveform_convs,
)

__all__ = [
    "CHECK_SECONDS",
    "INT8_NAME",
    "ONNX_NAME",
    "WaveformEncoder",
    "calibration_signals",
    "export_int8",
    "export_onnx",
    "fast_features",
    "fold_ecapa",
    "int8_differences",
    "onnx_differences",
    "quantize_int8",
    "speech_like",
    "waveform_convs",
]
