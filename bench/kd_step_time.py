#!/usr/bin/env python3
"""KD train-step time over plain student step time, same batch (CPU or GPU).

Every step is ``KDBrain.fit_batch`` of the MiniSpeakers recipe (forward,
loss, backward, Adam step): the plain one from ``nokd.yaml`` (no teacher),
the live distillation one from a method YAML (default ``trkd.yaml``) with
the frozen teacher in inference mode, and the cached one: the same method
reading the teacher's outputs from a teacher cache
(``speechbrain_kd.teacher_cache``, built here for the batch's views) with
no teacher forward pass. The Brains are timed in turn on the same batch in
one process, so the ratios are robust to machine load; the median of
``--steps`` timed steps is reported after ``--warmup`` steps. Targets: live
ratio <= 1.3, cached ratio <= 1.05. Also printed: the cache build rate
(views/s) and its disk size per million views (mini corpus: float16
logits; VoxCeleb2, computed: 5,994 classes, top-255). Without
``--teacher``: a random ``teacher_ecapa.yaml`` (the trained one's cost).

    python bench/kd_step_time.py [--teacher PUBLISHED_DIR] [--method trkd]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from speechbrain_kd.teacher_cache import bytes_per_view

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "MiniSpeakers"


def load(name, overrides):
    from hyperpyyaml import load_hyperpyyaml

    with open(RECIPE / "hparams" / f"{name}.yaml") as f:
        return load_hyperpyyaml(f, overrides)


def publish_random(tmp, name, num_classes):
    """A random model of recipe YAML ``name``, published like a trained one
    (speed does not depend on the weights)."""
    from speechbrain.dataio.encoder import CategoricalEncoder

    from speechbrain_kd.export import export_pretrained

    overrides = {
        "data_folder": "unused",
        "output_folder": os.path.join(tmp, name),
        "out_n_neurons": num_classes,
    }
    hp = load(name, overrides)
    encoder = CategoricalEncoder()
    encoder.update_from_iterable([f"spk{i:04d}" for i in range(num_classes)])
    dest = os.path.join(tmp, name, "pretrained")
    export_pretrained(
        dest,
        str(RECIPE / "hparams" / f"{name}.yaml"),
        overrides,
        hp["modules"],
        encoder,
    )
    return dest


def make_batch(batch_size, seconds, num_classes, sample_rate=16000):
    from speechbrain.dataio.batch import PaddedBatch

    g = torch.Generator().manual_seed(0)
    n = int(seconds * sample_rate)
    return PaddedBatch(
        [
            {
                "id": f"utt{i}",
                "sig": 0.1 * torch.randn(n, generator=g),
                "spk_id_encoded": torch.tensor([i % num_classes]),
                "cache_index": i,
                "view": 0,
            }
            for i in range(batch_size)
        ]
    )


def cache_for(batch, teacher, tmp, num_classes):
    """A teacher cache holding view 0 of every example of ``batch``, and the
    seconds its build took (teacher forward + writing)."""
    from speechbrain_kd.teacher_cache import (
        TeacherCache,
        build_cache,
    )

    wavs, _ = batch.sig
    meta = dict(
        key={"bench": True},
        segments=len(batch.id),
        views=1,
        classes=num_classes,
        embedding_dim=int(
            teacher(wavs[:1].to(next(teacher.parameters()).device))[
                "embedding"
            ].shape[-1]
        ),
        topk=None,
        T=None,
    )
    folder = os.path.join(tmp, "teacher_cache")
    segments = [(i, int(y)) for i, y in enumerate(batch.spk_id_encoded.data)]
    start = time.perf_counter()
    build_cache(
        folder,
        meta,
        teacher,
        segments,
        lambda row, view: wavs[row],
        batch_size=len(batch.id),
    )
    return TeacherCache(folder), time.perf_counter() - start


def timed(call, cuda):
    """Seconds ``call()`` takes (CUDA: synchronised on both sides)."""
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    call()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def brain_for(name, tmp, run_opts, teacher_dir, extra):
    import speechbrain as sb

    from speechbrain_kd.teachers import load_teacher
    from speechbrain_kd.training import make_brain

    overrides = {
        "data_folder": "unused",
        "output_folder": os.path.join(tmp, name),
        "teacher_source": teacher_dir,
        **extra,
    }
    hp = load(name, overrides)
    teacher = load_teacher(hp, run_opts) if hp.get("distill_terms") else None
    brain = make_brain(hp, run_opts, teacher=teacher)
    brain.on_fit_start()
    brain.on_stage_start(sb.Stage.TRAIN, epoch=1)
    return brain


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=None, help="published teacher")
    parser.add_argument("--method", default="trkd", help="KD YAML name")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--json", default=None, help="write figures here")
    args = parser.parse_args(argv)

    num_classes = 269
    run_opts = {"device": args.device, "precision": args.precision}
    with tempfile.TemporaryDirectory() as tmp:
        teacher_dir = args.teacher or publish_random(
            tmp, "teacher_ecapa", num_classes
        )
        extra = {"out_n_neurons": num_classes}
        plain = brain_for("nokd", tmp, run_opts, teacher_dir, extra)
        kd = brain_for(args.method, tmp, run_opts, teacher_dir, extra)
        cached = brain_for(args.method, tmp, run_opts, teacher_dir, extra)
        batch = make_batch(args.batch_size, args.seconds, num_classes)
        cache, build_s = cache_for(batch, kd.teacher, tmp, num_classes)
        cached.use_teacher_cache(cache)
        emb_dim = cache.meta["embedding_dim"]
        wavs, lens = batch.to(kd.device).sig
        calls = {  # in turn on the same batch; the teacher's forward alone
            "plain": lambda: plain.fit_batch(batch),
            "kd": lambda: kd.fit_batch(batch),
            "cached": lambda: cached.fit_batch(batch),
            "teacher": lambda: kd.teacher(wavs, lens),
        }
        times = {name: [] for name in calls}
        for step in range(args.warmup + args.steps):
            for name, call in calls.items():
                elapsed = timed(call, args.device.startswith("cuda"))
                if step >= args.warmup:
                    times[name].append(elapsed)
    plain_s, kd_s, cached_s, teacher_s = (
        statistics.median(times[k]) for k in calls
    )
    rate = args.batch_size / build_s
    mini = bytes_per_view(num_classes, emb_dim)
    vox = bytes_per_view(5994, emb_dim, topk=255)
    figures = {
        "method": args.method,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "batch": f"{args.batch_size} x {args.seconds} s",
        "plain_step_s": round(plain_s, 4),
        "kd_step_s": round(kd_s, 4),
        "teacher_forward_s": round(teacher_s, 4),
        "cached_step_s": round(cached_s, 4),
        "ratio": round(kd_s / plain_s, 3),
        "target": 1.3,
        "met": kd_s / plain_s <= 1.3,
        "cached_ratio": round(cached_s / plain_s, 3),
        "cached_target": 1.05,
        "cached_met": cached_s / plain_s <= 1.05,
        "cache_build_views_per_s": round(rate, 1),
        "cache_bytes_per_view_mini": mini,
        "cache_gb_per_million_views_mini": round(mini * 1e6 / 1e9, 3),
        "cache_gb_voxceleb2_8_views": round(vox * 1.09e6 * 8 / 1e9, 1),
        "teacher": "random teacher_ecapa.yaml"
        if args.teacher is None
        else "published folder given with --teacher",
    }
    for key, value in figures.items():
        print(f"{key:>18}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
