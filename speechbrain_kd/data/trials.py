"""Trial lists: drawing, writing, reading and checking them.

A trial list is in VoxCeleb format (``veri_test2.txt``): one ``label enrol
test`` line per trial, ``label`` 1 for target and 0 for non-target, where
``enrol`` and ``test`` are test-set IDs followed by an audio extension.
"""

import os
import random

from speechbrain_kd.data.manifests import AUDIO_EXTENSIONS, read_csv
from speechbrain_kd.fileio import atomic_write_text


def make_trials(rows, num_trials, seed):
    """Draws a balanced trial list among the utterances of ``rows``.

    Half the trials are target (two different utterances of one speaker,
    the speaker drawn uniformly) and half non-target (utterances of two
    different speakers). No pair is drawn twice. Deterministic in ``seed``.

    Arguments
    ---------
    rows : list of dict
        Manifest rows with ``ID``, ``wav`` and ``spk_id``.
    num_trials : int
        Number of trials wanted (an odd number is rounded down).
    seed : int
        Seed of the random draw.

    Returns
    -------
    list of tuple
        ``(label, enrol, test)`` with ``label`` 1 or 0 and the entries
        written as ``ID`` + audio extension.

    Example
    -------
    >>> rows = [dict(ID=f"{s}_{u}", wav=f"{s}_{u}.flac", spk_id=s)
    ...         for s in "abc" for u in range(3)]
    >>> trials = make_trials(rows, 8, seed=1)
    >>> sorted(t[0] for t in trials)
    [0, 0, 0, 0, 1, 1, 1, 1]
    >>> trials == make_trials(rows, 8, seed=1)
    True
    """
    by_spk = {}
    for row in rows:
        by_spk.setdefault(row["spk_id"], []).append(row)
    speakers = sorted(by_spk)
    multi = [s for s in speakers if len(by_spk[s]) >= 2]
    if len(speakers) < 2 or not multi:
        raise ValueError(
            "Trials need at least two speakers and one speaker with two "
            f"utterances; got {len(speakers)} speakers"
        )
    half = num_trials // 2
    max_target = sum(len(by_spk[s]) * (len(by_spk[s]) - 1) // 2 for s in multi)
    if half > max_target:
        raise ValueError(
            f"Asked for {half} target trials but only {max_target} exist"
        )

    def entry(row):
        return row["ID"] + os.path.splitext(row["wav"])[1]

    rng = random.Random(seed)
    trials, seen = [], set()
    while len(seen) < half:
        utts = by_spk[rng.choice(multi)]
        a, b = sorted(rng.sample(range(len(utts)), 2))
        key = (utts[a]["ID"], utts[b]["ID"])
        if key not in seen:
            seen.add(key)
            trials.append((1, entry(utts[a]), entry(utts[b])))
    while len(seen) < 2 * half:
        s1, s2 = rng.sample(speakers, 2)
        r1, r2 = rng.choice(by_spk[s1]), rng.choice(by_spk[s2])
        key = tuple(sorted((r1["ID"], r2["ID"])))
        if key not in seen:
            seen.add(key)
            trials.append((0, entry(r1), entry(r2)))
    rng.shuffle(trials)
    return trials


def write_trials(trials, path):
    """Writes ``(label, enrol, test)`` trials in VoxCeleb format, atomically."""
    for trial in trials:
        if any(len(str(x).split()) != 1 for x in trial):
            raise ValueError(
                f"{path}: trial {trial} has an empty entry or whitespace in an "
                "entry (IDs of a trial list cannot hold spaces)"
            )
    text = "".join(f"{int(lab)} {e} {t}\n" for lab, e, t in trials)
    atomic_write_text(path, text)


def trial_id(entry):
    """Maps a trial-list entry to a manifest ID: drops an extension of
    ``AUDIO_EXTENSIONS`` (any case), keeps any other.
    """
    root, ext = os.path.splitext(entry)
    return root if ext.lower() in AUDIO_EXTENSIONS else entry


def read_trials(path):
    """Reads a VoxCeleb-format trial list.

    Returns
    -------
    list of tuple
        ``(label, enrol_id, test_id)``; IDs without the audio extension.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Trial list {path} does not exist")
    trials = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                parts = line.split()
                if len(parts) != 3 or parts[0] not in ("0", "1"):
                    raise ValueError(
                        f"{path}, line {n}: expected 'label enrol test' with "
                        f"label 0 or 1, got {line.strip()!r}"
                    )
                trials.append(
                    (int(parts[0]), trial_id(parts[1]), trial_id(parts[2]))
                )
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text trial list ({e})") from e
    if not trials:
        raise ValueError(f"Trial list {path} is empty")
    return trials


def missing_trial_ids(trials, ids):
    """The enrol and test IDs of ``trials`` (``read_trials`` tuples) not in
    ``ids`` (a set, or a dict keyed by ID), sorted, each once.
    """
    return sorted({i for _, e, t in trials for i in (e, t) if i not in ids})


def check_trials(trials_path, test_csv):
    """Checks that every entry of a trial list is an ID of the test manifest.

    Run before training, so that a trial list that does not match its test
    set fails at once rather than after the last epoch.

    Arguments
    ---------
    trials_path : str
        VoxCeleb-format trial list.
    test_csv : str
        Test manifest (``CSV_FIELDS`` columns).

    Returns
    -------
    list of tuple
        The trials, as ``read_trials`` returns them.

    Example
    -------
    >>> from speechbrain_kd.data import write_csv, write_trials
    >>> tmp = getfixture("tmpdir")
    >>> write_csv([dict(ID="a", duration=1.0, wav="a.wav", start=0,
    ...                 stop=16000, spk_id="s")], tmp / "test.csv")
    >>> write_trials([(1, "a.wav", "b.wav")], tmp / "trials.txt")
    >>> check_trials(tmp / "trials.txt", tmp / "test.csv")
    Traceback (most recent call last):
    ...
    ValueError: ...trials.txt: 1 trial entries are not IDs of ...test.csv...
    """
    trials = read_trials(trials_path)
    ids = {row["ID"] for row in read_csv(test_csv)}
    missing = missing_trial_ids(trials, ids)
    if missing:
        raise ValueError(
            f"{trials_path}: {len(missing)} trial entries are not IDs of "
            f"{test_csv} (first: {missing[:5]}); expected every enrol and "
            "test entry to be a test-set ID plus an audio extension"
        )
    return trials
