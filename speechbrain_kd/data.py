"""Manifests, trial lists and dataio pipelines shared by the recipes.

Every corpus preparation in this project writes the same files, so that
``train_teacher.py`` and ``train_kd.py`` run unchanged on any of them:

- ``train.csv``, ``valid.csv``, ``test.csv`` with SpeechBrain's speaker
  columns ``ID,duration,wav,start,stop,spk_id`` (``start``/``stop`` in
  samples, ``stop`` exclusive);
- ``veri_test2.txt``, a VoxCeleb-format trial list: one ``label enrol test``
  line per trial, ``label`` 1 for target and 0 for non-target, where
  ``enrol`` and ``test`` are test-set IDs followed by an audio extension.
"""

import csv
import os
import random
import tempfile

import soundfile
import speechbrain as sb
import torch

CSV_FIELDS = ["ID", "duration", "wav", "start", "stop", "spk_id"]
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a")


def atomic_write_text(path, text):
    """Writes ``text`` to ``path`` through a temporary file and a rename.

    A reader never sees a half-written file, and an interrupted write leaves
    the previous file (if any) untouched.

    Example
    -------
    >>> path = os.path.join(getfixture("tmpdir"), "a.txt")
    >>> atomic_write_text(path, "hello\\n")
    >>> open(path).read()
    'hello\\n'
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_csv(rows, path):
    """Writes a speaker manifest (``CSV_FIELDS`` columns) atomically.

    Arguments
    ---------
    rows : list of dict
        One dict per row, with at least the keys of ``CSV_FIELDS``.
    path : str
        Destination CSV file.

    Example
    -------
    >>> path = os.path.join(getfixture("tmpdir"), "m.csv")
    >>> write_csv([dict(ID="a", duration=1.0, wav="a.flac", start=0,
    ...                 stop=16000, spk_id="s1")], path)
    >>> open(path).read().splitlines()[0]
    'ID,duration,wav,start,stop,spk_id'
    """
    lines = [",".join(CSV_FIELDS)]
    for i, row in enumerate(rows):
        missing = [k for k in CSV_FIELDS if k not in row]
        if missing:
            raise ValueError(f"{path}: row {i} lacks the keys {missing}")
        values = []
        for key in CSV_FIELDS:
            value = row[key]
            if key == "duration":
                value = f"{float(value):.4f}"
            value = str(value)
            if "," in value or "\n" in value:
                raise ValueError(
                    f"{path}: row {i} has a comma or newline in {key}={value!r}"
                )
            values.append(value)
        lines.append(",".join(values))
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_csv(path):
    """Reads a speaker manifest and checks its columns.

    Returns
    -------
    list of dict
        The rows, with ``start``/``stop`` as int and ``duration`` as float.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Manifest {path} does not exist")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [k for k in CSV_FIELDS if k not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: expected the columns {CSV_FIELDS}, missing {missing}"
            )
        rows = []
        for n, row in enumerate(reader, start=2):
            try:
                row["start"] = int(row["start"])
                row["stop"] = int(row["stop"])
                row["duration"] = float(row["duration"])
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}, line {n}: bad number ({e})") from e
            rows.append(row)
    return rows


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
    """Maps a trial-list entry to a manifest ID (drops an audio extension).

    Example
    -------
    >>> trial_id("id10270/x6uYqmx31kE/00001.wav")
    'id10270/x6uYqmx31kE/00001'
    >>> trial_id("spk1/utt.2")
    'spk1/utt.2'
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
    with open(path) as f:
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
    if not trials:
        raise ValueError(f"Trial list {path} is empty")
    return trials


def load_audio(path, start=0, stop=None, sample_rate=16000):
    """Loads ``path[start:stop]`` as a mono float32 tensor.

    Multi-channel audio is averaged to mono. A file at another sample rate
    is an error (naming the file), not a silent mismatch.
    """
    try:
        info = soundfile.info(path)
    except Exception as e:  # soundfile raises several types
        raise RuntimeError(f"Cannot read audio file {path}: {e}") from e
    if info.samplerate != sample_rate:
        raise ValueError(
            f"{path}: sample rate {info.samplerate} Hz, expected {sample_rate}"
        )
    stop = None if stop is None or stop <= start else stop
    data, _ = soundfile.read(
        path, start=start, stop=stop, dtype="float32", always_2d=True
    )
    if data.shape[0] == 0:
        raise ValueError(f"{path}: no samples in [{start}, {stop})")
    return torch.from_numpy(data.mean(axis=1))


def random_crop(sig, num_samples, generator=None):
    """Random crop of ``num_samples`` (the whole signal if shorter).

    Example
    -------
    >>> random_crop(torch.arange(10.0), 4).shape
    torch.Size([4])
    >>> random_crop(torch.arange(3.0), 4).shape
    torch.Size([3])
    """
    if sig.shape[0] <= num_samples:
        return sig
    offset = torch.randint(
        0, sig.shape[0] - num_samples + 1, (1,), generator=generator
    ).item()
    return sig[offset : offset + num_samples]


def dataio_prep(hparams, label_encoder):
    """Builds the train / valid / test datasets of a speaker recipe.

    Training examples are random crops of ``sentence_len`` seconds of each
    manifest row; validation examples are the whole rows (held-out crops);
    test examples are whole utterances (for embedding extraction).

    Arguments
    ---------
    hparams : dict
        Needs ``train_csv``, ``valid_csv``, ``test_csv``, ``data_folder``,
        ``sentence_len`` and ``sample_rate``.
    label_encoder : speechbrain.dataio.encoder.CategoricalEncoder
        Maps ``spk_id`` to class indices (must know every training speaker).

    Returns
    -------
    dict
        ``{"train", "valid", "test"}`` DynamicItemDatasets providing ``sig``
        and (train/valid) ``spk_id_encoded``.
    """
    data_folder = hparams["data_folder"]
    sample_rate = hparams["sample_rate"]
    crop = int(hparams["sentence_len"] * sample_rate)

    datasets = {}
    for split in ("train", "valid", "test"):
        csv_path = hparams[f"{split}_csv"]
        read_csv(csv_path)  # checks columns and numbers, with clear errors
        datasets[split] = sb.dataio.dataset.DynamicItemDataset.from_csv(
            csv_path, replacements={"data_root": data_folder}
        )

    def resolve(wav):
        return wav if os.path.isabs(wav) else os.path.join(data_folder, wav)

    @sb.utils.data_pipeline.takes("wav", "start", "stop")
    @sb.utils.data_pipeline.provides("sig")
    def train_audio(wav, start, stop):
        sig = load_audio(resolve(wav), int(start), int(stop), sample_rate)
        return random_crop(sig, crop)

    @sb.utils.data_pipeline.takes("wav", "start", "stop")
    @sb.utils.data_pipeline.provides("sig")
    def eval_audio(wav, start, stop):
        return load_audio(resolve(wav), int(start), int(stop), sample_rate)

    @sb.utils.data_pipeline.takes("spk_id")
    @sb.utils.data_pipeline.provides("spk_id_encoded")
    def label_pipeline(spk_id):
        return torch.LongTensor([label_encoder.encode_label(spk_id)])

    unknown = sorted(
        {
            row["spk_id"]
            for split in ("train", "valid")
            for row in read_csv(hparams[f"{split}_csv"])
            if row["spk_id"] not in label_encoder.lab2ind
        }
    )
    if unknown:
        raise ValueError(
            f"{len(unknown)} speakers of {hparams['train_csv']} / "
            f"{hparams['valid_csv']} are unknown to the label encoder "
            f"(first: {unknown[:5]}); the student's classes follow the "
            "teacher's label encoder"
        )

    sb.dataio.dataset.add_dynamic_item([datasets["train"]], train_audio)
    sb.dataio.dataset.add_dynamic_item(
        [datasets["valid"], datasets["test"]], eval_audio
    )
    sb.dataio.dataset.add_dynamic_item(
        [datasets["train"], datasets["valid"]], label_pipeline
    )
    for split, ds in datasets.items():
        keys = (
            ["id", "sig"]
            if split == "test"
            else ["id", "sig", "spk_id_encoded"]
        )
        ds.set_output_keys(keys)
    return datasets
