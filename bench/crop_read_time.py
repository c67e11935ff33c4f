#!/usr/bin/env python3
"""Time of one training crop: reading the whole file vs only the crop.

VoxCeleb manifests (``random_chunk: True``) list a file once per 3-s chunk
and train on a random 3-s crop of the whole file. Two ways to get that
crop: load the whole file (``load_audio``) and crop it (``random_crop``),
or read only the crop (``load_random_crop``, the one training uses). Both
are timed alternately in one process on a 60-s 16-kHz WAV (written to a
temporary folder), with the crops of the same generators (the two give
identical tensors, checked here too).

    python bench/crop_read_time.py [--seconds 60] [--crop 3] [--reps 200]
"""

import argparse
import os
import statistics
import tempfile
import time

import numpy
import soundfile
import torch

from speechbrain_kd.data import (
    crop_generator,
    load_audio,
    load_random_crop,
    random_crop,
)

SAMPLE_RATE = 16000


def whole_file(path, frames, crop, generator):
    """Whole-file crop: decode [0, frames), then crop."""
    sig = load_audio(path, 0, frames, SAMPLE_RATE)
    return random_crop(sig, crop, generator=generator)


def crop_only(path, frames, crop, generator):
    """Crop-only read: decode only the crop (``load_random_crop``)."""
    return load_random_crop(path, 0, frames, crop, generator, SAMPLE_RATE)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--crop", type=float, default=3.0)
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    frames = int(args.seconds * SAMPLE_RATE)
    crop = int(args.crop * SAMPLE_RATE)
    rng = numpy.random.default_rng(0)
    times = {"whole": [], "crop": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "long.wav")
        audio = 0.1 * rng.standard_normal(frames)
        soundfile.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
        for i in range(args.reps + 5):  # 5 warm-up reps
            outputs = {}
            for name, fn in (("whole", whole_file), ("crop", crop_only)):
                generator = crop_generator(0, i, "long")
                t0 = time.perf_counter()
                outputs[name] = fn(path, frames, crop, generator)
                if i >= 5:
                    times[name].append(time.perf_counter() - t0)
            if not torch.equal(outputs["whole"], outputs["crop"]):
                raise AssertionError(f"rep {i}: the two crops differ")
    mean = {k: statistics.fmean(v) for k, v in times.items()}
    print(
        f"{args.crop:g}-s crop of a {args.seconds:g}-s 16-kHz WAV, "
        f"mean of {args.reps} reps (crops identical):"
    )
    for name, what in (
        ("whole", "load whole file + random_crop"),
        ("crop", "read only the crop"),
    ):
        print(f"  {name:6s} ({what}): {mean[name] * 1e3:.3f} ms")
    print(f"  ratio whole/crop: {mean['whole'] / mean['crop']:.1f}x")


if __name__ == "__main__":
    main()
