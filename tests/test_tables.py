"""bench/tables.py and bench/plots.py on the committed run records: the
marked blocks of bench/RESULTS.md and README.md are what the records give,
and the plotted DET curves are monotone (run as scripts, as a user does)."""

import json
import pathlib
import subprocess
import sys

import numpy

ROOT = pathlib.Path(__file__).resolve().parents[1]


def bench(script, *args):
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_committed_blocks_are_what_the_records_give():
    done = bench("tables.py", "--check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_check_fails_when_a_block_differs(tmp_path):
    results = tmp_path / "RESULTS.md"
    text = (ROOT / "bench" / "RESULTS.md").read_text()
    results.write_text(text.replace("| no KD | 3 | 4 |", "| no KD | 2 | 4 |"))
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    args = ["--results_md", str(results), "--readme", str(readme)]
    done = bench("tables.py", "--check", *args)
    assert done.returncode == 1 and "RESULTS.md" in done.stdout
    assert bench("tables.py", *args).returncode == 0
    assert results.read_text() == text  # written back from the records
    readme.write_text("no block here\n")
    done = bench("tables.py", *args)
    assert done.returncode != 0 and "so762-headline" in done.stderr


def test_plotted_det_curves_are_monotone(tmp_path):
    out = tmp_path / "det.json"
    done = bench("plots.py", "--dump_det", str(out))
    assert done.returncode == 0, done.stderr
    curves = json.loads(out.read_text())
    assert len(curves) >= 7
    for name, (x, y) in curves.items():
        x, y = numpy.array(x), numpy.array(y)
        assert (numpy.diff(x) >= 0).all(), name  # FAR ascending
        assert (numpy.diff(y) <= 0).all(), name  # FRR never increases
        assert x[0] < x[-1] and y[0] > y[-1], name


def test_a_new_method_is_reported_without_a_rows_entry(tmp_path):
    """A record under conv/ that rows.yaml does not name gets a row and a
    difference to no KD, labelled by its method fragment's label."""
    import shutil

    runs = tmp_path / "so762"
    shutil.copytree(ROOT / "bench" / "runs" / "so762", runs)
    record = json.loads((runs / "conv/nokd/1986/record.json").read_text())
    record["label"] = "a new method"
    (runs / "conv/new/1986").mkdir(parents=True)
    (runs / "conv/new/1986/record.json").write_text(json.dumps(record))
    results, readme = tmp_path / "RESULTS.md", tmp_path / "README.md"
    shutil.copy(ROOT / "bench" / "RESULTS.md", results)
    shutil.copy(ROOT / "README.md", readme)
    done = bench("tables.py", "--runs", str(runs), "--results_md",
                 str(results), "--readme", str(readme))  # fmt: skip
    assert done.returncode == 0, done.stderr
    block = results.read_text().split("<!-- so762-converged -->")[1]
    assert "\n| a new method | 1 | 12 |" in block
    assert "\n| a new method - no KD | 1 | +0.00 | +0.00 |" in block
    names = [line.split(" | ")[0] for line in block.splitlines()]
    differences = [n for n in names if " - " in n]
    assert len(differences) == len(set(differences))  # each pair once
