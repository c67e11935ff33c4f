"""Tests of the espeak-ng synthetic speaker corpus (tiny corpora, ~10 s)."""

import json
import os
import sys

import numpy as np
import pytest
import soundfile

from speechbrain_kd import synthetic
from speechbrain_kd.data import CSV_FIELDS, read_csv, read_trials

TINY = dict(
    num_train_speakers=6,
    num_test_speakers=4,
    utts_per_speaker=3,
    valid_utts_per_speaker=1,
    num_trials=20,
    seed=7,
)


def _flacs(folder):
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".flac"):
                path = os.path.join(root, name)
                found[os.path.relpath(path, folder)] = path
    return found


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """The tiny corpus, generated twice: 2 workers, and 1 worker with the
    manifests in a separate folder."""
    pytest.importorskip("espeakng_loader")
    a = str(tmp_path_factory.mktemp("corpus_a"))
    b = str(tmp_path_factory.mktemp("corpus_b"))
    b_save = os.path.join(b, "manifests")
    paths_a = synthetic.prepare_synthetic(a, num_workers=2, **TINY)
    paths_b = synthetic.prepare_synthetic(
        b, save_folder=b_save, num_workers=1, **TINY
    )
    return dict(a=a, b=b, b_save=b_save, paths_a=paths_a, paths_b=paths_b)


def _load(corpora, split):
    return read_csv(corpora["paths_a"][f"{split}_csv"])


def test_deterministic_across_folders_and_workers(corpora):
    files_a, files_b = _flacs(corpora["a"]), _flacs(corpora["b"])
    assert len(files_a) == 30
    assert sorted(files_a) == sorted(files_b)
    for rel, path in files_a.items():
        with open(path, "rb") as fa, open(files_b[rel], "rb") as fb:
            assert fa.read() == fb.read(), rel
    for key in ("train_csv", "valid_csv", "test_csv", "trials"):
        with open(corpora["paths_a"][key]) as fa:
            with open(corpora["paths_b"][key]) as fb:
                assert fa.read() == fb.read(), key
    assert os.path.dirname(corpora["paths_b"]["trials"]) == corpora["b_save"]


def test_counts_and_audio_format(corpora):
    train, valid, test = (_load(corpora, s) for s in ("train", "valid", "test"))
    assert (len(train), len(valid), len(test)) == (12, 6, 12)
    for row in train + valid + test:
        path = os.path.join(corpora["a"], row["wav"])
        info = soundfile.info(path)
        assert (info.samplerate, info.channels) == (16000, 1)
        assert info.format == "FLAC" and info.subtype == "PCM_16"
        assert row["start"] == 0 and row["stop"] == info.frames
        assert row["duration"] == pytest.approx(info.frames / 16000, abs=1e-4)
        assert 1.0 < row["duration"] < 20.0


def test_manifest_columns_ids_and_trials(corpora):
    with open(corpora["paths_a"]["train_csv"]) as f:
        assert f.readline().strip().split(",") == CSV_FIELDS
    test = _load(corpora, "test")
    for row in _load(corpora, "train") + test:
        assert not os.path.isabs(row["wav"])
        assert row["wav"] == row["ID"] + ".flac"
        assert row["ID"].startswith(f"wav/{row['spk_id']}/utt")
    trials = read_trials(corpora["paths_a"]["trials"])
    assert len(trials) == TINY["num_trials"]
    labels = [label for label, _, _ in trials]
    assert set(labels) == {0, 1} and sum(labels) == len(labels) // 2
    spk_of = {row["ID"]: row["spk_id"] for row in test}
    for label, enrol, tst in trials:
        assert enrol in spk_of and tst in spk_of and enrol != tst
        assert label == int(spk_of[enrol] == spk_of[tst])
    with open(corpora["paths_a"]["trials"]) as f:
        assert f.readline().split()[1].endswith(".flac")


def test_train_valid_test_speakers(corpora):
    train, valid, test = (_load(corpora, s) for s in ("train", "valid", "test"))
    train_spk = {r["spk_id"] for r in train}
    assert len(train_spk) == TINY["num_train_speakers"]
    assert {r["spk_id"] for r in valid} == train_spk
    assert not {r["ID"] for r in valid} & {r["ID"] for r in train}
    test_spk = {r["spk_id"] for r in test}
    assert len(test_spk) == TINY["num_test_speakers"]
    assert not train_spk & test_spk


def test_speaker_parameters_are_distinct(corpora):
    with open(os.path.join(corpora["a"], synthetic.SPEAKERS_FILE)) as f:
        speakers = json.load(f)
    assert len(speakers) == 10
    keys = {synthetic.speaker_key(s) for s in speakers}
    assert len(keys) == len(speakers)
    assert len({tuple(s["eq"]) for s in speakers}) == len(speakers)
    many = synthetic.sample_speakers(1500, seed=3)
    assert len({synthetic.speaker_key(s) for s in many}) == 1500
    assert len({s["spk_id"] for s in many}) == 1500
    assert len({s["variant"] for s in many}) > 90
    assert len({s["accent"] for s in many}) == len(synthetic.ACCENTS)
    # A larger corpus extends a smaller one with the same seed.
    assert many[:10] == synthetic.sample_speakers(10, seed=3)


def _ltas(path):
    """Long-term average log spectrum in 24 bands (a crude speaker print)."""
    audio, _ = soundfile.read(path, dtype="float64")
    frames = np.lib.stride_tricks.sliding_window_view(audio, 512)[::256]
    power = np.abs(np.fft.rfft(frames * np.hanning(512), axis=1)) ** 2
    energy = power.sum(axis=1)
    power = power[energy > np.percentile(energy, 50)]  # speech frames
    bands = np.array_split(power.mean(axis=0)[1:], 24)
    feats = np.log10(np.array([b.mean() for b in bands]) + 1e-12)
    return feats - feats.mean()  # level-independent


def test_utterances_differ_within_and_between_speakers(corpora):
    rows = _load(corpora, "train") + _load(corpora, "valid")
    rows += _load(corpora, "test")
    by_spk = {}
    for row in rows:
        path = os.path.join(corpora["a"], row["wav"])
        by_spk.setdefault(row["spk_id"], []).append(path)
    # Two utterances of a speaker are never the same audio.
    for paths in by_spk.values():
        signals = [soundfile.read(p)[0] for p in paths]
        for i in range(len(signals)):
            for j in range(i + 1, len(signals)):
                si, sj = signals[i], signals[j]
                assert len(si) != len(sj) or not np.allclose(si, sj)
    # Speakers are told apart by their average spectrum far above chance
    # (1 in 10): leave-one-out nearest speaker centroid.
    feats = {s: [_ltas(p) for p in paths] for s, paths in by_spk.items()}
    correct = total = 0
    for spk, utts in feats.items():
        for i, x in enumerate(utts):
            centroids = {
                s: np.mean(
                    [u for k, u in enumerate(us) if s != spk or k != i], 0
                )
                for s, us in feats.items()
            }
            guess = min(
                centroids, key=lambda s: np.sum((centroids[s] - x) ** 2)
            )
            correct += guess == spk
            total += 1
    assert correct / total > 0.5, f"{correct}/{total}"
    # ... and the spread between speakers exceeds the spread within them.
    within = np.mean([np.var(u, axis=0).sum() for u in feats.values()])
    between = np.var([np.mean(u, axis=0) for u in feats.values()], 0).sum()
    assert between > within


def _broken_engine():
    raise AssertionError("espeak must not be loaded for a prepared corpus")


def test_skip_when_prepared_and_regenerate_when_not(tmp_path, monkeypatch):
    pytest.importorskip("espeakng_loader")
    sizes = dict(TINY, num_train_speakers=2, num_test_speakers=2, num_trials=8)
    folder = str(tmp_path)
    paths = synthetic.prepare_synthetic(folder, num_workers=1, **sizes)
    files = _flacs(folder)
    opts = os.path.join(folder, synthetic.OPTS_FILE)
    stamps = {p: os.stat(p).st_mtime_ns for p in [opts, *files.values()]}

    with monkeypatch.context() as m:
        m.setattr(synthetic.prepare, "get_engine", _broken_engine)
        assert synthetic.prepare_synthetic(folder, **sizes) == paths
    assert stamps == {p: os.stat(p).st_mtime_ns for p in stamps}
    assert not [n for n in os.listdir(folder) if n.startswith(".tmp")]

    # A missing audio file or other settings: generated again.
    victim = sorted(files.values())[0]
    with open(victim, "rb") as f:
        content = f.read()
    os.remove(victim)
    synthetic.prepare_synthetic(folder, num_workers=1, **sizes)
    with open(victim, "rb") as f:
        assert f.read() == content
    with pytest.raises(AssertionError, match="must not be loaded"):
        with monkeypatch.context() as m:
            m.setattr(synthetic.prepare, "get_engine", _broken_engine)
            synthetic.prepare_synthetic(folder, **dict(sizes, num_trials=6))


def test_clear_error_without_espeak(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic.espeak, "_ENGINE", None)
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    with pytest.raises(RuntimeError, match="pip install espeakng-loader"):
        synthetic.prepare_synthetic(str(tmp_path), **TINY)
    assert not os.path.exists(os.path.join(tmp_path, synthetic.OPTS_FILE))

    def bad_location():
        return str(tmp_path / "libespeak-ng.so"), str(tmp_path)

    monkeypatch.setattr(synthetic.espeak, "_locate_espeak", bad_location)
    with pytest.raises(RuntimeError, match="pip install espeakng-loader") as e:
        synthetic.prepare_synthetic(str(tmp_path), **TINY)
    assert "libespeak-ng.so" in str(e.value)


def test_bad_sizes_fail_before_generation(tmp_path):
    with pytest.raises(ValueError, match="num_trials"):
        synthetic.prepare_synthetic(str(tmp_path), **dict(TINY, num_trials=500))
    with pytest.raises(ValueError, match="valid_utts_per_speaker"):
        synthetic.prepare_synthetic(
            str(tmp_path), **dict(TINY, valid_utts_per_speaker=3)
        )
    assert os.listdir(tmp_path) == []
