"""bench/so762_replicates.py and bench/so762_table.py on fabricated runs."""

import json
import pathlib
import sys

import numpy
import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import so762_replicates  # noqa: E402
import so762_table  # noqa: E402

from speechbrain_kd.data import write_csv  # noqa: E402


def fake_run(folder, shift, rng, speakers=12, per=6,
             models=("student", "teacher")):  # fmt: skip
    """Score files of a run: target scores shifted up by ``shift``."""
    ids = [f"s{s}_u{u}" for s in range(speakers) for u in range(per)]
    lines = {"trials": [], "mini": []}
    for i, e in enumerate(ids):
        for t in ids[i + 1 : i + 8]:
            label = int(e.split("_")[0] == t.split("_")[0])
            score = rng.normal(shift * label, 1.0)
            lines["trials"].append(f"{e} {t} {label} {score:.6f}\n")
    lines["mini"] = lines["trials"][:200]
    (folder / "scores").mkdir(parents=True)
    for model in models:
        for name, rows in lines.items():
            (folder / "scores" / f"{model}_{name}_cosine.txt").write_text(
                "".join(rows)
            )
    return ids


def record_run(src, dest, ids, csv, num):
    """Writes the test manifest of ``ids`` to ``csv`` and records the run
    of ``src`` in ``dest`` (``verification.json``, ``replicates.json``)."""
    write_csv(
        [
            dict(ID=i, duration=1.0, wav="x.wav", start=0,
                 stop=16000, spk_id=i.split("_")[0])
            for i in ids
        ],
        csv,
    )  # fmt: skip
    dest.mkdir(parents=True)
    (dest / "verification.json").write_text("{}\n")
    so762_replicates.main(
        [str(src), "--test_csv", str(csv), "--num", str(num),
         "--out", str(dest / "replicates.json")]
    )  # fmt: skip


def test_replicates_and_table(tmp_path):
    rng = numpy.random.default_rng(0)
    runs = tmp_path / "runs"
    for row, shift in (("nokd", 1.0), ("trkd", 2.5)):
        for seed in ("1986", "1987"):
            src = tmp_path / "results" / row / seed
            ids = fake_run(src, shift, rng)
            record_run(src, runs / row / seed, ids, tmp_path / "test.csv", 50)
    record = json.loads(
        (runs / "trkd" / "1986" / "replicates.json").read_text()
    )
    student = record["models"]["student"]["trials"]
    assert len(student["EER_replicates"]) == 50
    assert student["speakers"] == 12
    assert len(student["det"]) == 60
    # the same resamples in every run: replicate b is paired
    lines, teacher = so762_table.table(so762_table.load_runs(runs))
    assert teacher is not None
    trkd = next(
        line for line in lines if line.startswith("| TRKD, triage at T")
    )
    cells = [c.strip() for c in trkd.split("|")[1:-1]]
    assert cells[1] == "2"
    paired = cells[6]
    diff, low, high = (float(x) for x in paired.replace("[", " ").replace(
        "]", " ").replace(",", " ").split()[:3])  # fmt: skip
    # better-separated scores: lower EER, interval below zero
    assert diff < 0 and low <= diff <= high < 0
    # seeds and speakers: per-seed differences, both intervals, a verdict
    seeds = so762_table.seed_pairs_table(
        so762_table.load_runs(runs), [("trkd", "nokd")], dict(so762_table.ROWS)
    )
    cells = [c.strip() for c in seeds[2].split("|")[1:-1]]
    assert cells[0] == "TRKD, triage at T - no KD" and cells[1] == "2"
    per_seed = [float(x) for x in cells[2].split(", ")]
    assert float(cells[3]) == pytest.approx(numpy.mean(per_seed), abs=0.006)
    assert cells[7] in ("yes", "not resolved")
    # the converged table: rows as data, the seed intervals, valid error
    import conv_table

    for row in ("nokd", "trkd"):
        for seed in ("1986", "1987"):
            (runs / row / seed / "train_log.txt").write_text(
                "epoch: 1, lr: 1.00e-03 - train loss: 3.0 - valid loss: 2.0, "
                "valid ErrorRate: 4.00e-01\n"
                "epoch: 2, lr: 1.00e-04 - train loss: 2.0 - valid loss: 1.0, "
                "valid ErrorRate: 2.00e-01\n"
            )
    conv = conv_table.table(so762_table.load_runs(runs))
    trkd = next(x for x in conv if x.startswith("| TRKD, paper"))
    cells = [c.strip() for c in trkd.split("|")[1:-1]]
    assert cells[1:3] == ["2", "2"] and cells[-1] == "0.200"
    assert any(x.startswith("| TRKD, paper proportions") and "no KD" in x
               and x.endswith(("| yes |", "| not resolved |"))
               for x in conv)  # fmt: skip
    head = so762_table.headline(so762_table.load_runs(runs))
    assert head[2].startswith("| teacher ECAPA")
    assert head[-1].startswith("| student, TRKD (triage at T) | 2 |")
    readme = tmp_path / "README.md"
    readme.write_text(
        "a\n<!-- so762-headline -->\nold\n<!-- /so762-headline -->\nz\n"
    )
    so762_table.splice(str(readme), "so762-headline", head)
    text = readme.read_text()
    assert "old" not in text and text.startswith(
        "a\n<!-- so762-headline -->\n|"
    )
    assert text.endswith("|\n<!-- /so762-headline -->\nz\n")
    with pytest.raises(ValueError, match="no '<!-- so762-table -->'"):
        so762_table.splice(str(readme), "so762-table", head)


def test_replicates_refuse_unknown_speakers(tmp_path):
    rng = numpy.random.default_rng(1)
    src = tmp_path / "run"
    fake_run(src, 1.0, rng)
    csv = tmp_path / "test.csv"
    write_csv(
        [dict(ID="other", duration=1.0, wav="x.wav", start=0, stop=16000,
              spk_id="z")],
        csv,
    )  # fmt: skip
    with pytest.raises(ValueError, match="enrolment IDs not in the test"):
        so762_replicates.main(
            [str(src), "--test_csv", str(csv), "--out", str(tmp_path / "o")]
        )


def test_extra_table_pairs_learned_and_fixed_widths(tmp_path):
    rng = numpy.random.default_rng(2)
    csv = tmp_path / "test.csv"
    runs = {"tab": tmp_path / "tab", "extra": tmp_path / "extra"}
    rows = (
        ("tab", "nokd", 1.0, ("student", "teacher")),
        ("tab", "trkd", 1.5, ("student",)),
        ("extra", "dyn_0.5", 3.0, ("student", "pruned")),
        ("extra", "fixed_0.5", 1.0, ("student",)),
    )
    for kind, row, shift, models in rows:
        src = tmp_path / "results" / row
        ids = fake_run(src, shift, rng, models=models)
        record_run(src, runs[kind] / row / "1986", ids, csv, 40)
    import matched_width

    dyn = runs["extra"] / "dyn_0.5" / "1986"
    learned = matched_width.fixed_macs(56, 50)  # 48 has fewer
    (dyn / "pruning.json").write_text(
        json.dumps({"macs_pruned_counted": learned, "frames": 50})
    )
    fixed = runs["extra"] / "fixed_0.5" / "1986"
    (fixed / "command.txt").write_text("train_kd.py x\n--channels=48\n")
    (fixed / "card.md").write_text(
        "| embedding model parameters | 199,000 |\n"
        "| MACs per 3 s of audio (features + embedding) | 44.5 M |\n"
    )
    lines = so762_table.extra_table(
        so762_table.load_runs(runs["tab"]),
        so762_table.load_runs(runs["extra"]),
    )
    text = "\n".join(lines)
    fixed_line = next(x for x in lines if x.startswith("| fixed width C=48"))
    assert "199,000" in fixed_line and "44.5 M" in fixed_line
    assert "learned width, FLOPs target 0.5 (pruned)" in text
    pair = next(x for x in lines if x.startswith("| learned width 0.5 ("))
    # both counted the same way, on the pruning record's frames
    fixed_macs = matched_width.fixed_macs(48, 50)
    assert f"({fixed_macs / 1e6:.1f} M, " in pair
    assert f"{100 * (fixed_macs - learned) / learned:+.1f} %)" in pair
    cells = [c.strip() for c in pair.split("|")[1:-1]]
    diff, low, high = (float(x) for x in cells[2].replace("[", " ").replace(
        "]", " ").replace(",", " ").split())  # fmt: skip
    # the pruned scores separate better than the fixed ones
    assert diff < 0 and low <= diff <= high < 0


def test_matched_width_is_nearest_counted_macs():
    import matched_width

    frames = 50
    c24 = matched_width.fixed_macs(24, frames)
    c32 = matched_width.fixed_macs(32, frames)
    assert c24 < c32
    assert matched_width.matched_width(c24 + 1, frames)[0] == 24
    assert matched_width.matched_width(c32 - 1, frames) == (32, c32)


def test_multilevel_table_pairs_each_level_with_none(tmp_path):
    rng = numpy.random.default_rng(3)
    csv = tmp_path / "test.csv"
    ml = tmp_path / "ml"
    for level, shift in (("nokd", 1.0), ("frame", 3.0), ("utt", 1.0)):
        src = tmp_path / "results" / level
        ids = fake_run(src, shift, rng)
        record_run(src, ml / level / "1986", ids, csv, 40)
    for level, shift in (("frame", 1.0), ("nokd", 1.0)):  # a narrower one
        src = tmp_path / "results" / f"c64_{level}"
        ids = fake_run(src, shift, rng)
        dest = tmp_path / "ml_c64" / level / "1986"
        record_run(src, dest, ids, csv, 40)
        (dest / "command.txt").write_text(
            "train_kd.py hparams/ml.yaml\n--channels=64\n"
            "--wide_channels=192\n--emb_dim=64\n"
        )
    src = tmp_path / "results" / "teacher"
    ids = fake_run(src, 4.0, rng, models=("teacher",))
    record_run(src, tmp_path / "teacher" / "1986", ids, csv, 40)
    (tmp_path / "teacher" / "1986" / "card.md").write_text(
        "| embedding model parameters | 4,400,000 |\n"
    )
    teacher = so762_table.load_record(str(tmp_path / "teacher" / "1986"))
    groups = so762_table.load_groups(str(tmp_path))
    assert list(groups) == ["ml", "ml_c64"]
    lines = so762_table.multilevel_table(groups, teacher)
    assert lines[2].startswith("| x-vector teacher") and "4,400,000" in lines[2]
    # table order (MULTILEVEL), not the order of the folders; each width
    # paired with its own none
    rows = [[c.strip() for c in line.split("|")[1:3]] for line in lines[3:8]]
    assert lines[8] == ""  # then the differences between levels
    assert [(m, k.split(":")[0]) for m, k in rows] == [
        ("x-vector 160-480, 128-d", "none (task loss only)"),
        ("x-vector 160-480, 128-d", "utterance"),
        ("x-vector 160-480, 128-d", "frame"),
        ("x-vector 64-192, 64-d", "none (task loss only)"),
        ("x-vector 64-192, 64-d", "frame"),
    ]
    pair = next(x for x in lines if x.startswith("| x-vector 160-480, 128-d: "))
    assert pair.startswith("| x-vector 160-480, 128-d: frame - utterance | 1 |")
    cells = [c.strip() for c in pair.split("|")[1:-1]]
    assert float(cells[2].split()[0]) < 0  # frame separates better than utt
    assert not any(x.startswith("| x-vector 64-192, 64-d: ") for x in lines)
    narrow = [c.strip() for c in lines[7].split("|")[1:-1]]
    assert narrow[6].endswith("(1)") and narrow[6] != ""
    cells = [c.strip() for c in lines[5].split("|")[1:-1]]
    diff, low, high = (float(x) for x in cells[6].replace("[", " ").replace(
        "]", " ").replace(",", " ").split()[:3])  # fmt: skip
    # frame-level scores separate better than none: interval below zero
    assert diff < 0 and low <= diff <= high < 0
    assert cells[6].endswith("(1)") and cells[7].endswith("%")
    assert lines[3].split("|")[7].strip() == ""  # none has no difference
    assert so762_table.load_record(str(tmp_path / "missing")) is None
    figures = tmp_path / "figures"
    so762_table.draw({}, None, str(figures), ml=groups,
                     ml_teacher=teacher)  # fmt: skip
    assert (figures / "so762_eer_vs_params.png").stat().st_size > 0
