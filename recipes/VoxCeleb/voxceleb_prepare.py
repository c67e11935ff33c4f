"""VoxCeleb data preparation: SpeechBrain's manifests, from the wav layout.

Writes the files of SpeechBrain's ``recipes/VoxCeleb/voxceleb_prepare.py``
(columns ``ID,duration,wav,start,stop,spk_id``) from one or more VoxCeleb
folders laid out as ``<folder>/wav/<speaker>/<video>/<utterance>.wav``
(VoxCeleb1; VoxCeleb2 once converted from m4a to 16 kHz wav, see the
README), in ``save_folder``:

- ``train.csv`` / ``dev.csv``: the utterances of every speaker that no
  trial list uses, split ``split_ratio`` (90/10) at random by utterance
  (or by speaker with ``split_speaker``), cut into ``seg_dur`` chunks
  (``<spk>--<video>--<utt>_<start s>_<stop s>``; ``start``/``stop`` in
  samples) without the chunks whose mean absolute amplitude is below
  ``amp_th``; ``duration`` is the duration of the whole file, as in
  SpeechBrain (its ``random_chunk`` training crops anywhere in the file);
  with ``random_segment`` one row per file instead;
- ``enrol.csv`` / ``test.csv``: the enrolment / test utterances of the
  main trial list (``verification_pairs_file``), one row per file, ID
  ``<spk>/<video>/<utt>`` (the trial-list entry without ``.wav``);
- ``eval.csv`` (added here): every utterance of every trial list (Vox1-O,
  Vox1-E, Vox1-H...), the set the recipes embed once for scoring.

Speakers of *every* given trial list are excluded from train and dev
(SpeechBrain excludes those of the main list's enrolment column; for
Vox1-O both are the same 40 speakers). Giving Vox1-E or Vox1-H, which are
drawn from VoxCeleb1-dev, thus leaves only VoxCeleb2 for training, as
their protocol requires.

Differences with SpeechBrain's script, by design: the train/dev split is
drawn with ``random.Random(seed)`` over the sorted file list (SpeechBrain
shuffles the unsorted ``glob`` with the global RNG, so its split depends on
the file system); wav paths are absolute; audio is read with ``soundfile``
(parallel with ``num_workers``); the preparation is skipped when the
options in ``opt_voxceleb_prepare.json`` match and the outputs exist.
"""

import json
import logging
import os
import random
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import soundfile

from speechbrain_kd.data import read_trials, write_csv

logger = logging.getLogger(__name__)

OPT_FILE = "opt_voxceleb_prepare.json"
TRAIN_CSV = "train.csv"
DEV_CSV = "dev.csv"
TEST_CSV = "test.csv"
ENROL_CSV = "enrol.csv"
EVAL_CSV = "eval.csv"
SAMPLERATE = 16000
SPLIT_FILES = {
    "train": [TRAIN_CSV],
    "dev": [DEV_CSV],
    "test": [ENROL_CSV, TEST_CSV, EVAL_CSV],
}


def prepare_voxceleb(
    data_folder,
    save_folder,
    verification_pairs_file,
    splits=("train", "dev", "test"),
    split_ratio=(90, 10),
    seg_dur=3.0,
    amp_th=5e-04,
    split_speaker=False,
    random_segment=False,
    skip_prep=False,
    trial_files=None,
    seed=1234,
    num_workers=0,
):
    """Writes the VoxCeleb manifests (skipped when already prepared).

    Arguments
    ---------
    data_folder : str or list of str
        VoxCeleb folder(s) holding ``wav/``; several as a list or a
        comma-separated string (e.g. ``"vox1,vox2"``).
    save_folder : str
        Where the CSVs go.
    verification_pairs_file : str
        The main trial list (``veri_test2.txt``, Vox1-O): ``enrol.csv`` and
        ``test.csv`` are its utterances.
    splits : sequence of str
        Among ``train``, ``dev``, ``test``.
    split_ratio : sequence of int
        Percentages of train and dev.
    seg_dur : float
        Length of the training chunks, in seconds.
    amp_th : float
        Chunks whose mean absolute amplitude is below it are dropped.
    split_speaker : bool
        Split train/dev by speaker instead of by utterance (the dev
        speakers are then unknown to the classifier).
    random_segment : bool
        One row per file (start 0, stop its length) instead of chunks.
    skip_prep : bool
        Do nothing.
    trial_files : dict or list, optional
        Further trial lists (Vox1-E ``list_test_all2.txt``, Vox1-H
        ``list_test_hard2.txt``...): their speakers are excluded from
        training and their utterances join ``eval.csv``.
    seed : int
        Seed of the train/dev split.
    num_workers : int
        Processes reading audio (0: none).

    Returns
    -------
    dict
        Path of every CSV written, by file name.
    """
    if skip_prep:
        return {}
    folders = _folders(data_folder)
    lists = [verification_pairs_file]
    if isinstance(trial_files, dict):
        lists += list(trial_files.values())
    elif trial_files:
        lists += list(trial_files)
    lists = list(dict.fromkeys(os.path.abspath(p) for p in lists))
    unknown = [s for s in splits if s not in SPLIT_FILES]
    if unknown:
        raise ValueError(
            f"splits must be among {list(SPLIT_FILES)}, got {unknown}"
        )
    if len(split_ratio) != 2 or sum(split_ratio) != 100:
        raise ValueError(
            f"split_ratio must be [train %, dev %] summing to 100, got "
            f"{split_ratio}"
        )
    conf = dict(
        data_folder=folders,
        trial_files=lists,
        splits=list(splits),
        split_ratio=list(split_ratio),
        seg_dur=seg_dur,
        amp_th=amp_th,
        split_speaker=split_speaker,
        random_segment=random_segment,
        seed=seed,
    )
    outputs = [f for s in splits for f in SPLIT_FILES[s]]
    paths = {f: os.path.join(save_folder, f) for f in outputs}
    opt_path = os.path.join(save_folder, OPT_FILE)
    if _skip(paths.values(), opt_path, conf):
        logger.info("VoxCeleb already prepared in %s, skipping", save_folder)
        return paths
    os.makedirs(save_folder, exist_ok=True)
    if os.path.exists(opt_path):
        os.remove(opt_path)

    trials = {path: read_trials(path) for path in lists}
    test_spks = {
        utt.split("/")[0] for ts in trials.values() for t in ts for utt in t[1:]
    }
    if "train" in splits or "dev" in splits:
        train_files, dev_files = _split_files(
            folders, test_spks, split_ratio, split_speaker, seed
        )
        for split, files in (("train", train_files), ("dev", dev_files)):
            if split in splits:
                rows = _chunk_rows(
                    files, seg_dur, amp_th, random_segment, num_workers
                )
                if not rows:
                    raise ValueError(
                        f"No {split} rows: {len(files)} files, none with a "
                        f"{seg_dur} s chunk above amp_th={amp_th}"
                    )
                write_csv(rows, paths[SPLIT_FILES[split][0]])
                logger.info(
                    "%s: %d rows from %d files of %d speakers",
                    paths[SPLIT_FILES[split][0]],
                    len(rows),
                    len(files),
                    len({r["spk_id"] for r in rows}),
                )
    if "test" in splits:
        main = trials[lists[0]]
        wavs = _locate(folders, trials)
        everything = sorted(
            {u for ts in trials.values() for t in ts for u in t[1:]}
        )
        infos = dict(
            zip(
                everything,
                _map(
                    _file_row_args,
                    [(u, wavs[u]) for u in everything],
                    num_workers,
                ),
            )
        )
        for name, ids in (
            (ENROL_CSV, sorted({t[1] for t in main})),
            (TEST_CSV, sorted({t[2] for t in main})),
            (EVAL_CSV, everything),
        ):
            write_csv([infos[u] for u in ids], paths[name])
        logger.info(
            "Trial lists %s: %d utterances of %d speakers",
            [os.path.basename(p) for p in lists],
            len(everything),
            len(test_spks),
        )
    with open(opt_path, "w") as f:  # written last: marks completion
        json.dump(conf, f, indent=1)
    return paths


def _folders(data_folder):
    if isinstance(data_folder, str):
        data_folder = [p.strip() for p in data_folder.split(",")]
    folders = [os.path.abspath(p) for p in data_folder if p]
    if not folders:
        raise ValueError("data_folder is empty")
    for folder in folders:
        if not os.path.isdir(os.path.join(folder, "wav")):
            raise FileNotFoundError(
                f"data_folder {folder!r} has no wav/ folder; expected the "
                "VoxCeleb layout wav/<speaker>/<video>/<utterance>.wav "
                "(VoxCeleb2: convert its m4a files to 16 kHz wav first, see "
                "recipes/VoxCeleb/README.md)"
            )
    return folders


def _skip(paths, opt_path, conf):
    if not all(os.path.isfile(p) for p in paths):
        return False
    if not os.path.isfile(opt_path):
        return False
    with open(opt_path) as f:
        return json.load(f) == conf


def _wav_files(folder):
    """``(path, speaker)`` of ``wav/<spk>/<video>/<utt>.wav``, sorted."""
    root = os.path.join(folder, "wav")
    files, malformed = [], 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(".wav"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            parts = rel.split(os.sep)
            if len(parts) != 3:
                malformed += 1
                continue
            files.append((os.path.join(root, rel), parts[0]))
    if malformed:
        logger.warning(
            "%s: %d wav files not at <speaker>/<video>/<utt>.wav, ignored",
            root,
            malformed,
        )
    return files


def _split_files(folders, test_spks, split_ratio, split_speaker, seed):
    files, excluded = [], set()
    for folder in folders:
        for path, spk in _wav_files(folder):
            if spk in test_spks:
                excluded.add(spk)
            else:
                files.append((path, spk))
    if not files:
        raise FileNotFoundError(
            f"No training wav files in {folders} (all speakers are in the "
            "trial lists, or the folders are empty)"
        )
    logger.info(
        "%d speakers of the trial lists excluded from train/dev",
        len(excluded),
    )
    rng = random.Random(seed)
    if split_speaker:
        by_spk = {}
        for path, spk in files:
            by_spk.setdefault(spk, []).append(path)
        spks = sorted(by_spk)
        rng.shuffle(spks)
        cut = int(0.01 * split_ratio[0] * len(spks))
        train = [p for s in spks[:cut] for p in by_spk[s]]
        dev = [p for s in spks[cut:] for p in by_spk[s]]
        return train, dev
    paths = [p for p, _ in files]
    rng.shuffle(paths)
    cut = int(0.01 * split_ratio[0] * len(paths))
    return paths[:cut], paths[cut:]


def _read(path):
    try:
        signal, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types
        raise RuntimeError(f"Cannot read audio file {path}: {e}") from e
    if rate != SAMPLERATE:
        raise ValueError(
            f"{path}: sample rate {rate} Hz, expected {SAMPLERATE} (convert "
            "VoxCeleb2 with -ar 16000, see recipes/VoxCeleb/README.md)"
        )
    return signal.mean(axis=1)


def _file_chunks(args):
    """Rows of one file (a top-level function: runs in worker processes)."""
    path, seg_dur, amp_th, random_segment = args
    spk_id, sess_id, utt_id = path.split(os.sep)[-3:]
    audio_id = "--".join([spk_id, sess_id, utt_id.split(".")[0]])
    signal = _read(path)
    audio_duration = signal.shape[0] / SAMPLERATE
    if random_segment:
        return [
            dict(
                ID=audio_id,
                duration=audio_duration,
                wav=path,
                start=0,
                stop=signal.shape[0],
                spk_id=spk_id,
            )
        ]
    rows = []
    for i in range(int(audio_duration / seg_dur)):
        s, e = str(i * seg_dur), str(i * seg_dur + seg_dur)
        start, stop = int(float(s) * SAMPLERATE), int(float(e) * SAMPLERATE)
        # Avoid chunks with very small energy
        if np.mean(np.abs(signal[start:stop])) < amp_th:
            continue
        rows.append(
            dict(
                ID=f"{audio_id}_{s}_{e}",
                duration=audio_duration,
                wav=path,
                start=start,
                stop=stop,
                spk_id=spk_id,
            )
        )
    return rows


def _file_row_args(args):
    """One whole-file row of a trial-list utterance."""
    utt, path = args
    info = soundfile.info(path)
    if info.samplerate != SAMPLERATE:
        raise ValueError(
            f"{path}: sample rate {info.samplerate} Hz, expected {SAMPLERATE}"
        )
    return dict(
        ID=utt,
        duration=info.frames / SAMPLERATE,
        wav=path,
        start=0,
        stop=info.frames,
        spk_id=utt.split("/")[0],
    )


def _map(fn, items, num_workers):
    if num_workers and num_workers > 1 and len(items) > 1:
        with ProcessPoolExecutor(num_workers) as pool:
            return list(pool.map(fn, items, chunksize=64))
    return [fn(x) for x in items]


def _chunk_rows(files, seg_dur, amp_th, random_segment, num_workers):
    args = [(p, seg_dur, amp_th, random_segment) for p in files]
    return [
        row for rows in _map(_file_chunks, args, num_workers) for row in rows
    ]


def _locate(folders, trials):
    """Path of every trial-list utterance, searched in each folder."""
    wavs, missing = {}, {}
    for path, ts in trials.items():
        for t in ts:
            for utt in t[1:]:
                if utt in wavs:
                    continue
                for folder in folders:
                    wav = os.path.join(folder, "wav", utt + ".wav")
                    if os.path.isfile(wav):
                        wavs[utt] = wav
                        break
                else:
                    missing.setdefault(path, set()).add(utt)
    if missing:
        path, utts = next(iter(missing.items()))
        raise FileNotFoundError(
            f"{sum(len(u) for u in missing.values())} utterances of the "
            f"trial lists are not in {[f + '/wav' for f in folders]}, e.g. "
            f"{sorted(utts)[:3]} of {path} (VoxCeleb1-O/E/H need the "
            "VoxCeleb1 folder in data_folder)"
        )
    return wavs


def prepare_corpus(hparams):
    """Runs ``prepare_voxceleb`` with a recipe YAML's settings.

    Uses ``data_folder``, ``prep_folder``, ``verification_file``,
    ``trial_lists`` (``{name: file}``, all of them excluded from training)
    and ``prep_opts`` (the keyword arguments of ``prepare_voxceleb``).
    """
    return prepare_voxceleb(
        hparams["data_folder"],
        hparams["prep_folder"],
        hparams["verification_file"],
        trial_files=hparams.get("trial_lists"),
        **(hparams.get("prep_opts") or {}),
    )
