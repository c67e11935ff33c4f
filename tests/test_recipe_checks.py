"""SpeechBrain's recipe conventions, checked on this project's recipes.

- ``tests/recipes/<Corpus>.csv``: one row per (script, YAML) of
  ``recipes/<Corpus>``, in the columns of SpeechBrain's ``tests/recipes``
  (``Task, ..., test_debug_flags, test_debug_checks, performance``); the
  files a row names exist, every YAML has a row, every figure of the
  ``performance`` column of MiniSpeakers is one of ``bench/RESULTS.md``.
- Recipe tests: every MiniSpeakers row's ``test_debug_flags`` is run on
  the tiny corpus (``conftest.tiny_data``, 9 classes; tiny models, one
  epoch cut to 2 batches with SpeechBrain's ``--debug --debug_batches=2
  --debug_epochs=1``, 20 trials), then its ``test_debug_checks``
  (``file_exists=[...]``, relative to the run's output folder) are
  checked, as SpeechBrain's ``tests/utils/recipe_tests.py`` does: the
  command is ``python <Script_file> <Hparam_file> <test_debug_flags>
  --device=cpu`` from the repository root, plus ``--output_folder`` unless
  the flags give one. The flags name the data and teachers by shell
  variables, set here from the fixtures (SpeechBrain's runner, which runs
  each row through a shell, can run them too with these exported):

  ``$KD_DATA``  tiny corpus (``tiny_data``)
  ``$KD_PREP``  its prepared manifests + ``test_small.csv`` /
  ``trials_small.txt`` (``test_reliability.prep``)
  ``$KD_TEACHER_ECAPA``  tiny untrained ECAPA teacher
  (``test_reliability.teacher_dir``: C=16, 16-d)
  ``$KD_TEACHER_XVECTOR``  tiny untrained x-vector teacher of
  ``teacher_xvector.yaml`` (16 / 24 channels, 16-d)
  ``$KD_WAVLM``, ``$KD_TEACHER_WAVLM``  a tiny random WavLM
  (``save_pretrained``) and the tiny untrained teacher of
  ``teacher_wavlm.yaml`` on it
  ``$KD_OUT``  the folder of the rows' output folders

  Rows that need ``transformers`` (the WavLM teacher and its Mixer student)
  are skipped, with that reason, when it is not installed (``pip install
  -e .[hf]``; ``.[dev]`` has it). ``prune_student.py`` rows reuse the
  output folder of their ``train_kd.py`` row (same flags).
- VoxCeleb rows: their YAMLs load with their ``test_debug_flags`` as
  overrides (each flag names a variable of the YAML; no data needed), and
  every row runs on the fake VoxCeleb layout of ``tests/test_voxceleb.py``
  (``$KD_VOX``: 10 LibriSpeech test-other speakers as
  ``wav/idXXXXX/<video>/<utt>.wav`` with two trial lists;
  ``$KD_VOX_TEACHER``: a tiny teacher in the layout of the hub's
  ``speechbrain/spkrec-ecapa-voxceleb``), same tiny settings (about 4 s
  a row): no VoxCeleb was run here.
- SpeechBrain's consistency check (``tests/utils/check_yaml.py``): every
  top-level variable of every recipe YAML is used: referenced in the same
  YAML (``<key>``) or read by the recipe's scripts or the package
  (``hparams["key"]``, ``hparams.get("key"``, ``hparams.key``,
  ``getattr(self.hparams, "key"``), except the keys SpeechBrain's Brain
  reads from the hparams itself (its run options, ``RunOptions``) and
  ``__``-prefixed keys (``!apply`` run at load time, e.g. ``__set_seed``).
"""

import csv
import json
import os
import re
import shlex
import string
import subprocess
import sys
from pathlib import Path

import pytest
import test_reliability as rel
import test_voxceleb as vc
from conftest import REPO

# Fixtures shared with test_reliability.py and test_voxceleb.py
prep, teacher_dir = rel.prep, rel.teacher_dir
vox, teacher = vc.vox, vc.teacher  # a hub-layout VoxCeleb teacher
pytestmark = pytest.mark.usefixtures("one_thread")

RECIPES_CSV = REPO / "tests" / "recipes"
CORPORA = ("MiniSpeakers", "VoxCeleb")
FIELDS = [
    "Task",
    "Dataset",
    "Script_file",
    "Hparam_file",
    "Data_prep_file",
    "Readme_file",
    "Result_url",
    "HF_repo",
    "test_debug_flags",
    "test_debug_checks",
    "performance",
]
RUN_OPTS = ["--device=cpu", "--noprogressbar"]
# What the rows' variables stand for when a YAML is only loaded
PLACEHOLDERS = (
    "KD_DATA",
    "KD_PREP",
    "KD_OUT",
    "KD_TEACHER_ECAPA",
    "KD_TEACHER_XVECTOR",
    "KD_TEACHER_WAVLM",
    "KD_WAVLM",
    "KD_VOX",
    "KD_VOX_TEACHER",
)
# A tiny random WavLM (as tests/test_wavlm.py)
TINY_WAVLM = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)


def read_rows(corpus):
    """``[(recipe_id, row)]`` of ``tests/recipes/<corpus>.csv``, with
    SpeechBrain's recipe ids (``<corpus>_row_<line>``)."""
    with open(RECIPES_CSV / f"{corpus}.csv", newline="") as f:
        reader = csv.DictReader(f, skipinitialspace=True)
        return [
            (f"{corpus}_row_{i + 2:02d}", row) for i, row in enumerate(reader)
        ]


def row_id(item):
    recipe_id, row = item
    script, yaml = Path(row["Script_file"]).stem, Path(row["Hparam_file"]).stem
    # Variants of one YAML (ml.yaml --ml_level=..., dyn_trkd.yaml
    # --flops_target=...): the variant in the id
    flags = row["test_debug_flags"]
    variant = re.search(r"--(?:ml_level|flops_target)=(\S+)", flags)
    suffix = f"-{variant[1]}" if variant else ""
    return f"{recipe_id}-{script}-{yaml}{suffix}"


MINI_ROWS = read_rows("MiniSpeakers")
VOX_ROWS = read_rows("VoxCeleb")


def flag_args(row, env):
    """The row's ``test_debug_flags`` as arguments, variables substituted
    (as a shell would: ``'...'`` quotes keep spaces)."""
    flags = string.Template(row["test_debug_flags"]).substitute(env)
    return shlex.split(flags)


def files_to_check(row):
    match = re.search(r"file_exists=\[(.*?)\]", row["test_debug_checks"])
    assert match, f"no file_exists=[...] in {row['test_debug_checks']!r}"
    return [name.strip() for name in match.group(1).split(",")]


def performance_check(row, out):
    """SpeechBrain's ``performance_check=[file, variable, threshold,
    epoch: N]``: the variable on the first line of ``file`` that holds
    ``epoch: N`` meets the threshold; None when the row has none."""
    match = re.search(r"performance_check=\[(.*?)\]", row["test_debug_checks"])
    if match is None:
        return None
    name, variable, threshold, epoch = (
        part.strip() for part in match.group(1).split(",")
    )
    lines = [ln for ln in (out / name).read_text().splitlines() if epoch in ln]
    assert lines, f"no line with {epoch!r} in {out / name}"
    found = re.search(
        re.escape(variable) + r"\s*:\s*([-+]?\d*\.\d+([eE][-+]?\d+)?)",
        lines[0],
    )
    assert found, f"no {variable!r} in {out / name}: {lines[0]}"
    value = float(found.group(1))
    op = re.match(r"[<>=]+", threshold).group()
    limit = float(threshold[len(op) :])
    ops = {
        "==": value == limit,
        ">=": value >= limit,
        ">": value > limit,
        "<=": value <= limit,
        "<": value < limit,
    }
    assert ops[op], f"{variable} = {value}, expected {threshold}"
    return value


def output_folder(args, default):
    for arg in args:
        if arg.startswith("--output_folder="):
            return Path(arg.split("=", 1)[1])
    return default


# -------------------------------------------------------------- the CSVs


@pytest.mark.parametrize("corpus", CORPORA)
def test_recipe_csv_format_and_files(corpus):
    with open(RECIPES_CSV / f"{corpus}.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == FIELDS
    rows = [row for _, row in read_rows(corpus)]
    folder = REPO / "recipes" / corpus
    for row in rows:
        assert row["Dataset"] == corpus
        assert row["Task"].startswith("Speaker_recognition")
        for field in ("Script_file", "Hparam_file", "Data_prep_file"):
            assert (REPO / row[field]).is_file(), row[field]
            assert Path(row[field]).is_relative_to(f"recipes/{corpus}")
        assert row["Readme_file"] == f"recipes/{corpus}/README.md"
        assert row["test_debug_flags"].strip(), row["Hparam_file"]
        assert files_to_check(row)
        if row["Script_file"].endswith(("train_kd.py", "train_teacher.py")):
            assert (
                "performance_check=[train_log.txt, train "
                in (row["test_debug_checks"])
            )
        # Variables of the flags are the documented ones
        names = re.findall(r"\$(\w+)", row["test_debug_flags"])
        assert set(names) <= set(PLACEHOLDERS), names
    # Every YAML of the recipe has a row; every script runs some YAML
    yamls = {
        f"recipes/{corpus}/hparams/{p.name}"
        for p in folder.glob("hparams/*.yaml")
    }
    assert {row["Hparam_file"] for row in rows} == yamls
    scripts = {
        f"recipes/{corpus}/{p.name}"
        for p in folder.glob("*.py")
        if not p.name.endswith("_prepare.py")
    }
    assert {row["Script_file"] for row in rows} == scripts
    # A recipe has a README (a new method's YAML need not be named there:
    # its row here and its fragment's label: say what it is)
    assert (REPO / f"recipes/{corpus}/README.md").is_file()


def test_mini_performance_figures_are_measured_ones():
    """Every figure of MiniSpeakers' performance column is in
    bench/RESULTS.md (nothing invented; rows not measured are empty)."""
    results = (REPO / "bench" / "RESULTS.md").read_text()
    measured = 0
    for _, row in MINI_ROWS:
        for item in row["performance"].split():
            key, value = item.split("=")
            assert key.startswith(("EER", "minDCF")), item
            for number in re.findall(r"\d+\.\d+", value):
                assert number in results, (row["Hparam_file"], number)
            measured += 1
    assert measured >= 20


# ------------------------------------------------ YAMLs: every key is used


def speechbrain_reads():
    """Keys SpeechBrain reads from the hparams itself: ``Brain`` takes any
    of its run options (``RunOptions``: ``debug``, ``precision``,
    ``ckpt_interval_minutes``, ``nonfinite_patience``, ...) from the
    hparams when it is not on the command line."""
    from speechbrain.utils.run_opts import RunOptions

    return set(RunOptions().as_dict())


# Variables kept although a YAML does not use them (none since the
# multi-level variants share ml.yaml / ml_ecapa.yaml)
UNIFORM_CLI = {}


def code_of(corpus):
    """The recipe's scripts and the package they call."""
    files = sorted((REPO / "recipes" / corpus).glob("*.py"))
    files += sorted((REPO / "speechbrain_kd").rglob("*.py"))
    return "\n".join(p.read_text() for p in files)


def unused_variables(yaml_file, code):
    """Top-level variables of ``yaml_file`` that neither the YAML itself
    nor ``code`` uses (as SpeechBrain's ``check_yaml.py``)."""
    text = yaml_file.read_text()
    keys = re.findall(r"^([A-Za-z_]\w*)\s*:", text, re.M)
    referenced = set(re.findall(r"<([A-Za-z_]\w*)", text))
    # the published model's definitions (speechbrain_kd.export.MODEL_KEYS)
    from speechbrain_kd.export import MODEL_KEYS

    allowed = speechbrain_reads() | set(MODEL_KEYS)
    unused = []
    for key in keys:
        if key.startswith("__") or key in allowed or key in referenced:
            continue
        k = re.escape(key)
        read = (
            rf"""\[\s*["']{k}["']\s*\]"""  # hparams["key"]
            rf"""|\.get\(\s*["']{k}["']"""  # hparams.get("key"
            rf"|hparams\.{k}\b"  # hparams.key, self.hparams.key
            rf"""|attr\(\s*[\w.]*hparams\s*,\s*["']{k}["']"""  # getattr
        )
        if not re.search(read, code):
            unused.append(key)
    return unused


YAMLS = [
    (corpus, p)
    for corpus in CORPORA
    for p in sorted((REPO / "recipes" / corpus / "hparams").glob("*.yaml"))
]


@pytest.mark.parametrize(
    "corpus, yaml_file", YAMLS, ids=[f"{c}/{p.name}" for c, p in YAMLS]
)
def test_every_yaml_variable_is_used(corpus, yaml_file):
    unused = set(unused_variables(yaml_file, code_of(corpus)))
    kept = UNIFORM_CLI.get(f"{corpus}/{yaml_file.name}", set())
    assert unused - kept == set(), (
        f"{yaml_file}: variables used by neither the YAML, "
        f"recipes/{corpus}/*.py nor speechbrain_kd: {sorted(unused - kept)}"
    )
    # An exception that is no longer needed is removed from UNIFORM_CLI
    assert kept <= unused, sorted(kept - unused)


def test_unused_variable_detection(tmp_path):
    """The check finds an unused variable and sees the ways one is used."""
    code = 'x = hparams["a"]\ny = self.hparams.b\nhparams.get("c", 1)\n'
    code += 'getattr(self.hparams, "d", None)\n'
    text = (
        "a: 1\nb: 2\nc: 3\nd: 4\ne: 5\nf: !ref <e>\nunused: 6\n"
        "nested:\n    inner: 7\n__set_seed: 8\nprecision: fp32\n"
    )
    path = tmp_path / "x.yaml"
    path.write_text(text)
    assert unused_variables(path, code) == ["f", "unused", "nested"]


# --------------------------------------------- VoxCeleb rows: YAMLs load


@pytest.mark.parametrize("item", VOX_ROWS, ids=row_id)
def test_voxceleb_row_yaml_loads_with_its_flags(item, tmp_path):
    import speechbrain as sb
    from hyperpyyaml import load_hyperpyyaml

    _, row = item
    env = {name: str(tmp_path / name.lower()) for name in PLACEHOLDERS}
    args = [
        str(REPO / row["Hparam_file"]),
        *flag_args(row, env),
        *RUN_OPTS,
        f"--output_folder={tmp_path / 'out'}",
    ]
    hparams_file, run_opts, overrides = sb.parse_arguments(args)
    assert run_opts["device"] == "cpu"
    with open(hparams_file) as f:
        hparams = load_hyperpyyaml(f, overrides)
    assert hparams["data_folder"] == env["KD_VOX"]
    assert hparams["output_folder"] == str(tmp_path / "out")


# ------------------------------------------- MiniSpeakers rows: run them


def export_untrained(yaml_name, dest, tiny_data, prep, tmp, **overrides):
    """An untrained tiny teacher of ``yaml_name``, published as a trained
    one would be (``train_teacher.py``'s folder layout)."""
    from speechbrain.dataio.encoder import CategoricalEncoder

    from speechbrain_kd.data import read_csv
    from speechbrain_kd.export import export_pretrained

    overrides = rel.tiny_overrides(tiny_data, prep, tmp, **overrides)
    hparams = rel.load_yaml(yaml_name, **overrides)
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(
        sorted({r["spk_id"] for r in read_csv(prep / "train.csv")})
    )
    export_pretrained(
        str(dest),
        str(rel.RECIPE / "hparams" / yaml_name),
        overrides,
        hparams["modules"],
        encoder,
    )
    return dest


@pytest.fixture(scope="module")
def xvector_teacher(tiny_data, prep, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("xvector_teacher")
    return export_untrained(
        "teacher_xvector.yaml",
        tmp / "pretrained",
        tiny_data,
        prep,
        tmp,
        channels=16,
        wide_channels=24,
        emb_dim=16,
    )


@pytest.fixture(scope="module")
def wavlm(tiny_data, prep, tmp_path_factory):
    """A tiny random WavLM and the untrained teacher_wavlm.yaml teacher."""
    transformers = pytest.importorskip(
        "transformers",
        reason="the WavLM rows need transformers (pip install -e .[hf])",
    )
    import torch

    tmp = tmp_path_factory.mktemp("wavlm")
    torch.manual_seed(0)
    model = transformers.WavLMModel(transformers.WavLMConfig(**TINY_WAVLM))
    model.eval().save_pretrained(str(tmp / "tiny"))
    teacher = export_untrained(
        "teacher_wavlm.yaml",
        tmp / "pretrained",
        tiny_data,
        prep,
        tmp,
        wavlm_source=str(tmp / "tiny"),
        wavlm_dim=32,
    )
    return {"KD_WAVLM": str(tmp / "tiny"), "KD_TEACHER_WAVLM": str(teacher)}


@pytest.fixture(scope="module")
def row_env(tiny_data, prep, teacher_dir, xvector_teacher, tmp_path_factory):
    return {
        "KD_DATA": str(tiny_data),
        "KD_PREP": str(prep),
        "KD_TEACHER_ECAPA": str(teacher_dir),
        "KD_TEACHER_XVECTOR": str(xvector_teacher),
        "KD_OUT": str(tmp_path_factory.mktemp("recipe_rows")),
    }


def run_row(recipe_id, row, env):
    """Runs a row as SpeechBrain's recipe_tests.py does; returns its
    output folder."""
    args = flag_args(row, env)
    out = output_folder(args, Path(env["KD_OUT"]) / recipe_id)
    cmd = [
        sys.executable,
        str(REPO / row["Script_file"]),
        str(REPO / row["Hparam_file"]),
        *args,
        *RUN_OPTS,
    ]
    if "--output_folder" not in row["test_debug_flags"]:
        cmd.append(f"--output_folder={out}")
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        env={**os.environ, **env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"{recipe_id} ({row['Script_file']} {row['Hparam_file']}) failed:\n"
        f"{proc.stderr[-4000:]}"
    )
    return out


@pytest.mark.parametrize("item", MINI_ROWS, ids=row_id)
def test_mini_row_runs_and_writes_its_files(item, row_env, request):
    recipe_id, row = item
    env = dict(row_env)
    if "WAVLM" in row["test_debug_flags"]:
        env.update(request.getfixturevalue("wavlm"))
    if row["Script_file"].endswith("prune_student.py"):
        # Prunes what the train_kd.py row of the same YAML (and flags)
        # published: run it first if it has not run.
        ((train_id, train_row),) = [
            (i, r)
            for i, r in MINI_ROWS
            if r["Hparam_file"] == row["Hparam_file"]
            and r["test_debug_flags"] == row["test_debug_flags"]
            and r["Script_file"].endswith("train_kd.py")
        ]
        out = output_folder(flag_args(row, env), None)
        if not (out / "pretrained" / "embedding_model.ckpt").is_file():
            run_row(train_id, train_row, env)
    out = run_row(recipe_id, row, env)
    missing = [f for f in files_to_check(row) if not (out / f).exists()]
    assert not missing, f"{recipe_id}: missing in {out}: {missing}"
    performance_check(row, out)
    # Scored: every model of verification.json has an EER in [0, 100]
    result = json.loads((out / "verification.json").read_text())
    for name, figures in result.items():
        assert 0 <= figures["EER"] <= 100, name


@pytest.mark.parametrize("item", VOX_ROWS, ids=row_id)
def test_voxceleb_row_runs_on_a_fake_voxceleb(
    item, vox, teacher, tmp_path_factory
):
    recipe_id, row = item
    env = {
        "KD_VOX": str(vox),
        "KD_VOX_TEACHER": str(teacher[0]),
        "KD_OUT": str(tmp_path_factory.getbasetemp() / "voxceleb_rows"),
    }
    out = run_row(recipe_id, row, env)
    missing = [f for f in files_to_check(row) if not (out / f).exists()]
    assert not missing, f"{recipe_id}: missing in {out}: {missing}"
    performance_check(row, out)
    result = json.loads((out / "verification.json").read_text())
    for name, figures in result.items():
        assert set(figures["by_list"]) == {"Vox1-O", "Vox1-H"}, name
