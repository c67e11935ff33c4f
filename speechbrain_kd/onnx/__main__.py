"""Command line: ``python -m speechbrain_kd.onnx DIR [options]``."""

import argparse
import json
import logging
import sys

from speechbrain_kd.onnx.export import export_onnx
from speechbrain_kd.onnx.int8 import export_int8

DESCRIPTION = (
    "ONNX export of a published speaker model (waveform in, embedding out)."
)


def main(argv=None):
    """``python -m speechbrain_kd.onnx DIR [--dest F] [--tol T] [--int8]``."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_kd.onnx", description=DESCRIPTION
    )
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


if __name__ == "__main__":
    sys.exit(main())
