"""Manifests, trial lists, audio loading and the mini-corpus preparation."""

import csv
import sys

import pytest
import torch
from conftest import RECIPE

from speechbrain_kd.data import (
    crop_generator,
    crop_segment,
    load_audio,
    load_random_crop,
    make_trials,
    manifest_dataset,
    missing_trial_ids,
    random_crop,
    read_csv,
    read_trials,
    resolve_path,
    trial_id,
    view_generator,
    write_csv,
    write_trials,
)

sys.path.insert(0, str(RECIPE))
from mini_prepare import prepare_mini  # noqa: E402


def rows(n_spk, n_utt):
    return [
        dict(ID=f"s{s}/u{u}", wav=f"s{s}/u{u}.wav", spk_id=f"s{s}")
        for s in range(n_spk)
        for u in range(n_utt)
    ]


def test_make_trials_balanced_unique_deterministic():
    trials = make_trials(rows(5, 6), 60, seed=3)
    assert len(trials) == 60
    assert sum(t[0] for t in trials) == 30
    pairs = [tuple(sorted(t[1:])) for t in trials]
    assert len(set(pairs)) == 60
    for label, e, t in trials:
        assert (e.split("/")[0] == t.split("/")[0]) == bool(label)
        assert e != t
    assert trials == make_trials(rows(5, 6), 60, seed=3)
    assert trials != make_trials(rows(5, 6), 60, seed=4)


def test_make_trials_too_many():
    with pytest.raises(ValueError, match="target trials"):
        make_trials(rows(2, 2), 10, seed=0)


def test_trial_file_round_trip(tmp_path):
    trials = make_trials(rows(3, 4), 10, seed=0)
    path = tmp_path / "veri_test2.txt"
    write_trials(trials, path)
    back = read_trials(path)
    assert [(lab, e + ".wav", t + ".wav") for lab, e, t in back] == trials


@pytest.mark.parametrize(
    "text", ["1 a.wav\n", "2 a.wav b.wav\n", "yes a b\n", "\n"]
)
def test_bad_trial_lines(tmp_path, text):
    path = tmp_path / "t.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=str(path)):
        read_trials(path)


def test_trial_entries_without_spaces(tmp_path):
    with pytest.raises(ValueError, match="whitespace"):
        write_trials([(1, "zoom in/a.wav", "b.wav")], tmp_path / "t.txt")


def test_csv_round_trip_and_errors(tmp_path):
    row = dict(
        ID="a", duration=1.5, wav="x.flac", start=0, stop=24000, spk_id="s"
    )
    path = tmp_path / "m.csv"
    write_csv([row], path)
    assert read_csv(path)[0]["stop"] == 24000
    with pytest.raises(ValueError, match="lacks"):
        write_csv([dict(ID="a")], tmp_path / "bad.csv")
    (tmp_path / "cols.csv").write_text("ID,wav\na,b\n")
    with pytest.raises(ValueError, match="missing"):
        read_csv(tmp_path / "cols.csv")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_csv(tmp_path / "nope.csv")


def test_load_audio(tmp_path):
    import soundfile

    sig = (torch.randn(16000, 2) * 0.1).numpy()
    soundfile.write(tmp_path / "st.wav", sig, 16000)
    mono = load_audio(str(tmp_path / "st.wav"), 100, 1100)
    assert mono.shape == (1000,)
    torch.testing.assert_close(
        mono, torch.from_numpy(sig[100:1100].mean(1)).float(), atol=1e-4, rtol=0
    )
    soundfile.write(tmp_path / "8k.wav", sig[:, 0], 8000)
    with pytest.raises(ValueError, match="8k.wav.*8000"):
        load_audio(str(tmp_path / "8k.wav"))
    (tmp_path / "junk.wav").write_bytes(b"not audio")
    with pytest.raises(RuntimeError, match="junk.wav"):
        load_audio(str(tmp_path / "junk.wav"))


def test_prepare_missing_data_folder(tmp_path):
    missing = tmp_path / "no_such_folder"
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        prepare_mini(str(missing), str(tmp_path / "prep"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty.*lacks"):
        prepare_mini(str(tmp_path / "empty"), str(tmp_path / "prep"))
    assert not (tmp_path / "prep").exists()


def test_prepare_tiny(tiny_data, tmp_path):
    prep = tmp_path / "prep"
    paths = prepare_mini(
        str(tiny_data),
        str(prep),
        arabic_valid_utts=2,
        arabic_trials=40,
        libri_trials=20,
    )
    train, valid, test = (
        read_csv(paths[k]) for k in ("train_csv", "valid_csv", "test_csv")
    )
    train_spk = {r["spk_id"] for r in train}
    assert len(train_spk) == 9  # 6 LibriSpeech + 3 Arabic
    assert {r["spk_id"] for r in valid} <= train_spk
    test_spk = {r["spk_id"] for r in test}
    assert len(test_spk) == 6 and not test_spk & train_spk
    ids = {r["ID"] for r in train + valid}
    assert len(ids) == len(train) + len(valid)
    # LibriSpeech segments of one utterance do not overlap the held-out end
    for v in (r for r in valid if r["spk_id"].startswith("ls")):
        same = [r for r in train if r["wav"] == v["wav"]]
        assert same and max(r["stop"] for r in same) <= v["start"]
    trials = read_trials(paths["trials"])
    assert len(trials) == 60 and sum(t[0] for t in trials) == 30
    spk = {r["ID"]: r["spk_id"] for r in test}
    for label, e, t in trials:
        assert (spk[e] == spk[t]) == bool(label)
        assert spk[e][:2] == spk[t][:2]  # never mixes the two corpora
    # Prepared once: a second call with the same options skips
    stamp = (prep / "train.csv").stat().st_mtime_ns
    prepare_mini(
        str(tiny_data),
        str(prep),
        arabic_valid_utts=2,
        arabic_trials=40,
        libri_trials=20,
    )
    assert (prep / "train.csv").stat().st_mtime_ns == stamp
    with open(prep / "test.csv", newline="") as f:
        assert next(csv.reader(f)) == [
            "ID",
            "duration",
            "wav",
            "start",
            "stop",
            "spk_id",
        ]


def old_train_crop(path, start, stop, num_samples, generator, **opts):
    """The training crop as it was: load the whole segment, then crop."""
    sig = load_audio(path, start, stop, **opts)
    return random_crop(sig, num_samples, generator=generator)


@pytest.mark.parametrize(
    "fmt,channels", [("WAV", 1), ("FLAC", 1), ("WAV", 2), ("FLAC", 2)]
)
def test_crop_read_is_the_old_crop(tmp_path, fmt, channels):
    """Reading only the crop gives, bit for bit, the old load-whole-
    segment-then-crop tensor, for many IDs and epochs, a segment shorter
    than the crop (whole) and a stop <= start (to the end of the file)."""
    import numpy
    import soundfile

    rng = numpy.random.default_rng(0)
    path = str(tmp_path / f"a.{fmt.lower()}")
    audio = 0.3 * rng.standard_normal((5 * 16000 + 77, channels))
    soundfile.write(path, audio, 16000, format=fmt, subtype="PCM_16")
    segments = [
        (0, 5 * 16000 + 77),  # whole file
        (1234, 4 * 16000),  # inside it
        (16000, 16000 + 10000),  # shorter than the crop: whole
        (0, 16000 * 2),  # crop = segment
        (70000, 0),  # stop <= start: to the end of the file (shorter)
        (100, 0),  # stop <= start: to the end of the file
    ]
    crop = 2 * 16000
    for start, stop in segments:
        for epoch in range(4):
            for utt in ("u1", "u2"):
                new = load_random_crop(
                    path, start, stop, crop, crop_generator(7, epoch, utt)
                )
                old = old_train_crop(
                    path, start, stop, crop, crop_generator(7, epoch, utt)
                )
                assert new.dtype == old.dtype and new.shape == old.shape
                assert torch.equal(new, old), (start, stop, epoch, utt)
    short = load_random_crop(path, 16000, 26000, crop)
    assert short.shape == (10000,)
    with pytest.raises(ValueError, match=r"a\..*segment \[0, 99999\)"):
        load_random_crop(path, 0, 99999, crop)  # ends after the file


def test_crop_of_resampled_file(tmp_path):
    """At another rate (resample), the segment is resampled and then
    cropped at the target rate, as before; without resample, an error."""
    import numpy
    import soundfile

    rng = numpy.random.default_rng(1)
    path = str(tmp_path / "8k.wav")
    soundfile.write(path, 0.3 * rng.standard_normal(8000 * 4), 8000)
    opts = dict(sample_rate=16000, resample=True)
    for start, stop, length in [(0, 32000, 16000), (4000, 8000, 8000)]:
        for epoch in range(3):
            new = load_random_crop(
                path, start, stop, 16000, crop_generator(0, epoch, "x"), **opts
            )
            old = old_train_crop(
                path, start, stop, 16000, crop_generator(0, epoch, "x"), **opts
            )
            assert new.shape == (length,) and torch.equal(new, old)
    # the crop comes from the resampled signal of the segment
    full = load_audio(path, 8000, 32000, **opts)
    crop = load_random_crop(path, 8000, 32000, 16000, None, **opts)
    windows = full.unfold(0, 16000, 1)  # every 16000-sample window
    assert (windows == crop).all(dim=1).any()
    with pytest.raises(ValueError, match="8k.wav.*8000 Hz"):
        load_random_crop(path, 0, 32000, 16000, sample_rate=16000)


def test_crop_segment_draws_like_random_crop():
    sig = torch.arange(1000.0)
    for seed in range(50):
        start, stop = seed * 7, 1000 - seed * 3
        a, b = crop_segment(
            start, stop, 100, torch.Generator().manual_seed(seed)
        )
        old = random_crop(
            sig[start:stop], 100, torch.Generator().manual_seed(seed)
        )
        assert start <= a < b <= stop and torch.equal(sig[a:b], old)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert crop_segment(5, 50, 100, g) == (5, 50)
    assert torch.equal(g.get_state(), state)  # no draw for a short segment


def test_manifest_dataset_resamples_and_downmixes(tmp_path):
    """Cohort / PLDA rows (``manifest_dataset``) read audio through the same
    pipeline as the test set: another rate loads with ``resample: True``
    (stereo downmixed) and is a clear error without it."""
    import numpy
    import soundfile

    t = numpy.arange(8000) / 8000
    stereo = numpy.stack([numpy.sin(2 * numpy.pi * 200 * t)] * 2, axis=1)
    soundfile.write(tmp_path / "a.wav", 0.5 * stereo, 8000)
    rows = [
        dict(ID="a", duration=1.0, wav="a.wav", start=0, stop=8000, spk_id="s")
    ]
    hparams = {"data_folder": str(tmp_path), "sample_rate": 16000}
    item = manifest_dataset(rows, dict(hparams, resample=True))[0]
    assert item["id"] == "a" and item["spk_id"] == "s"
    expected = load_audio(tmp_path / "a.wav", 0, 8000, resample=True)
    assert item["sig"].shape == (16000,) and torch.equal(item["sig"], expected)
    with pytest.raises(ValueError, match="a.wav: sample rate 8000 Hz"):
        manifest_dataset(rows, hparams)[0]
    with pytest.raises(ValueError, match="2 channels, expected mono"):
        manifest_dataset(rows, dict(hparams, resample=True, downmix=False))[0]


def test_crop_generator_is_deterministic():
    a = torch.rand(3, generator=crop_generator(1986, 2, "utt1"))
    b = torch.rand(3, generator=crop_generator(1986, 2, "utt1"))
    assert torch.equal(a, b)


def test_view_generator_is_per_view():
    a = torch.rand(2, generator=view_generator(1986, 3, "utt1"))
    b = torch.rand(2, generator=view_generator(1986, 3, "utt1"))
    c = torch.rand(2, generator=view_generator(1986, 4, "utt1"))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_resolve_path():
    assert resolve_path("/data", "a/b.wav") == "/data/a/b.wav"
    assert resolve_path("/data", "/x.wav") == "/x.wav"


def test_trial_id_drops_audio_extensions_only():
    assert trial_id("id10270/x6uYqmx31kE/00001.wav") == (
        "id10270/x6uYqmx31kE/00001"
    )
    assert trial_id("spk1/utt.2") == "spk1/utt.2"


def test_missing_trial_ids():
    trials = [(1, "a", "b"), (0, "c", "a")]
    assert missing_trial_ids(trials, {"a": 0, "b": 1}) == ["c"]
