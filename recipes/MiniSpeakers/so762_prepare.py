"""Prepares the speechocean762 benchmark (with the mini corpus' speakers).

speechocean762 (Zhang et al., Interspeech 2021, OpenSLR SLR101; free for
commercial and non-commercial use): 250 speakers, half children and half
adults, Mandarin L1 reading English; 125 train and 125 test speakers,
disjoint; 16 kHz mono WAV. Expected layout in ``so762_folder``::

    WAVE/SPEAKERnnnn/<utt>.WAV
    train/wav.scp, train/utt2spk      (Kaldi lists: <utt> <path>, <utt> <spk>)
    test/wav.scp, test/utt2spk

Writes, in ``save_folder``:

- ``train.csv``: the listed utterances of the 125 speechocean762 train
  speakers (but ``valid_utts`` each) plus the mini corpus' training rows
  (``shared_prepare.prepare_mini``: 269 speakers): 394 classes;
- ``valid.csv``: the held-out utterances of the training speakers (both
  corpora);
- ``test.csv``: every listed utterance of the 125 speechocean762 test
  speakers, then the mini corpus' test utterances;
- ``veri_test2.txt``: speechocean762 test trials: every target pair of
  utterances of one speaker (125 x C(20, 2) = 23,750 with 20 utterances
  each) and ``nontarget_trials`` non-target pairs drawn with a fixed seed;
- ``mini_trials.txt``: the mini corpus' trial list (scored and reported
  separately: ``trial_lists`` of the YAML).

speechocean762 paths are written absolute (its folder is not
``data_folder``); the mini corpus' stay relative to ``data_folder``.
"""

import itertools
import logging
import os
import random
import shutil

import soundfile
from shared_prepare import OUTPUTS, is_prepared, mark_prepared, prepare_mini

from speechbrain_kd.data import read_csv, read_trials, write_csv, write_trials

logger = logging.getLogger(__name__)

OPTS_FILE = "so762_prepare_opts.json"


def read_kaldi_list(path):
    """``{key: value}`` of a two-column Kaldi list (``wav.scp``,
    ``utt2spk``); errors name the file and line.

    Example
    -------
    >>> path = os.path.join(getfixture("tmpdir"), "utt2spk")
    >>> _ = open(path, "w").write("u1 0001\\nu2 0002\\n")
    >>> read_kaldi_list(path)
    {'u1': '0001', 'u2': '0002'}
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} does not exist; expected the speechocean762 layout "
            "(WAVE/, train/ and test/ with wav.scp and utt2spk)"
        )
    out = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(
                    f"{path}, line {n}: expected '<key> <value>', got "
                    f"{line.strip()!r}"
                )
            if fields[0] in out:
                raise ValueError(f"{path}, line {n}: duplicate {fields[0]}")
            out[fields[0]] = fields[1]
    return out


def split_rows(so762_folder, split):
    """Manifest rows of one speechocean762 split (train or test)."""
    folder = os.path.join(so762_folder, split)
    wavs = read_kaldi_list(os.path.join(folder, "wav.scp"))
    speakers = read_kaldi_list(os.path.join(folder, "utt2spk"))
    missing = sorted(set(wavs) - set(speakers))
    if missing:
        raise ValueError(
            f"{folder}/utt2spk lacks {len(missing)} utterances of wav.scp "
            f"(first: {missing[:3]})"
        )
    rows = []
    for utt in sorted(wavs):
        path = os.path.join(so762_folder, wavs[utt])
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{folder}/wav.scp lists {wavs[utt]} for {utt}, which does "
                f"not exist under {so762_folder}"
            )
        info = soundfile.info(path)
        rows.append(
            dict(
                ID=f"so762/{utt}",
                duration=round(info.frames / info.samplerate, 4),
                wav=os.path.abspath(path),
                start=0,
                stop=info.frames,
                spk_id=f"so{speakers[utt]}",
            )
        )
    return rows


def all_target_and_sampled_nontarget(rows, num_nontarget, seed):
    """Every target pair, and ``num_nontarget`` distinct non-target pairs
    drawn with ``seed``; ``(label, enrol, test)`` with audio extensions.

    Example
    -------
    >>> rows = [dict(ID=f"{s}{u}", wav=f"{s}{u}.wav", spk_id=s)
    ...         for s in "ab" for u in range(3)]
    >>> trials = all_target_and_sampled_nontarget(rows, 4, seed=0)
    >>> sum(t[0] for t in trials), len(trials)
    (6, 10)
    """
    by_spk = {}
    for row in rows:
        by_spk.setdefault(row["spk_id"], []).append(row)

    def entry(row):
        return row["ID"] + os.path.splitext(row["wav"])[1]

    trials = [
        (1, entry(a), entry(b))
        for spk in sorted(by_spk)
        for a, b in itertools.combinations(by_spk[spk], 2)
    ]
    possible = sum(
        len(by_spk[a]) * len(by_spk[b])
        for a, b in itertools.combinations(sorted(by_spk), 2)
    )
    if num_nontarget > possible:
        raise ValueError(
            f"nontarget_trials={num_nontarget} but only {possible} "
            "non-target pairs exist"
        )
    rng = random.Random(seed)
    seen = set()
    while len(seen) < num_nontarget:
        a, b = rng.sample(rows, 2)
        if a["spk_id"] == b["spk_id"]:
            continue
        key = tuple(sorted((a["ID"], b["ID"])))
        if key not in seen:
            seen.add(key)
            trials.append((0, entry(a), entry(b)))
    return trials


def prepare_so762(
    so762_folder,
    data_folder,
    save_folder,
    valid_utts=2,
    nontarget_trials=47500,
    seed=1234,
    mini_opts=None,
):
    """Writes the manifests and trial lists (skipped when up to date).

    Arguments
    ---------
    so762_folder : str
        The speechocean762 folder (layout in the module docstring).
    data_folder : str
        The mini corpus folder (``shared_prepare.prepare_mini``).
    save_folder : str
        Where the outputs go (``<save_folder>/mini`` holds the mini
        corpus' own preparation).
    valid_utts : int
        Utterances held out per speechocean762 training speaker.
    nontarget_trials : int
        Non-target speechocean762 test trials (a fixed-seed sample).
    seed : int
        Seed of the held-out choice and of the non-target draw.
    mini_opts : dict, optional
        Options of ``prepare_mini``.
    """
    opts = dict(
        so762_folder=os.path.abspath(so762_folder),
        data_folder=os.path.abspath(data_folder),
        valid_utts=valid_utts,
        nontarget_trials=nontarget_trials,
        seed=seed,
        mini_opts=mini_opts or {},
    )
    opts_path = os.path.join(save_folder, OPTS_FILE)
    if is_prepared(save_folder, opts_path, opts):
        logger.info("speechocean762 already prepared in %s", save_folder)
        return
    os.makedirs(save_folder, exist_ok=True)
    mini = os.path.join(save_folder, "mini")
    prepare_mini(data_folder, mini, **(mini_opts or {}))
    mini_rows = {s: read_csv(os.path.join(mini, s)) for s in OUTPUTS[:3]}

    train_rows = split_rows(so762_folder, "train")
    test_rows = split_rows(so762_folder, "test")
    overlap = {r["spk_id"] for r in train_rows} & {
        r["spk_id"] for r in test_rows
    }
    if overlap:
        raise ValueError(
            f"{so762_folder}: speakers {sorted(overlap)[:5]} are in both "
            "train/ and test/ (expected disjoint sets)"
        )
    rng = random.Random(seed)
    by_spk = {}
    for row in train_rows:
        by_spk.setdefault(row["spk_id"], []).append(row)
    train, valid = [], []
    for spk in sorted(by_spk):
        utts = list(by_spk[spk])
        rng.shuffle(utts)
        held = set(r["ID"] for r in utts[:valid_utts])
        for row in by_spk[spk]:
            (valid if row["ID"] in held else train).append(row)
    write_csv(
        train + mini_rows["train.csv"], os.path.join(save_folder, "train.csv")
    )
    write_csv(
        valid + mini_rows["valid.csv"], os.path.join(save_folder, "valid.csv")
    )
    write_csv(
        test_rows + mini_rows["test.csv"], os.path.join(save_folder, "test.csv")
    )
    trials = all_target_and_sampled_nontarget(test_rows, nontarget_trials, seed)
    write_trials(trials, os.path.join(save_folder, "veri_test2.txt"))
    mini_trials = read_trials(os.path.join(mini, "veri_test2.txt"))
    shutil.copy(
        os.path.join(mini, "veri_test2.txt"),
        os.path.join(save_folder, "mini_trials.txt"),
    )
    mark_prepared(opts_path, opts)
    logger.info(
        "speechocean762: %d training classes (%d train, %d valid rows), %d "
        "test utterances, %d trials (+ %d mini-corpus trials)",
        len({r["spk_id"] for r in train + mini_rows["train.csv"]}),
        len(train) + len(mini_rows["train.csv"]),
        len(valid) + len(mini_rows["valid.csv"]),
        len(test_rows),
        len(trials),
        len(mini_trials),
    )
