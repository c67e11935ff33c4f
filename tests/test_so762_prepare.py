"""speechocean762 preparation, on a tiny fixture in its layout that the
test writes itself (WAVs cut from the mini corpus): CI never needs the
downloaded corpus."""

import sys

import numpy
import pytest
import soundfile
from conftest import RECIPE

sys.path.insert(0, str(RECIPE))
from so762_prepare import prepare_so762  # noqa: E402

from speechbrain_kd.data import check_trials, read_csv, read_trials  # noqa: E402

PREP_OPTS = dict(arabic_valid_utts=2, arabic_trials=40, libri_trials=20)


def write_fixture(
    root,
    sources,
    train_spk=("0001", "0003"),
    test_spk=("1002", "1004", "1006"),
    utts=4,
):
    """WAVE/SPEAKERnnnn/<utt>.WAV and Kaldi lists for a few speakers."""
    k = 0
    for split, speakers in (("train", train_spk), ("test", test_spk)):
        (root / split).mkdir(parents=True)
        scp, u2s = [], []
        for spk in speakers:
            (root / "WAVE" / f"SPEAKER{spk}").mkdir(parents=True)
            for u in range(utts):
                data, rate = soundfile.read(str(sources[k % len(sources)]))
                k += 1
                utt = f"{spk}{u:05d}"
                rel = f"WAVE/SPEAKER{spk}/{utt}.WAV"
                soundfile.write(str(root / rel), data[: 2 * rate], rate)
                scp.append(f"{utt}\t{rel}")
                u2s.append(f"{utt} {spk}")
        (root / split / "wav.scp").write_text("\n".join(scp) + "\n")
        (root / split / "utt2spk").write_text("\n".join(u2s) + "\n")
    return root


@pytest.fixture
def so762(tiny_data, tmp_path):
    sources = sorted(tiny_data.rglob("*.flac"))[:30]
    return write_fixture(tmp_path / "so762", sources)


def test_prepare_so762(so762, tiny_data, tmp_path):
    out = tmp_path / "prep"
    prepare_so762(
        str(so762),
        str(tiny_data),
        str(out),
        valid_utts=1,
        nontarget_trials=30,
        mini_opts=PREP_OPTS,
    )
    train, valid = read_csv(out / "train.csv"), read_csv(out / "valid.csv")
    test = read_csv(out / "test.csv")
    mini_train = read_csv(out / "mini" / "train.csv")
    so_train = {r["spk_id"] for r in train if r["spk_id"].startswith("so")}
    assert so_train == {"so0001", "so0003"}
    assert len({r["spk_id"] for r in train}) == 2 + len(
        {r["spk_id"] for r in mini_train}
    )
    # one held-out utterance per speechocean762 training speaker
    so_valid = [r for r in valid if r["spk_id"].startswith("so")]
    assert sorted(r["spk_id"] for r in so_valid) == ["so0001", "so0003"]
    assert not {r["ID"] for r in so_valid} & {r["ID"] for r in train}
    # test speakers disjoint from training ones
    so_test = {r["spk_id"] for r in test if r["ID"].startswith("so762/")}
    assert so_test == {"so1002", "so1004", "so1006"}
    assert not so_test & {r["spk_id"] for r in train}
    # every target pair (3 x C(4, 2) = 18) + the non-target sample
    trials = read_trials(out / "veri_test2.txt")
    assert sum(t[0] for t in trials) == 18
    assert len(trials) - 18 == 30
    assert len({(a, b) for _, a, b in trials}) == len(trials)
    check_trials(str(out / "veri_test2.txt"), str(out / "test.csv"))
    check_trials(str(out / "mini_trials.txt"), str(out / "test.csv"))
    # same call again: kept as is
    stamp = (out / "train.csv").stat().st_mtime_ns
    prepare_so762(
        str(so762),
        str(tiny_data),
        str(out),
        valid_utts=1,
        nontarget_trials=30,
        mini_opts=PREP_OPTS,
    )
    assert (out / "train.csv").stat().st_mtime_ns == stamp
    info = soundfile.info(test[0]["wav"])
    assert info.samplerate == 16000 and numpy.isfinite(info.duration)


def test_bad_layout_is_a_clear_error(so762, tiny_data, tmp_path):
    (so762 / "test" / "utt2spk").write_text("10020000 1002 extra\n")
    with pytest.raises(ValueError, match=r"utt2spk, line 1: expected"):
        prepare_so762(
            str(so762), str(tiny_data), str(tmp_path / "p"), mini_opts=PREP_OPTS
        )
    with pytest.raises(FileNotFoundError, match="speechocean762 layout"):
        prepare_so762(
            str(tmp_path / "nothing"),
            str(tiny_data),
            str(tmp_path / "q"),
            mini_opts=PREP_OPTS,
        )
