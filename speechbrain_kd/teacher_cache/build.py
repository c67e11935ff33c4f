"""Building a teacher cache, and the ``teacher_cache`` entry of a recipe.

The teacher runs once over every training view (``build_cache``).
``prepare_teacher_cache`` reads the YAML settings (``cache_settings``),
keys the cache, and builds it or checks the one on disk; the views are
read by the training set's crop function
(``speechbrain_kd.data.load_view_crop``).
"""

import logging
import os
import shutil
import time

import torch
from tqdm import tqdm

from speechbrain_kd.teacher_cache.format import (
    FULL_LOGITS_MAX_CLASSES,
    check_meta,
    file_digest,
    teacher_digest,
)
from speechbrain_kd.teacher_cache.store import CacheWriter, TeacherCache

logger = logging.getLogger(__name__)


def build_cache(
    folder,
    meta,
    teacher,
    segments,
    load_view,
    batch_size=32,
    progressbar=True,
):
    """Runs ``teacher`` on every pending view and stores its outputs.

    Arguments
    ---------
    folder : str
        The cache folder (built in ``<folder>.partial``).
    meta : dict
        See ``CacheWriter``.
    teacher : callable
        ``teacher(wavs, lens)`` -> ``{"logits", "embedding"}`` (e.g.
        ``speechbrain_kd.teachers.FrozenTeacher``).
    segments : list of (str, int)
        ``(ID, class index)`` of each training segment, in manifest order.
    load_view : callable
        ``load_view(segment_row, view)`` -> ``[samples]`` waveform.
    batch_size : int
        Views per teacher forward pass.
    progressbar : bool
        Show a tqdm bar (views/s, time left); otherwise the log has the
        start and the end.
    """
    writer = CacheWriter(folder, meta)
    todo = writer.pending()
    total = meta["segments"] * meta["views"]
    start = time.time()
    logger.info(
        "Teacher cache %s: %d of %d views to compute",
        folder,
        len(todo),
        total,
    )
    device = next(iter(teacher.parameters())).device
    bar = tqdm(
        total=len(todo),
        unit="view",
        desc="teacher cache",
        disable=not progressbar,
    )
    for first in range(0, len(todo), batch_size):
        chunk = todo[first : first + batch_size]
        wavs = [load_view(row, view) for row, view in chunk]
        longest = max(w.shape[0] for w in wavs)
        batch = torch.zeros(len(wavs), longest)
        for i, w in enumerate(wavs):
            batch[i, : w.shape[0]] = w
        lens = torch.tensor([w.shape[0] / longest for w in wavs])
        out = teacher(batch.to(device), lens.to(device))
        targets = torch.tensor([segments[row][1] for row, _ in chunk])
        writer.write(
            [row for row, _ in chunk],
            [view for _, view in chunk],
            out["logits"],
            out["embedding"],
            targets,
        )
        bar.update(len(chunk))
    bar.close()
    writer.finish()
    seconds = time.time() - start
    logger.info(
        "Teacher cache %s complete: %d views in %.1f s (%.1f views/s), %.1f MB",
        folder,
        len(todo),
        seconds,
        len(todo) / max(seconds, 1e-9),
        folder_size(folder) / 1e6,
    )


def folder_size(folder):
    """Bytes of the files in ``folder``."""
    return sum(
        os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
    )


def cache_settings(hparams):
    """The ``teacher_cache`` YAML entry, checked, with its defaults.

    Keys: ``enabled`` (False: the live teacher), ``folder`` (default
    ``<save_folder>/teacher_cache``), ``batch_size`` (32), ``topk``
    (None: full logits up to ``FULL_LOGITS_MAX_CLASSES`` classes), ``T``
    (the distillation temperature the top-k tail is summarised at; needed
    with ``topk``), ``dtype`` (float16, or float32 at twice the size: the
    teacher's outputs exactly), ``rebuild`` (False: a cache built for
    other settings is an error). The views are ``train_views``.
    """
    spec = dict(hparams.get("teacher_cache") or {})
    keys = {"enabled", "folder", "batch_size", "topk", "T", "dtype", "rebuild"}
    unknown = set(spec) - keys
    if unknown:
        raise ValueError(
            f"teacher_cache has unknown keys {sorted(unknown)} (expected "
            f"some of {sorted(keys)})"
        )
    if not hparams.get("train_views"):
        raise ValueError(
            "teacher_cache needs train_views (the number of stored views "
            "per training segment), e.g. --train_views=8"
        )
    if hparams.get("teacher_taps"):
        raise ValueError(
            "teacher_cache stores logits and embeddings only: "
            f"teacher_taps ({sorted(hparams['teacher_taps'])}) need the live "
            "teacher; remove teacher_cache or the taps"
        )
    if hparams.get("wav_augment") is not None:
        raise ValueError(
            "teacher_cache: wav_augment (batch-level augmentation from the "
            "global random state) cannot be replayed per view; set "
            "wav_augment to null, or train without the cache"
        )
    spec.setdefault(
        "folder", os.path.join(hparams["save_folder"], "teacher_cache")
    )
    spec.setdefault("batch_size", 32)
    spec.setdefault("topk", None)
    spec.setdefault("dtype", "float16")
    spec.setdefault("rebuild", False)
    if spec["dtype"] not in ("float16", "float32"):
        raise ValueError(
            f"teacher_cache: dtype must be float16 or float32, got "
            f"{spec['dtype']!r}"
        )
    if spec["topk"] and not spec.get("T"):
        raise ValueError(
            "teacher_cache: topk needs T, the distillation temperature at "
            "which the tail of the logits is summarised"
        )
    return spec


def prepare_teacher_cache(hparams, teacher, label_encoder, progressbar=True):
    """Opens the run's teacher cache, building it first if needed.

    The main process builds (or resumes) it; every process then opens it.

    Arguments
    ---------
    hparams : dict
        The loaded recipe YAML (``teacher_cache``, ``train_views``, the
        data settings of ``speechbrain_kd.data.dataio_prep``).
    teacher : speechbrain_kd.teachers.FrozenTeacher
        The teacher (run only while building).
    label_encoder : speechbrain.dataio.encoder.CategoricalEncoder
        The classes (the teacher's).
    progressbar : bool
        Show the build's progress bar.

    Returns
    -------
    TeacherCache
    """
    import speechbrain as sb

    from speechbrain_kd.data import (
        audio_options,
        load_view_crop,
        read_csv,
        resolve_path,
        views_seed,
    )

    spec = cache_settings(hparams)
    rows = read_csv(hparams["train_csv"])
    views = int(hparams["train_views"])
    classes = teacher.num_classes
    topk = spec["topk"]
    if topk is None and classes > FULL_LOGITS_MAX_CLASSES:
        topk = 255
    if topk and topk >= classes:
        topk = None
    sample_rate = hparams["sample_rate"]
    crop = int(hparams["sentence_len"] * sample_rate)
    seed = views_seed(hparams)
    audio_opts = audio_options(hparams)
    data_folder = hparams["data_folder"]
    source = os.path.join(hparams["save_folder"], "teacher")
    if os.path.isdir(str(hparams["teacher_source"])):
        source = str(hparams["teacher_source"])
    meta = {
        "key": {
            "teacher": teacher_digest(source),
            "teacher_logit_scale": teacher.logit_scale,
            "manifest": file_digest([hparams["train_csv"]]),
            "views_seed": seed,
            "views": views,
            "crop_samples": crop,
            "sample_rate": sample_rate,
            "resample": audio_opts["resample"],
            "downmix": audio_opts["downmix"],
        },
        "segments": len(rows),
        "views": views,
        "classes": classes,
        "embedding_dim": None,
        "topk": topk,
        "T": float(spec["T"]) if topk else None,
        "dtype": spec["dtype"],
    }

    def load_view(row, view):
        entry = rows[row]
        return load_view_crop(
            resolve_path(data_folder, entry["wav"]),
            int(entry["start"]),
            int(entry["stop"]),
            crop,
            seed,
            view,
            entry["ID"],
            **audio_opts,
        )

    folder = spec["folder"]
    if sb.utils.distributed.if_main_process():
        probe = teacher(load_view(0, 0).unsqueeze(0).to(_device(teacher)))
        meta["embedding_dim"] = int(probe["embedding"].shape[-1])
        if os.path.exists(os.path.join(folder, "meta.json")):
            if spec["rebuild"]:
                try:
                    check_meta(folder, meta)
                except ValueError:
                    logger.warning("Rebuilding the teacher cache %s", folder)
                    shutil.rmtree(folder)
            else:
                check_meta(folder, meta)
        if not os.path.exists(folder):
            segments = [
                (r["ID"], label_encoder.encode_label(r["spk_id"])) for r in rows
            ]
            build_cache(
                folder,
                meta,
                teacher,
                segments,
                load_view,
                batch_size=spec["batch_size"],
                progressbar=progressbar,
            )
    sb.utils.distributed.ddp_barrier()
    cache = TeacherCache(folder)
    logger.info(
        "Teacher cache %s: %d segments x %d views, %s, %.1f MB",
        folder,
        len(rows),
        views,
        f"top-{topk} logits + tail" if topk else "full float16 logits",
        folder_size(folder) / 1e6,
    )
    return cache


def _device(module):
    return next(iter(module.parameters())).device
