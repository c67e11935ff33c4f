"""The mini corpus preparation, shared by mini_prepare.py and so762_prepare.py.

The real mini corpus: LibriSpeech samples + Arabic Speech Commands.

Expects ``data_folder`` to hold ``librispeech-samples/`` and
``arabic-speech-commands/`` as in the project's ``shared/data`` folder, and
writes, in ``save_folder``:

- ``train.csv``: crops of the 251 LibriSpeech train-clean-100 speakers (one
  ~12 s utterance each, cut into ``seg_dur`` segments) and the utterances of
  the 18 Arabic training speakers: 269 classes with a long tail;
- ``valid.csv``: held-out audio of the same speakers (the last
  ``libri_valid_dur`` seconds of each LibriSpeech utterance, and
  ``arabic_valid_utts`` utterances of each Arabic speaker);
- ``test.csv``: the held-out speakers (6 Arabic test speakers, 10
  LibriSpeech test-other speakers);
- ``veri_test2.txt``: balanced target / non-target trials between held-out
  speakers, never mixing the two corpora in one trial.

Paths in the CSVs are relative to ``data_folder``.
"""

import csv
import json
import logging
import os
import random

import soundfile

from speechbrain_kd.data import make_trials, write_csv, write_trials

logger = logging.getLogger(__name__)

ARABIC = "arabic-speech-commands"
LIBRI = "librispeech-samples"
EXPECTED = [
    f"{ARABIC}/train.csv",
    f"{ARABIC}/test.csv",
    f"{ARABIC}/dataset",
    f"{LIBRI}/train-clean-100",
    f"{LIBRI}/test-other",
]
OPTS_FILE = "mini_prepare_opts.json"
OUTPUTS = ["train.csv", "valid.csv", "test.csv", "veri_test2.txt"]


def is_prepared(save_folder, opts_path, opts, outputs=OUTPUTS):
    """Whether ``save_folder`` holds every file of ``outputs`` and the
    options file ``opts_path`` (written last) records ``opts``.

    Example
    -------
    >>> folder = str(getfixture("tmpdir"))
    >>> opts_path = os.path.join(folder, "opts.json")
    >>> is_prepared(folder, opts_path, {"seed": 1}, outputs=[])
    False
    >>> mark_prepared(opts_path, {"seed": 1})
    >>> is_prepared(folder, opts_path, {"seed": 1}, outputs=[])
    True
    """
    if not all(os.path.isfile(os.path.join(save_folder, f)) for f in outputs):
        return False
    if not os.path.isfile(opts_path):
        return False
    with open(opts_path) as f:
        return json.load(f) == opts


def mark_prepared(opts_path, opts):
    """Writes the options file ``opts_path``: the outputs are complete."""
    with open(opts_path, "w") as f:
        json.dump(opts, f, indent=1)


def check_data_folder(data_folder):
    """Raises one clear error if ``data_folder`` lacks the expected layout."""
    if not data_folder or not os.path.isdir(data_folder):
        raise FileNotFoundError(
            f"data_folder {data_folder!r} is not a directory; expected the "
            f"mini corpus folder holding {ARABIC}/ and {LIBRI}/ (the "
            "project's shared/data)"
        )
    missing = [
        p for p in EXPECTED if not os.path.exists(os.path.join(data_folder, p))
    ]
    if missing:
        raise FileNotFoundError(
            f"data_folder {data_folder!r} lacks {missing}; expected the mini "
            f"corpus layout with {ARABIC}/ and {LIBRI}/ (the project's "
            "shared/data)"
        )


def prepare_mini(
    data_folder,
    save_folder,
    seg_dur=1.5,
    libri_valid_dur=2.0,
    arabic_valid_utts=10,
    arabic_trials=4000,
    libri_trials=600,
    seed=1234,
):
    """Writes the manifests and the trial list (skipped when up to date).

    Arguments
    ---------
    data_folder : str
        Folder with ``librispeech-samples/`` and ``arabic-speech-commands/``.
    save_folder : str
        Where the CSVs and ``veri_test2.txt`` go.
    seg_dur : float
        Length in seconds of the training segments cut from LibriSpeech.
    libri_valid_dur : float
        Seconds held out at the end of each LibriSpeech training utterance.
    arabic_valid_utts : int
        Utterances held out per Arabic training speaker.
    arabic_trials, libri_trials : int
        Number of trials per corpus (half target, half non-target).
    seed : int
        Seed of the held-out choice and of the trial draw.

    Returns
    -------
    dict
        Paths of ``train_csv``, ``valid_csv``, ``test_csv`` and ``trials``.
    """
    check_data_folder(data_folder)
    opts = dict(
        data_folder=os.path.abspath(data_folder),
        seg_dur=seg_dur,
        libri_valid_dur=libri_valid_dur,
        arabic_valid_utts=arabic_valid_utts,
        arabic_trials=arabic_trials,
        libri_trials=libri_trials,
        seed=seed,
    )
    paths = {
        "train_csv": os.path.join(save_folder, "train.csv"),
        "valid_csv": os.path.join(save_folder, "valid.csv"),
        "test_csv": os.path.join(save_folder, "test.csv"),
        "trials": os.path.join(save_folder, "veri_test2.txt"),
    }
    opts_path = os.path.join(save_folder, OPTS_FILE)
    if is_prepared(save_folder, opts_path, opts):
        logger.info("Mini corpus already prepared in %s, skipping", save_folder)
        return paths
    os.makedirs(save_folder, exist_ok=True)
    if os.path.exists(opts_path):
        os.remove(opts_path)

    rng = random.Random(seed)
    train, valid = _libri_train(data_folder, seg_dur, libri_valid_dur)
    a_train, a_valid = _arabic_train(data_folder, arabic_valid_utts, rng)
    train += a_train
    valid += a_valid
    test_ar = _arabic_rows(data_folder, f"{ARABIC}/test.csv")
    test_ls = _libri_test(data_folder)
    trials = make_trials(test_ar, arabic_trials, seed)
    trials += make_trials(test_ls, libri_trials, seed + 1)

    write_csv(train, paths["train_csv"])
    write_csv(valid, paths["valid_csv"])
    write_csv(test_ar + test_ls, paths["test_csv"])
    write_trials(trials, paths["trials"])
    mark_prepared(opts_path, opts)  # written last: marks completion
    logger.info(
        "Mini corpus: %d train rows (%d speakers), %d valid rows, %d test "
        "utterances, %d trials",
        len(train),
        len({r["spk_id"] for r in train}),
        len(valid),
        len(test_ar) + len(test_ls),
        len(trials),
    )
    return paths


def _row(data_folder, rel, spk_id, start=0, stop=None, utt_id=None):
    info = soundfile.info(os.path.join(data_folder, rel))
    if info.samplerate != 16000:
        raise ValueError(
            f"{os.path.join(data_folder, rel)}: sample rate "
            f"{info.samplerate} Hz, expected 16000"
        )
    stop = info.frames if stop is None else stop
    utt_id = utt_id or os.path.splitext(rel)[0]
    return dict(
        ID="_".join(utt_id.split()),  # trial lists split on whitespace
        duration=(stop - start) / info.samplerate,
        wav=rel,
        start=start,
        stop=stop,
        spk_id=spk_id,
    )


def _libri_train(data_folder, seg_dur, valid_dur, sr=16000):
    folder = f"{LIBRI}/train-clean-100"
    train, valid = [], []
    for name in sorted(os.listdir(os.path.join(data_folder, folder))):
        if not name.endswith(".flac"):
            continue
        rel = f"{folder}/{name}"
        spk = "ls" + name.split("-")[0]
        frames = soundfile.info(os.path.join(data_folder, rel)).frames
        seg, hold = int(seg_dur * sr), int(valid_dur * sr)
        # Hold out the end only when enough is left to train on.
        end = frames - hold if frames - hold >= seg else frames
        if end < frames:
            valid.append(
                _row(data_folder, rel, spk, end, frames, f"{rel[:-5]}_valid")
            )
        starts = list(range(0, max(end - seg, 0) + 1, seg))
        for i, start in enumerate(starts):
            stop = end if i == len(starts) - 1 else start + seg
            train.append(
                _row(data_folder, rel, spk, start, stop, f"{rel[:-5]}_{start}")
            )
    return train, valid


def _arabic_speaker(rel):
    return "ar" + os.path.basename(rel)[:8]


def _arabic_rows(data_folder, csv_rel):
    with open(os.path.join(data_folder, csv_rel), newline="") as f:
        files = [row["file"] for row in csv.DictReader(f)]
    return [
        _row(data_folder, f"{ARABIC}/{rel}", _arabic_speaker(rel))
        for rel in sorted(files)
    ]


def _arabic_train(data_folder, valid_utts, rng):
    rows = _arabic_rows(data_folder, f"{ARABIC}/train.csv")
    by_spk = {}
    for row in rows:
        by_spk.setdefault(row["spk_id"], []).append(row)
    train, valid = [], []
    for spk in sorted(by_spk):
        held = set(rng.sample(range(len(by_spk[spk])), valid_utts))
        for i, row in enumerate(by_spk[spk]):
            (valid if i in held else train).append(row)
    return train, valid


def _libri_test(data_folder):
    folder = f"{LIBRI}/test-other"
    rows = []
    for spk in sorted(os.listdir(os.path.join(data_folder, folder))):
        spk_dir = os.path.join(data_folder, folder, spk)
        if not os.path.isdir(spk_dir):
            continue
        for name in sorted(os.listdir(spk_dir)):
            if name.endswith(".flac"):
                rows.append(
                    _row(data_folder, f"{folder}/{spk}/{name}", "ls" + spk)
                )
    return rows
