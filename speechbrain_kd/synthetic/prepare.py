"""Preparation of the synthetic corpus: audio, manifests and trial list.

``prepare_synthetic`` renders every utterance (in worker processes, each
with its synthesis server), writes the FLAC files, the manifests and the
trial list atomically and ``synthetic_opts.json`` last, and reuses a
corpus already prepared with the same settings without loading espeak.
"""

import json
import logging
import multiprocessing
import os
import tempfile
import time
import warnings

import numpy as np
import soundfile

from speechbrain_kd.fileio import atomic_write_text, default_mode
from speechbrain_kd.synthetic.espeak import get_engine
from speechbrain_kd.synthetic.server import close_server, get_server
from speechbrain_kd.synthetic.speakers import (
    SAMPLE_RATE,
    plan_utterances,
    render_utterance,
    sample_speakers,
)

logger = logging.getLogger(__name__)

OPTS_FILE = "synthetic_opts.json"
SPEAKERS_FILE = "speakers.json"
# Bump when a change of this module changes the audio or the manifests, so
# that corpora prepared by an older version are regenerated, not reused.
GENERATOR_VERSION = 1


def _write_flac(path, audio):
    """Writes 16-bit FLAC through a temporary file and a rename."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=".flac")
    os.close(fd)
    try:
        soundfile.write(tmp, pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        os.chmod(tmp, default_mode())  # as open(), not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return len(pcm)


def _generate_one(task):
    """Renders and writes one utterance; returns ``(path, num_samples)``."""
    path, speaker, utt = task
    audio = render_utterance(get_server(), speaker, utt)
    return path, _write_flac(path, audio)


def _init_worker():
    """Pool initializer: starts the worker's synthesis server."""
    get_server()


def _settings(**kwargs):
    return dict(
        generator_version=GENERATOR_VERSION, sample_rate=SAMPLE_RATE, **kwargs
    )


def _output_paths(save_folder):
    return {
        "train_csv": os.path.join(save_folder, "train.csv"),
        "valid_csv": os.path.join(save_folder, "valid.csv"),
        "test_csv": os.path.join(save_folder, "test.csv"),
        "trials": os.path.join(save_folder, "veri_test2.txt"),
    }


def skip(data_folder, save_folder, settings):
    """Whether a corpus with these settings is already fully prepared.

    True when ``synthetic_opts.json`` (written last) holds the same
    settings and the manifests, the trial list and every audio file they
    list exist.
    """
    from speechbrain_kd.data import read_csv

    opts_path = os.path.join(save_folder, OPTS_FILE)
    try:
        with open(opts_path) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return False
    if saved.get("settings") != settings:
        return False
    paths = _output_paths(save_folder)
    if not all(os.path.isfile(p) for p in paths.values()):
        return False
    try:
        for key in ("train_csv", "valid_csv", "test_csv"):
            for row in read_csv(paths[key]):
                wav = os.path.join(data_folder, row["wav"])
                if not os.path.isfile(wav):
                    return False
    except (OSError, ValueError):
        return False
    return True


def _check_sizes(
    seed,
    num_train_speakers,
    num_test_speakers,
    utts_per_speaker,
    valid_utts_per_speaker,
    num_trials,
):
    if seed < 0:
        raise ValueError(f"seed={seed} must be >= 0")
    if num_train_speakers < 1:
        raise ValueError(f"num_train_speakers={num_train_speakers} < 1")
    if num_test_speakers < 2:
        raise ValueError(f"num_test_speakers={num_test_speakers} < 2")
    if utts_per_speaker < 2:
        raise ValueError(f"utts_per_speaker={utts_per_speaker} < 2")
    if not 1 <= valid_utts_per_speaker < utts_per_speaker:
        raise ValueError(
            f"valid_utts_per_speaker={valid_utts_per_speaker} must be in "
            f"[1, utts_per_speaker={utts_per_speaker})"
        )
    n = num_test_speakers * utts_per_speaker
    max_target = (
        num_test_speakers * utts_per_speaker * (utts_per_speaker - 1) // 2
    )
    max_nontarget = n * (n - 1) // 2 - max_target
    if not 2 <= num_trials <= 2 * min(max_target, max_nontarget):
        raise ValueError(
            f"num_trials={num_trials}: {num_test_speakers} test speakers with "
            f"{utts_per_speaker} utterances allow between 2 and "
            f"{2 * min(max_target, max_nontarget)} balanced trials"
        )


def prepare_synthetic(
    data_folder,
    save_folder=None,
    num_train_speakers=200,
    num_test_speakers=40,
    utts_per_speaker=12,
    valid_utts_per_speaker=2,
    num_trials=4000,
    seed=1234,
    num_workers=2,
):
    """Generates (or reuses) the synthetic speaker-verification corpus.

    Audio goes to ``<data_folder>/wav/<spk_id>/<utt_id>.flac`` (16 kHz mono
    16-bit FLAC) and the manifests to ``save_folder``: ``train.csv`` and
    ``valid.csv`` (the training speakers, ``valid_utts_per_speaker``
    held-out utterances each in ``valid.csv``), ``test.csv`` (the test
    speakers, disjoint from the training ones) and ``veri_test2.txt``
    (balanced VoxCeleb-format trials among the test utterances). The
    manifests store ``wav`` relative to ``data_folder`` and IDs such as
    ``wav/spk0007/utt003``. ``speakers.json`` in ``data_folder`` records
    every speaker's parameters.

    The output is byte-identical for the same seed and sizes, whatever
    ``num_workers``. Every file is written atomically and
    ``synthetic_opts.json`` last; a corpus already prepared with the same
    settings is reused without loading espeak.

    Arguments
    ---------
    data_folder : str
        Corpus root (the recipe's ``data_folder``).
    save_folder : str, optional
        Folder of the manifests (default: ``data_folder``).
    num_train_speakers : int
        Number of training speakers.
    num_test_speakers : int
        Number of test speakers.
    utts_per_speaker : int
        Utterances per speaker (training speakers: including the
        validation ones).
    valid_utts_per_speaker : int
        Utterances per training speaker held out in ``valid.csv``.
    num_trials : int
        Number of verification trials (half target, half non-target).
    seed : int
        Seed of everything random.
    num_workers : int
        Worker processes for the synthesis (1: in this process).

    Returns
    -------
    dict
        Paths ``{"train_csv", "valid_csv", "test_csv", "trials"}``.

    Raises
    ------
    RuntimeError
        If libespeak-ng cannot be loaded (``pip install espeakng-loader``).
    """
    from speechbrain_kd.data import make_trials, write_csv, write_trials

    data_folder = os.path.abspath(data_folder)
    save_folder = os.path.abspath(save_folder or data_folder)
    _check_sizes(
        seed,
        num_train_speakers,
        num_test_speakers,
        utts_per_speaker,
        valid_utts_per_speaker,
        num_trials,
    )
    settings = _settings(
        num_train_speakers=int(num_train_speakers),
        num_test_speakers=int(num_test_speakers),
        utts_per_speaker=int(utts_per_speaker),
        valid_utts_per_speaker=int(valid_utts_per_speaker),
        num_trials=int(num_trials),
        seed=int(seed),
    )
    paths = _output_paths(save_folder)
    if skip(data_folder, save_folder, settings):
        logger.info(
            f"Synthetic corpus already prepared in {data_folder} (manifests "
            f"in {save_folder}), skipping generation"
        )
        return paths

    engine = get_engine()  # fails early and clearly without espeak
    engine.check_voices()
    os.makedirs(save_folder, exist_ok=True)
    opts_path = os.path.join(save_folder, OPTS_FILE)
    if os.path.exists(opts_path):
        os.remove(opts_path)  # the files below are about to change

    start_time = time.time()
    num_speakers = num_train_speakers + num_test_speakers
    speakers = sample_speakers(num_speakers, seed)
    num_valid_from = utts_per_speaker - valid_utts_per_speaker
    tasks, rows = [], []
    for index, spk in enumerate(speakers):
        utts = plan_utterances(spk, index, utts_per_speaker, seed)
        for u, utt in enumerate(utts):
            utt_id = f"wav/{spk['spk_id']}/{utt['utt_id']}"
            path = os.path.join(data_folder, *utt_id.split("/")) + ".flac"
            if index >= num_train_speakers:
                split = "test"
            else:
                split = "train" if u < num_valid_from else "valid"
            tasks.append((path, spk, utt))
            rows.append(
                dict(
                    split=split,
                    ID=utt_id,
                    wav=utt_id + ".flac",
                    start=0,
                    spk_id=spk["spk_id"],
                )
            )
    logger.info(
        f"Synthesising {len(tasks)} utterances of {num_speakers} speakers "
        f"with espeak-ng {engine.version} ({num_workers} workers)"
    )
    num_samples = dict(_run_tasks(tasks, num_workers))

    manifests = {"train": [], "valid": [], "test": []}
    for row, (path, _, _) in zip(rows, tasks):
        row["stop"] = num_samples[path]
        row["duration"] = num_samples[path] / SAMPLE_RATE
        manifests[row.pop("split")].append(row)

    speakers_text = json.dumps(
        [
            dict(spk, split="train" if i < num_train_speakers else "test")
            for i, spk in enumerate(speakers)
        ],
        indent=1,
    )
    _atomic_write(os.path.join(data_folder, SPEAKERS_FILE), speakers_text)
    for split in ("train", "valid", "test"):
        write_csv(manifests[split], paths[f"{split}_csv"])
    trials = make_trials(manifests["test"], num_trials, seed)
    write_trials(trials, paths["trials"])
    elapsed = time.time() - start_time
    hours = sum(num_samples.values()) / SAMPLE_RATE / 3600
    info = dict(
        espeak_version=engine.version,
        num_utterances=len(tasks),
        hours=round(hours, 3),
        generation_seconds=round(elapsed, 1),
    )
    _atomic_write(
        opts_path, json.dumps(dict(settings=settings, info=info), indent=1)
    )
    logger.info(
        f"Synthetic corpus: {len(tasks)} utterances ({hours:.2f} h) of "
        f"{num_speakers} speakers generated in {elapsed:.1f} s"
    )
    return paths


def _atomic_write(path, text):
    atomic_write_text(path, text + "\n")


def _run_tasks(tasks, num_workers):
    """Runs ``_generate_one`` over ``tasks``, in a pool if asked."""
    if num_workers <= 1 or len(tasks) < 2:
        try:
            return [_generate_one(t) for t in tasks]
        finally:
            close_server()
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    chunksize = max(1, min(16, len(tasks) // (8 * num_workers)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with ctx.Pool(num_workers, initializer=_init_worker) as pool:
            return list(pool.imap_unordered(_generate_one, tasks, chunksize))
