"""speechbrain_kd.records: record.json of a run, seed statistics and paired
differences, by hand values and on fabricated score files."""

import json

import numpy
import pytest

from speechbrain_kd.records import (
    figures,
    load_records,
    make_record,
    paired_difference,
    read_record,
    score_figures,
    seed_summary,
    write_record,
)
from speechbrain_kd.scoring.bootstrap import eer_of


def fake_scores(folder, shift, seed, speakers=12, per=6):
    """Score files of one run (student, trials, cosine): target scores
    shifted up by ``shift``; returns ``{utterance: speaker}``."""
    rng = numpy.random.default_rng(seed)
    ids = [f"s{s}_u{u}" for s in range(speakers) for u in range(per)]
    rows = []
    for i, e in enumerate(ids):
        for t in ids[i + 1 : i + 8]:
            label = int(e.split("_")[0] == t.split("_")[0])
            rows.append(f"{e} {t} {label} {rng.normal(shift * label):.6f}\n")
    folder.mkdir(parents=True)
    (folder / "student_trials_cosine.txt").write_text("".join(rows))
    return {i: i.split("_")[0] for i in ids}


def test_score_figures_all_trials_and_resamples(tmp_path):
    speaker_of = fake_scores(tmp_path / "scores", 2.0, 0)
    path = tmp_path / "scores" / "student_trials_cosine.txt"
    fig = score_figures(str(path), speaker_of, num=50)
    rows = [line.split() for line in path.read_text().splitlines()]
    labels = numpy.array([int(r[2]) for r in rows])
    scores = numpy.array([float(r[3]) for r in rows])
    assert fig["EER"] == round(eer_of(scores, labels), 4)
    assert fig["trials"] == len(rows) and fig["speakers"] == 12
    assert len(fig["EER_replicates"]) == 50
    far = [p[0] for p in fig["det"]]
    frr = [p[1] for p in fig["det"]]
    assert far == sorted(far) and frr == sorted(frr, reverse=True)
    with pytest.raises(ValueError, match="not in the test manifest"):
        score_figures(str(path), {"s0_u0": "s0"}, num=5)


def test_record_round_trip(tmp_path):
    speaker_of = fake_scores(tmp_path / "run" / "scores", 2.0, 0)
    record = make_record(
        str(tmp_path / "run" / "scores"),
        speaker_of,
        models={"student"},
        label="KD",
        seed=7,
        command=["train_kd.py", "hparams/kd.yaml"],
    )
    write_record(str(tmp_path / "rows" / "kd" / "7"), record)
    assert read_record(str(tmp_path / "rows" / "kd" / "7")) == json.loads(
        json.dumps(record)
    )
    runs = load_records(str(tmp_path / "rows" / "kd"))
    assert list(runs) == [7] and runs[7]["label"] == "KD"
    assert (
        figures(runs[7])["EER"]
        == record["models"]["student"]["trials"]["cosine"]["EER"]
    )
    assert "wall_seconds" in record
    with pytest.raises(KeyError, match="teacher/trials/cosine"):
        figures(record, model="teacher")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "record.json").write_text("{")
    with pytest.raises(ValueError, match="bad/record.json"):
        read_record(str(tmp_path / "bad"))
    assert read_record(str(tmp_path)) is None


def hand(eer, reps):
    fig = {"EER": eer, "EER_replicates": reps}
    return {"models": {"student": {"trials": {"cosine": fig}}}}


def test_paired_difference_by_hand():
    a = {1: hand(5.0, [5.0, 6.0, None]), 2: hand(6.0, [6.0, 7.0, 7.0]),
         3: hand(5.5, [5.5, 6.5, 6.5])}  # fmt: skip
    b = {1: hand(4.0, [4.0, 5.0, 5.0]), 2: hand(4.0, [4.0, 5.0, 5.0]),
         3: hand(4.5, [4.0, 5.0, 5.0])}  # fmt: skip
    d = paired_difference(a, b)
    assert d["seeds"] == [1, 2, 3]
    assert d["per_seed"] == [1.0, 2.0, 1.0]
    assert d["mean"] == pytest.approx(4 / 3)
    # Replicate 3 has a one-class resample (None) and is dropped; the
    # others' seed means are (1 + 2 + 1.5) / 3 both times
    assert d["speakers"] == pytest.approx((1.5, 1.5))
    assert d["t"][0] < d["mean"] < d["t"][1]
    assert d["resolved"] is (d["t"][0] > 0 and d["speakers_seeds"][0] > 0)
    one = paired_difference({1: a[1]}, {1: b[1]})
    assert one["t"] is None and one["resolved"] is False
    with pytest.raises(ValueError, match="share no seed"):
        paired_difference({1: a[1]}, {2: b[2]})
    assert seed_summary(a) == (3, 5.5, 0.5)
    assert seed_summary({1: a[1]}) == (1, 5.0, None)
