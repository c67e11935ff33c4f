"""Audio reading with clear errors: headers, segments, resampling guards.

``load_audio`` reads ``[start, stop)`` of a file as a mono float32 tensor;
``check_audio`` checks every file a manifest points to (headers only)
before any training step. Audio at another rate than ``sample_rate`` is an
error unless ``resample`` is True (then it is resampled on loading;
``start``/``stop`` stay in samples of the file's own rate); multi-channel
audio is averaged to mono (``downmix``; False makes it an error); empty,
unreadable, truncated audio and audio holding NaN or infinite samples are
errors. ``audio_options`` reads these options from a recipe YAML.
"""

import math
import os

import numpy
import soundfile
import torch

from speechbrain_kd.data.manifests import AUDIO_EXTENSIONS, resolve_path

# Longest segment load_audio reads (samples x channels, 1 GiB of float32:
# 4.6 hours of 16-kHz mono), so that a corrupt header claiming billions of
# samples is an error rather than an out-of-memory kill
MAX_SAMPLES = 2**28


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

    ``start`` and ``stop`` are in samples of the file's rate (``info``: its
    ``audio_info``); ``stop`` None or ``<= start`` is the end of the file.
    Raises ``ValueError``, naming ``path``, if the segment is empty or not
    inside the file.

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
