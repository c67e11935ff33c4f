"""Manifests, trial lists and dataio pipelines shared by the recipes.

Every corpus preparation in this project writes the same files, so that
``train_teacher.py`` and ``train_kd.py`` run unchanged on any of them:

- ``train.csv``, ``valid.csv``, ``test.csv`` with SpeechBrain's speaker
  columns ``ID,duration,wav,start,stop,spk_id`` (``start``/``stop`` in
  samples, ``stop`` exclusive);
- ``veri_test2.txt``, a VoxCeleb-format trial list: one ``label enrol test``
  line per trial, ``label`` 1 for target and 0 for non-target, where
  ``enrol`` and ``test`` are test-set IDs followed by an audio extension.

Bad input fails early with one error naming the file (and line) and what
was expected: ``read_csv`` / ``read_trials`` check the manifests and trial
lists, ``check_audio`` checks every audio file a manifest points to before
any training step, and ``load_audio`` checks what it reads.

Audio rules (``dataio_prep`` options, keys of the recipe YAMLs):

- ``sample_rate``: audio at another rate is an error, unless ``resample``
  is True (then it is resampled on loading; ``start``/``stop`` stay in
  samples of the file's own rate);
- multi-channel audio is averaged to mono (``downmix``; False makes it an
  error);
- a training or validation segment shorter than the training crop
  (``sentence_len``) is kept whole and zero-padded in its batch: the
  relative lengths of the batch mask the padding in the features'
  normalisation and in the pooling, so 1-s utterances with a 1-s crop (or
  shorter ones) train on their real length. Segments shorter than
  ``min_sentence_len`` seconds (default: half the crop) are rejected;
- empty, unreadable, truncated audio and audio holding NaN or infinite
  samples are errors.

Training crops are drawn from a generator seeded by ``(seed, epoch,
example ID)`` (``EpochDataset``), so they do not depend on the process,
the data-loading workers or an interruption: a resumed or a multi-process
run crops every example exactly as an uninterrupted single-process run.
Only the crop is read from the file (``load_random_crop``: a 3-s crop of
a 60-s VoxCeleb file decodes 3 s, not 60).
"""

import csv
import hashlib
import math
import os
import random

import numpy
import soundfile
import speechbrain as sb
import torch

from speechbrain_kd.fileio import atomic_write_text

CSV_FIELDS = ["ID", "duration", "wav", "start", "stop", "spk_id"]
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a")
# Longest segment load_audio reads (samples x channels, 1 GiB of float32:
# 4.6 hours of 16-kHz mono), so that a corrupt header claiming billions of
# samples is an error rather than an out-of-memory kill
MAX_SAMPLES = 2**28


def resolve_path(data_folder, wav):
    """The audio path of a manifest's ``wav``: absolute, or under
    ``data_folder``.

    Example
    -------
    >>> resolve_path("/data", "a/b.wav"), resolve_path("/data", "/x.wav")
    ('/data/a/b.wav', '/x.wav')
    """
    return wav if os.path.isabs(wav) else os.path.join(data_folder, wav)


def audio_options(hparams):
    """The ``load_audio`` options of a recipe YAML: ``sample_rate``,
    ``resample`` (default False) and ``downmix`` (default True).

    Example
    -------
    >>> audio_options({"sample_rate": 16000})
    {'sample_rate': 16000, 'resample': False, 'downmix': True}
    """
    return dict(
        sample_rate=hparams["sample_rate"],
        resample=bool(hparams.get("resample", False)),
        downmix=bool(hparams.get("downmix", True)),
    )


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
    """Reads a speaker manifest and checks its columns and values.

    Every row needs the ``CSV_FIELDS`` columns, a unique non-empty ``ID``,
    non-empty ``wav`` and ``spk_id``, ``0 <= start < stop`` (samples) and a
    positive ``duration``; errors name the file and the line.

    Returns
    -------
    list of dict
        The rows, with ``start``/``stop`` as int and ``duration`` as float.

    Example
    -------
    >>> import os
    >>> path = os.path.join(getfixture("tmpdir"), "bad.csv")
    >>> _ = open(path, "w").write(
    ...     "ID,duration,wav,start,stop,spk_id\\na,1.0,a.wav,0,16000,s\\n"
    ...     "a,1.0,b.wav,0,16000,s\\n")
    >>> read_csv(path)
    Traceback (most recent call last):
    ...
    ValueError: ...bad.csv, line 3: duplicate ID 'a' (first on line 2)
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Manifest {path} does not exist")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            missing = [k for k in CSV_FIELDS if k not in fields]
            if missing:
                raise ValueError(
                    f"{path}: expected the columns {CSV_FIELDS}, missing "
                    f"{missing}"
                )
            rows, first_line = [], {}
            for n, row in enumerate(reader, start=2):
                rows.append(_check_row(path, n, row, len(fields)))
                line = first_line.setdefault(row["ID"], n)
                if line != n:
                    raise ValueError(
                        f"{path}, line {n}: duplicate ID {row['ID']!r} "
                        f"(first on line {line})"
                    )
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text CSV ({e})") from e
    except csv.Error as e:
        raise ValueError(f"{path}: malformed CSV ({e})") from e
    if not rows:
        raise ValueError(f"Manifest {path} has no rows (header only)")
    return rows


def _check_row(path, n, row, num_fields):
    """One manifest row with numbers converted; clear error if malformed."""
    extra = len(row.get(None) or [])
    absent = sum(v is None for v in row.values())
    if extra or absent:
        raise ValueError(
            f"{path}, line {n}: expected {num_fields} comma-separated "
            f"fields, got {num_fields + extra - absent}"
        )
    try:
        row["start"] = int(row["start"])
        row["stop"] = int(row["stop"])
        row["duration"] = float(row["duration"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}, line {n}: bad number ({e})") from e
    for key in ("ID", "wav", "spk_id"):
        if not row[key].strip():
            raise ValueError(f"{path}, line {n}: empty {key}")
    if not 0 <= row["start"] < row["stop"]:
        raise ValueError(
            f"{path}, line {n}: expected 0 <= start < stop (samples), got "
            f"start={row['start']}, stop={row['stop']}"
        )
    if not (math.isfinite(row["duration"]) and row["duration"] > 0):
        raise ValueError(
            f"{path}, line {n}: expected a positive duration (seconds), "
            f"got {row['duration']}"
        )
    return row


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
    missing = sorted({i for _, e, t in trials for i in (e, t)} - ids)
    if missing:
        raise ValueError(
            f"{trials_path}: {len(missing)} trial entries are not IDs of "
            f"{test_csv} (first: {missing[:5]}); expected every enrol and "
            "test entry to be a test-set ID plus an audio extension"
        )
    return trials


def audio_info(path):
    """``soundfile.info`` of an audio file, with clear errors.

    Raises ``FileNotFoundError`` for a missing file, ``RuntimeError`` for
    one that is not readable audio and ``ValueError`` for an empty one; all
    name the file.

    Example
    -------
    >>> audio_info("/no/such/file.wav")
    Traceback (most recent call last):
    ...
    FileNotFoundError: Audio file /no/such/file.wav does not exist
    """
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Audio file {path} does not exist")
    try:
        info = soundfile.info(path)
    except Exception as e:  # soundfile raises several types
        raise RuntimeError(
            f"Cannot read audio file {path}: expected audio that "
            f"libsndfile reads ({', '.join(AUDIO_EXTENSIONS[:3])}...), "
            f"got an error: {e}"
        ) from e
    if info.frames <= 0 or info.channels <= 0 or info.samplerate <= 0:
        raise ValueError(
            f"{path}: empty audio file ({info.frames} samples, "
            f"{info.channels} channels, {info.samplerate} Hz)"
        )
    return info


def check_resampling(path, rate, target):
    """Raises ``ValueError`` if ``rate`` Hz cannot sensibly be resampled.

    Rates outside 1 kHz - 768 kHz are taken for a corrupt header, and
    rate pairs whose reduced ratio needs a huge polyphase kernel (memory
    grows with the product of the reduced rates) are refused: every common
    rate (8, 11.025, 16, 22.05, 24, 32, 44.1, 48, 88.2, 96 kHz...) passes.

    Example
    -------
    >>> check_resampling("a.wav", 44100, 16000)
    >>> check_resampling("a.wav", 1308630848, 16000)
    Traceback (most recent call last):
    ...
    ValueError: a.wav: sample rate 1308630848 Hz, expected 16000 Hz...
    """
    gcd = math.gcd(int(rate), int(target))
    if not 1000 <= rate <= 768000 or (rate // gcd) * (target // gcd) > 10**6:
        raise ValueError(
            f"{path}: sample rate {rate} Hz, expected {target} Hz and "
            "cannot resample it (implausible rate or ratio: corrupt header?)"
        )


def segment_bounds(path, info, start=0, stop=None):
    """``(start, end)`` of the segment ``[start, stop)`` of an audio file.

    ``stop`` None (or ``<= start``) means the end of the file; a segment
    that is empty or does not lie inside the file is a ``ValueError``
    naming the file.

    Arguments
    ---------
    path : str
        The file (named in the error).
    info : soundfile._SoundFileInfo
        Its ``audio_info``.
    start, stop : int
        Segment in samples of the file's rate, ``stop`` exclusive.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> info = SimpleNamespace(frames=100)
    >>> segment_bounds("a.wav", info, 10, None)
    (10, 100)
    >>> segment_bounds("a.wav", info, 10, 200)
    Traceback (most recent call last):
    ...
    ValueError: a.wav: segment [10, 200) is empty or outside the file...
    """
    start = int(start)
    end = info.frames if stop is None or stop <= start else int(stop)
    if not 0 <= start < end <= info.frames:
        raise ValueError(
            f"{path}: segment [{start}, {end}) is empty or outside the file "
            f"({info.frames} samples)"
        )
    return start, end


def load_audio(
    path,
    start=0,
    stop=None,
    sample_rate=16000,
    resample=False,
    downmix=True,
    info=None,
):
    """Loads ``path[start:stop]`` as a mono float32 tensor.

    Arguments
    ---------
    path : str
        Audio file (anything libsndfile reads: wav, flac, ogg...).
    start, stop : int
        Segment in samples of the file's own rate, ``stop`` exclusive;
        ``stop`` None (or ``<= start``) reads to the end of the file.
    sample_rate : int
        The rate expected (Hz).
    resample : bool
        False: a file at another rate is an error (naming the file). True:
        it is resampled to ``sample_rate``.
    downmix : bool
        True: multi-channel audio is averaged to mono. False: an error.
    info : soundfile._SoundFileInfo, optional
        ``audio_info(path)``, when the caller has already read it.

    Returns
    -------
    torch.Tensor
        ``[samples]`` float32, finite.

    Raises ``FileNotFoundError``, ``RuntimeError`` (unreadable) or
    ``ValueError`` (empty, wrong rate or channels, segment outside the file,
    truncated, NaN or infinite samples), each naming the file.

    Example
    -------
    >>> import os, numpy, soundfile
    >>> path = os.path.join(getfixture("tmpdir"), "a.wav")
    >>> soundfile.write(path, numpy.zeros((8000, 2)), 8000)
    >>> load_audio(path, sample_rate=16000)
    Traceback (most recent call last):
    ...
    ValueError: ...a.wav: sample rate 8000 Hz, expected 16000 Hz...
    >>> load_audio(path, sample_rate=16000, resample=True).shape
    torch.Size([16000])
    """
    path = str(path)
    if info is None:
        info = audio_info(path)
    if info.samplerate != sample_rate and not resample:
        raise ValueError(
            f"{path}: sample rate {info.samplerate} Hz, expected "
            f"{sample_rate} Hz (resample the corpus, or set resample: True "
            "to resample on loading)"
        )
    if info.channels > 1 and not downmix:
        raise ValueError(
            f"{path}: {info.channels} channels, expected mono (or set "
            "downmix: True to average the channels)"
        )
    if info.samplerate != sample_rate:
        check_resampling(path, info.samplerate, sample_rate)
    start, end = segment_bounds(path, info, start, stop)
    if (end - start) * info.channels > MAX_SAMPLES:
        raise ValueError(
            f"{path}: segment [{start}, {end}) x {info.channels} channels "
            f"is longer than {MAX_SAMPLES} samples (a corrupt header, or "
            "cut the recording into segments in the manifest)"
        )
    try:
        data, _ = soundfile.read(
            path, start=start, stop=end, dtype="float32", always_2d=True
        )
    except Exception as e:  # decoding errors of a damaged file
        raise RuntimeError(f"Cannot decode audio file {path}: {e}") from e
    if data.shape[0] != end - start:
        raise ValueError(
            f"{path}: read {data.shape[0]} samples of [{start}, {end}), "
            "expected all of them (truncated or damaged file?)"
        )
    if not numpy.isfinite(data).all():
        raise ValueError(f"{path}: holds NaN or infinite samples")
    sig = torch.from_numpy(data.mean(axis=1))
    if info.samplerate != sample_rate:
        import torchaudio.functional

        sig = torchaudio.functional.resample(sig, info.samplerate, sample_rate)
    return sig


def check_audio(
    rows,
    csv_path,
    data_folder="",
    sample_rate=16000,
    resample=False,
    downmix=True,
    min_duration=0.0,
):
    """Checks every audio file a manifest points to, before any training.

    Reads only the headers (about 0.25 ms a file), and raises one error
    listing how many rows are bad and the first ones with the reason:
    missing, unreadable or empty file, wrong sample rate (unless
    ``resample``), several channels (unless ``downmix``), a segment that
    ends after the file, or shorter than ``min_duration`` seconds.

    Arguments
    ---------
    rows : list of dict
        Manifest rows as ``read_csv`` returns them.
    csv_path : str
        The manifest (named in the error).
    data_folder : str
        Folder that relative ``wav`` paths are relative to.
    sample_rate, resample, downmix
        As ``load_audio``.
    min_duration : float
        Shortest segment accepted, in seconds.

    Example
    -------
    >>> import numpy, soundfile
    >>> tmp = getfixture("tmpdir")
    >>> soundfile.write(tmp / "a.wav", numpy.zeros(4000), 16000)
    >>> rows = [dict(ID="a", wav="a.wav", start=0, stop=4000)]
    >>> check_audio(rows, "m.csv", str(tmp), min_duration=0.5)
    Traceback (most recent call last):
    ...
    ValueError: m.csv: 1 of 1 rows have bad audio...0.25 s, shorter than...
    """
    infos, problems = {}, []
    for n, row in enumerate(rows, start=2):
        path = row["wav"].replace("$data_root", data_folder)  # as from_csv
        path = resolve_path(data_folder, path)
        if path not in infos:
            try:
                infos[path] = audio_info(path)
                if resample and infos[path].samplerate != sample_rate:
                    check_resampling(path, infos[path].samplerate, sample_rate)
            except (OSError, RuntimeError, ValueError) as e:
                infos[path] = e
        info = infos[path]
        if isinstance(info, Exception):
            problem = str(info)
        elif info.samplerate != sample_rate and not resample:
            problem = (
                f"{path}: sample rate {info.samplerate} Hz, expected "
                f"{sample_rate} Hz (or set resample: True)"
            )
        elif info.channels > 1 and not downmix:
            problem = f"{path}: {info.channels} channels, expected mono"
        elif row["stop"] > info.frames:
            problem = (
                f"{path}: segment ends at sample {row['stop']}, after the "
                f"end of the file ({info.frames} samples)"
            )
        elif (row["stop"] - row["start"]) / info.samplerate < min_duration:
            seconds = (row["stop"] - row["start"]) / info.samplerate
            problem = (
                f"{path}: segment of {seconds:.3g} s, shorter than "
                f"min_sentence_len={min_duration:.3g} s"
            )
        else:
            continue
        problems.append(f"line {n} (ID {row['ID']}): {problem}")
    if problems:
        raise ValueError(
            f"{csv_path}: {len(problems)} of {len(rows)} rows have bad "
            "audio; fix or remove them (first ones: "
            + "; ".join(problems[:5])
            + ")"
        )


def crop_generator(seed, epoch, key):
    """A ``torch.Generator`` seeded from ``(seed, epoch, key)``.

    The same in every process and every run: the random crops of an
    example depend only on the seed, the epoch and the example's ID.

    Example
    -------
    >>> import torch
    >>> a = torch.rand(3, generator=crop_generator(1986, 2, "utt1"))
    >>> b = torch.rand(3, generator=crop_generator(1986, 2, "utt1"))
    >>> bool((a == b).all())
    True
    """
    text = f"{seed}:{epoch}:{key}".encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


class EpochDataset(sb.dataio.dataset.DynamicItemDataset):
    """A ``DynamicItemDataset`` that knows the current training epoch.

    ``KDBrain`` calls ``set_epoch`` at the start of every training epoch
    (before the data-loading workers start), so that per-example
    randomness (``crop_generator``) is a function of ``(seed, epoch, ID)``.
    Not for ``persistent_workers`` loaders (the workers would keep the
    epoch they started with).

    Example
    -------
    >>> from speechbrain_kd.data import EpochDataset
    >>> ds = EpochDataset({"a": {"x": 1}})
    >>> ds.set_epoch(3)
    >>> ds.epoch
    3
    """

    epoch = 0

    def set_epoch(self, epoch):
        """Sets the epoch that seeds per-example randomness."""
        self.epoch = int(epoch)


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


def crop_segment(start, stop, num_samples, generator=None):
    """Bounds of a random crop of ``num_samples`` of ``[start, stop)``.

    The offset is drawn exactly as ``random_crop`` draws it (one
    ``torch.randint`` call, and none for a segment no longer than the
    crop, which is kept whole), so that reading only ``[crop_start,
    crop_stop)`` of a file gives the samples that ``random_crop`` of the
    whole loaded segment gives with the same generator state.

    Arguments
    ---------
    start, stop : int
        The segment, ``stop`` exclusive (``stop > start``).
    num_samples : int
        Length of the crop.
    generator : torch.Generator, optional
        Source of the offset (``crop_generator``).

    Returns
    -------
    tuple of int
        ``(crop_start, crop_stop)``, inside ``[start, stop)``.

    Example
    -------
    >>> sig = torch.arange(100.0)
    >>> a, b = crop_segment(10, 90, 30, torch.Generator().manual_seed(0))
    >>> b - a
    30
    >>> old = random_crop(sig[10:90], 30, torch.Generator().manual_seed(0))
    >>> bool((sig[a:b] == old).all())
    True
    >>> crop_segment(10, 30, 30)
    (10, 30)
    """
    start, stop = int(start), int(stop)
    length = stop - start
    if length <= num_samples:
        return start, stop
    offset = torch.randint(
        0, length - num_samples + 1, (1,), generator=generator
    ).item()
    return start + offset, start + offset + num_samples


def load_random_crop(
    path,
    start,
    stop,
    num_samples,
    generator=None,
    sample_rate=16000,
    resample=False,
    downmix=True,
):
    """``random_crop(load_audio(path, start, stop), num_samples)``, reading
    only the crop.

    At the file's own rate only ``crop_segment``'s bounds are read and
    decoded (a 3-s crop of a 60-s file reads 3 s), and the result is the
    same tensor, bit for bit, as loading the whole segment and cropping
    it with the same generator. A file at another rate (``resample``) is
    loaded whole, resampled and cropped at ``sample_rate``, as before.

    Arguments
    ---------
    path : str
        Audio file.
    start, stop : int
        Segment in samples of the file's rate, ``stop`` exclusive; ``stop``
        None (or ``<= start``) is the end of the file.
    num_samples : int
        Length of the crop at ``sample_rate`` (a shorter segment is whole).
    generator : torch.Generator, optional
        Source of the offset (``crop_generator``).
    sample_rate, resample, downmix
        As ``load_audio``.

    Returns
    -------
    torch.Tensor
        ``[min(num_samples, segment length)]`` float32.

    Example
    -------
    >>> import os, numpy, soundfile
    >>> path = os.path.join(getfixture("tmpdir"), "c.wav")
    >>> soundfile.write(path, numpy.linspace(-1, 1, 16000), 16000)
    >>> g = crop_generator(0, 1, "c")
    >>> crop = load_random_crop(path, 0, 16000, 4000, g)
    >>> old = random_crop(load_audio(path), 4000, crop_generator(0, 1, "c"))
    >>> crop.shape, bool((crop == old).all())
    (torch.Size([4000]), True)
    """
    path = str(path)
    opts = dict(sample_rate=sample_rate, resample=resample, downmix=downmix)
    info = audio_info(path)
    if info.samplerate != sample_rate:  # load_audio refuses it or resamples
        sig = load_audio(path, start, stop, info=info, **opts)
        return random_crop(sig, num_samples, generator=generator)
    start, stop = segment_bounds(path, info, start, stop)
    start, stop = crop_segment(start, stop, num_samples, generator)
    return load_audio(path, start, stop, info=info, **opts)


def dataio_prep(hparams, label_encoder):
    """Builds the train / valid / test datasets of a speaker recipe.

    Training examples are random crops of ``sentence_len`` seconds of each
    manifest row (a shorter row is kept whole and padded in its batch);
    validation examples are the whole rows (held-out crops); test examples
    are whole utterances (for embedding extraction). Every manifest, the
    trial list and (``check_audio``) every audio header are checked first,
    so that bad input fails before the first training step.

    Arguments
    ---------
    hparams : dict
        Needs ``train_csv``, ``valid_csv``, ``test_csv``, ``data_folder``,
        ``sentence_len`` and ``sample_rate``. Optional: ``seed`` (of the
        crops, default 0), ``resample`` (default False: audio at another
        rate is an error), ``downmix`` (default True: multi-channel audio
        is averaged), ``min_sentence_len`` (seconds, default half of
        ``sentence_len``: shorter train/valid rows are an error),
        ``check_audio`` (default True), ``verification_file`` (its
        entries must be test IDs) and ``train_views`` (V: each training
        segment has V fixed crops, one drawn per epoch, see
        ``speechbrain_kd.views``; the training set then also provides
        ``view`` and ``cache_index``, the row of the segment in
        ``train_csv``; default None: a new crop every epoch).
    label_encoder : speechbrain.dataio.encoder.CategoricalEncoder
        Maps ``spk_id`` to class indices (must know every training speaker).

    Returns
    -------
    dict
        ``{"train", "valid", "test"}`` datasets providing ``sig`` and
        (train/valid) ``spk_id_encoded``; ``train`` is an ``EpochDataset``.
    """
    data_folder = hparams["data_folder"]
    sample_rate = hparams["sample_rate"]
    crop = int(hparams["sentence_len"] * sample_rate)
    seed = hparams.get("seed", 0)
    audio_opts = audio_options(hparams)
    min_len = hparams.get("min_sentence_len")
    if min_len is None:
        min_len = hparams["sentence_len"] / 2
    if not 0 <= min_len <= hparams["sentence_len"]:
        raise ValueError(
            f"min_sentence_len must be in [0, sentence_len="
            f"{hparams['sentence_len']}] seconds, got {min_len}"
        )

    datasets, rows = {}, {}
    for split in ("train", "valid", "test"):
        csv_path = hparams[f"{split}_csv"]
        rows[split] = read_csv(csv_path)  # columns, numbers, unique IDs
        if hparams.get("check_audio", True):
            check_audio(
                rows[split],
                csv_path,
                data_folder,
                min_duration=0.0 if split == "test" else min_len,
                **audio_opts,
            )
        cls = EpochDataset if split == "train" else None
        cls = cls or sb.dataio.dataset.DynamicItemDataset
        datasets[split] = cls.from_csv(
            csv_path, replacements={"data_root": data_folder}
        )
    if hparams.get("verification_file"):
        check_trials(hparams["verification_file"], hparams["test_csv"])

    def resolve(wav):
        return resolve_path(data_folder, wav)

    train_set = datasets["train"]

    views = hparams.get("train_views")
    index = {row["ID"]: i for i, row in enumerate(rows["train"])}

    @sb.utils.data_pipeline.takes("id")
    @sb.utils.data_pipeline.provides("view", "cache_index")
    def view_pipeline(utt_id):
        from speechbrain_kd.views import epoch_view

        yield epoch_view(seed, train_set.epoch, utt_id, views)
        yield index[utt_id]

    @sb.utils.data_pipeline.takes("id", "wav", "start", "stop")
    @sb.utils.data_pipeline.provides("sig")
    def train_audio(utt_id, wav, start, stop):
        if views:
            from speechbrain_kd.views import (
                epoch_view,
                view_generator,
                views_seed,
            )

            view = epoch_view(seed, train_set.epoch, utt_id, views)
            generator = view_generator(views_seed(hparams), view, utt_id)
        else:
            generator = crop_generator(seed, train_set.epoch, utt_id)
        return load_random_crop(
            resolve(wav), int(start), int(stop), crop, generator, **audio_opts
        )

    @sb.utils.data_pipeline.takes("wav", "start", "stop")
    @sb.utils.data_pipeline.provides("sig")
    def eval_audio(wav, start, stop):
        return load_audio(resolve(wav), int(start), int(stop), **audio_opts)

    @sb.utils.data_pipeline.takes("spk_id")
    @sb.utils.data_pipeline.provides("spk_id_encoded")
    def label_pipeline(spk_id):
        return torch.LongTensor([label_encoder.encode_label(spk_id)])

    unknown = sorted(
        {
            row["spk_id"]
            for split in ("train", "valid")
            for row in rows[split]
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
    if views:
        sb.dataio.dataset.add_dynamic_item([datasets["train"]], view_pipeline)
    for split, ds in datasets.items():
        keys = (
            ["id", "sig"]
            if split == "test"
            else ["id", "sig", "spk_id_encoded"]
        )
        if split == "train" and views:
            keys += ["view", "cache_index"]
        ds.set_output_keys(keys)
    return datasets
