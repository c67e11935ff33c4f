"""The ``speechbrain_kd.onnx`` package under the path ``onnx_export``.

``python -m speechbrain_kd.onnx_export DIR [options]`` runs the command
line of ``python -m speechbrain_kd.onnx``. Setting one of these names on
this module (e.g. ``monkeypatch.setattr``) sets it wherever
``speechbrain_kd.onnx`` binds it, so the code that uses it sees it.
"""

import sys
import types

from speechbrain_kd.onnx import check, export, int8
from speechbrain_kd.onnx.__main__ import main
from speechbrain_kd.onnx.check import CHECK_SECONDS, onnx_differences
from speechbrain_kd.onnx.export import ONNX_NAME, WaveformEncoder, export_onnx
from speechbrain_kd.onnx.int8 import (
    INT8_NAME,
    calibration_signals,
    export_int8,
    int8_differences,
    quantize_int8,
)

# private names of this path, still reachable here (tests patch them)
_check_batches = check._check_batches
_export = export._export
_require_onnx = export._require_onnx
_speech_like = check.speech_like
_update_card = export._update_card

__all__ = [
    "CHECK_SECONDS",
    "INT8_NAME",
    "ONNX_NAME",
    "WaveformEncoder",
    "calibration_signals",
    "export_int8",
    "export_onnx",
    "int8_differences",
    "main",
    "onnx_differences",
    "quantize_int8",
]
_FORWARDED = [
    *__all__,
    "_check_batches",
    "_export",
    "_require_onnx",
    "_speech_like",
    "_update_card",
]
_BINDINGS = {
    name: [
        (module, attr)
        for module in (check, export, int8)
        for attr, value in vars(module).items()
        if value is globals()[name] and not attr.startswith("__")
    ]
    for name in _FORWARDED
}


class _Forwarding(types.ModuleType):
    """A module whose attributes, when set, are also set where the names of
    ``_BINDINGS`` are bound in ``speechbrain_kd.onnx``."""

    def __setattr__(self, name, value):
        for module, attr in _BINDINGS.get(name, ()):
            setattr(module, attr, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Forwarding

if __name__ == "__main__":
    sys.exit(main())
