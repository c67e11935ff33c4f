"""End to end on a tiny subset of the real data: teacher, TRKD, scoring,
export and reload; plus the Brain's handling of the frozen teacher."""

import json
import os

import pytest
import torch
from conftest import RECIPE, TINY_RUN, run_recipe

from speechbrain_kd.records import figures, read_record

TINY = ["--emb_dim=32", *TINY_RUN]


@pytest.fixture(scope="module")
def teacher_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    run_recipe(
        "train_teacher.py",
        "teacher_ecapa.yaml",
        f"--data_folder={tiny_data}",
        f"--output_folder={out}",
        f"--prep_folder={out}/prep",
        "--number_of_epochs=1",
        "--channels=32",
        *TINY,
    )
    return out


def test_teacher_published(teacher_run):
    folder = teacher_run / "pretrained"
    for name in (
        "hyperparams.yaml",
        "embedding_model.ckpt",
        "classifier.ckpt",
        "label_encoder.ckpt",
        "mean_var_norm_emb.ckpt",
        "README.md",
    ):
        assert (folder / name).is_file(), name
    result = json.loads((teacher_run / "verification.json").read_text())
    assert 0 <= result["teacher"]["EER"] <= 100
    assert result["teacher"]["target_trials"] == 30


def test_trkd_student_end_to_end(teacher_run, tiny_data, tmp_path):
    from speechbrain.inference.speaker import EncoderClassifier

    out = tmp_path / "trkd"
    run_recipe(
        "train_kd.py",
        "trkd.yaml",
        f"--data_folder={tiny_data}",
        f"--output_folder={out}",
        f"--prep_folder={teacher_run}/prep",
        f"--teacher_source={teacher_run}/pretrained",
        "--number_of_epochs=2",
        "--tau_schedule={start_at: 0.25, end_at: 0.75}",
        "--channels=16",
        *TINY,
    )
    log = (out / "train_log.txt").read_text()
    # tau at the end of epoch 1 (step 7 of 16) and of epoch 2 (0.05)
    assert "tau: 1.20e-01" in log and "tau: 5.00e-02" in log
    assert "train trkd" in log
    result = json.loads((out / "verification.json").read_text())
    assert set(result) == {"teacher", "student"}
    for r in result.values():
        assert 0 <= r["EER"] <= 100 and 0 <= r["minDCF"] <= 0.01
    record = read_record(str(out))  # the run's record, for the tables
    assert record["label"].startswith("TRKD") and record["seed"] == 1986
    assert record["epochs"] == 2 and len(record["history"]) == 2
    assert record["history"][-1]["tau"] == 0.05
    assert record["command"][0] == "train_kd.py"
    for model in ("teacher", "student"):
        fig = figures(record, model=model)
        assert fig["EER"] == pytest.approx(result[model]["EER"], abs=1e-4)
        assert len(fig["EER_replicates"]) == 1000
    assert record["macs_3s"] > 0
    student = EncoderClassifier.from_hparams(
        source=str(out / "pretrained"), savedir=str(tmp_path / "load")
    )
    teacher = EncoderClassifier.from_hparams(
        source=str(teacher_run / "pretrained"), savedir=str(tmp_path / "t")
    )
    assert student.hparams.label_encoder.lab2ind == (
        teacher.hparams.label_encoder.lab2ind
    )
    emb = student.encode_batch(torch.randn(2, 16000))
    assert emb.shape == (2, 1, 32)
    assert record["parameters"] == sum(
        p.numel() for p in student.mods.embedding_model.parameters()
    )
    # A student is a few times smaller than its teacher
    n_s = sum(p.numel() for p in student.mods.embedding_model.parameters())
    n_t = sum(p.numel() for p in teacher.mods.embedding_model.parameters())
    assert n_s < n_t


def test_bad_data_folder(tmp_path):
    proc = run_recipe(
        "train_teacher.py",
        "teacher_ecapa.yaml",
        f"--data_folder={tmp_path}/missing_corpus",
        f"--output_folder={tmp_path}/out",
        *TINY,
        check=False,
    )
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "missing_corpus" in output and "data_folder" in output
    assert not (tmp_path / "out" / "save").exists() or not any(
        (tmp_path / "out" / "save").iterdir()
    )


def test_class_count_mismatch(teacher_run, tiny_data, tmp_path):
    proc = run_recipe(
        "train_teacher.py",
        "teacher_ecapa.yaml",
        f"--data_folder={tiny_data}",
        f"--output_folder={tmp_path}",
        f"--prep_folder={teacher_run}/prep",
        *[a for a in TINY if not a.startswith("--out_n_neurons")],
        "--out_n_neurons=5",
        check=False,
    )
    assert proc.returncode != 0
    assert "--out_n_neurons=9" in proc.stdout + proc.stderr


def test_kdbrain_keeps_teacher_frozen(teacher_run, tiny_data, tmp_path):
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.dataio.dataloader import make_dataloader

    from speechbrain_kd.brain import KDBrain
    from speechbrain_kd.data import dataio_prep
    from speechbrain_kd.teachers import FrozenTeacher

    teacher = FrozenTeacher.from_pretrained(
        str(teacher_run / "pretrained"), savedir=str(tmp_path / "t")
    )
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    with open(RECIPE / "hparams" / "trkd.yaml") as f:
        hparams = load_hyperpyyaml(
            f,
            {
                "data_folder": str(tiny_data),
                "output_folder": str(tmp_path / "out"),
                "prep_folder": str(teacher_run / "prep"),
                "channels": 16,
                "emb_dim": 32,
                "out_n_neurons": 9,
            },
        )
    datasets = dataio_prep(hparams, teacher.label_encoder)
    brain = KDBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts={"noprogressbar": True},
        teacher=teacher,
    )
    brain.on_fit_start()
    loader = brain.make_dataloader(datasets["train"], sb_stage("TRAIN"))
    brain.on_stage_start(sb_stage("TRAIN"), epoch=1)
    batch = next(iter(make_dataloader(datasets["train"], batch_size=4)))
    assert brain.train_steps_per_epoch == len(loader)
    brain.modules.train()
    brain.fit_batch(batch)
    assert not teacher.training and not teacher.encoder.mods.training
    opt_params = {
        id(p) for g in brain.optimizer.param_groups for p in g["params"]
    }
    assert not opt_params & {id(p) for p in teacher.parameters()}
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert brain.loss_stats["trkd"] > 0 and brain.tau == 1.0
    assert os.path.isdir(tmp_path / "out")


def sb_stage(name):
    import speechbrain as sb

    return getattr(sb.Stage, name)


def test_synthetic_corpus_end_to_end(tmp_path):
    """The same scripts on the espeak-ng corpus, without ../shared."""
    pytest.importorskip("espeakng_loader")
    common = [
        "--corpus=synthetic",
        f"--data_folder={tmp_path}/synthetic",
        "--synthetic_opts={num_train_speakers: 8, num_test_speakers: 4, "
        "utts_per_speaker: 5, valid_utts_per_speaker: 1, num_trials: 20}",
        "--number_of_epochs=1",
        *[a for a in TINY if not a.startswith(("--out_n", "--prep_opts"))],
        "--out_n_neurons=8",
    ]
    run_recipe(
        "train_teacher.py",
        "teacher_ecapa.yaml",
        f"--output_folder={tmp_path}/teacher",
        f"--prep_folder={tmp_path}/prep",
        "--channels=24",
        *common,
    )
    run_recipe(
        "train_kd.py",
        "trkd.yaml",
        f"--output_folder={tmp_path}/trkd",
        f"--prep_folder={tmp_path}/prep",
        f"--teacher_source={tmp_path}/teacher/pretrained",
        "--channels=16",
        *common,
    )
    result = json.loads((tmp_path / "trkd" / "verification.json").read_text())
    assert result["student"]["target_trials"] == 10
    assert (tmp_path / "trkd" / "pretrained" / "embedding_model.ckpt").exists()
