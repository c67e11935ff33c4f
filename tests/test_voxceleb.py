"""The VoxCeleb recipe on a tiny VoxCeleb-layout corpus made of real audio.

LibriSpeech test-other utterances of /work/shared/data, converted to wav,
laid out as ``wav/idXXXXX/<video>/<utt>.wav``; the teacher is a tiny model
saved in the layout of the hub's ``speechbrain/spkrec-ecapa-voxceleb``
(``pretrained_path`` in hyperparams.yaml, ``label_encoder.txt``).
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from conftest import REPO

VOX = REPO / "recipes" / "VoxCeleb"
sys.path.insert(0, str(VOX))

TRAIN_SPK = [f"id0000{i}" for i in range(1, 7)]
TEST_SPK = [f"id1027{i}" for i in range(4)]
HARD_SPK = "id00006"  # in the second trial list: excluded from training


@pytest.fixture(scope="module")
def vox(data_folder, tmp_path_factory):
    """Tiny VoxCeleb folder, two trial lists, noise and RIR CSVs."""
    root = tmp_path_factory.mktemp("vox")
    src = sorted((data_folder / "librispeech-samples" / "test-other").iterdir())
    utts = {}
    for spk, folder in zip(TRAIN_SPK + TEST_SPK, src):
        n = 6 if spk in TRAIN_SPK else 4
        for i, flac in enumerate(sorted(folder.glob("*.flac"))[:n]):
            sig, rate = soundfile.read(flac, dtype="float32")
            rel = f"{spk}/{'vidA' if i < n // 2 else 'vidB'}/{i + 1:05d}.wav"
            (root / "wav" / rel).parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(root / "wav" / rel, sig[: 7 * rate], rate)
            utts.setdefault(spk, []).append(rel)
    # A silent file: both of its 3 s chunks are below amp_th
    silent = root / "wav" / "id00001" / "vidC" / "00001.wav"
    silent.parent.mkdir(parents=True)
    soundfile.write(silent, np.full(6 * 16000, 1e-5, dtype="float32"), 16000)

    def write_list(path, trials):
        path.write_text("".join(f"{lab} {e} {t}\n" for lab, e, t in trials))

    trials = []
    for a, spk in enumerate(TEST_SPK):
        trials.append((1, utts[spk][0], utts[spk][2]))
        trials.append((1, utts[spk][1], utts[spk][3]))
        other = TEST_SPK[(a + 1) % len(TEST_SPK)]
        trials.append((0, utts[spk][0], utts[other][1]))
        trials.append((0, utts[spk][3], utts[other][2]))
    write_list(root / "veri_test2.txt", trials)
    hard = [
        (1, utts[HARD_SPK][0], utts[HARD_SPK][3]),
        (0, utts[HARD_SPK][1], utts[TEST_SPK[0]][1]),
        (0, utts[HARD_SPK][2], utts[TEST_SPK[1]][0]),
        (1, utts[TEST_SPK[2]][0], utts[TEST_SPK[2]][1]),
    ]
    write_list(root / "list_test_hard2.txt", hard)
    # Augmentation data: real background noise, a synthetic decaying RIR
    noise = data_folder / "arabic-speech-commands" / "background_noise"
    with open(root / "noise.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "duration", "wav", "wav_format", "wav_opts"])
        for i, path in enumerate(sorted(noise.glob("*.flac"))):
            clip = root / f"noise{i}.wav"  # 2 s excerpts load fast
            soundfile.write(clip, soundfile.read(path, frames=32000)[0], 16000)
            w.writerow([f"n{i}", 2.0, clip, "wav", ""])
    g = np.random.default_rng(0)
    rir = g.standard_normal(4000) * np.exp(-np.arange(4000) / 600.0)
    rir[0] = 1.0
    soundfile.write(root / "rir.wav", (0.5 * rir / abs(rir).max()), 16000)
    (root / "rir.csv").write_text(
        "ID,duration,wav,wav_format,wav_opts\n"
        f"r0,0.25,{root / 'rir.wav'},wav,\n"
    )
    return root


def make_hub_teacher(folder, speakers, emb_dim=32):
    """A tiny teacher in the layout of speechbrain/spkrec-ecapa-voxceleb."""
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.dataio.encoder import CategoricalEncoder

    from speechbrain_kd.sb_private.normalization import fit_embedding_norm

    folder.mkdir(parents=True)
    text = f"""# Layout of the hub's spkrec-ecapa-voxceleb (tiny model)
n_mels: 80
pretrained_path: speechbrain/spkrec-ecapa-voxceleb
out_n_neurons: {len(speakers)}
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [16, 16, 16, 16, 48]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 16
    lin_neurons: {emb_dim}
classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: {emb_dim}
    out_neurons: !ref <out_n_neurons>
mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>
label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""
    (folder / "hyperparams.yaml").write_text(text)
    torch.manual_seed(0)
    hp = load_hyperpyyaml(text)
    for name in ("embedding_model", "classifier"):
        torch.save(hp[name].state_dict(), folder / f"{name}.ckpt")
    fit_embedding_norm(torch.randn(8, emb_dim))._save(
        folder / "mean_var_norm_emb.ckpt"
    )
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(speakers)
    encoder.save(folder / "label_encoder.txt")
    return folder, hp


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """Knows the training speakers and two more (as the hub's 7,205)."""
    folder = tmp_path_factory.mktemp("t") / "spkrec-ecapa-voxceleb"
    return make_hub_teacher(folder, TRAIN_SPK[:5] + ["id09998", "id09999"])


@pytest.fixture(scope="module")
def prepared(vox, tmp_path_factory):
    from voxceleb_prepare import prepare_voxceleb

    save = tmp_path_factory.mktemp("prep")
    paths = prepare_voxceleb(
        str(vox),
        str(save),
        str(vox / "veri_test2.txt"),
        trial_files={"Vox1-H": str(vox / "list_test_hard2.txt")},
        seed=1,
    )
    return save, paths


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def speechbrain_chunks(wav_file, seg_dur=3.0, amp_th=5e-04):
    """SpeechBrain's ``prepare_csv`` chunk loop, transcribed line by line
    (reading with soundfile instead of its audio_io)."""
    [spk_id, sess_id, utt_id] = wav_file.split("/")[-3:]
    audio_id = "--".join([spk_id, sess_id, utt_id.split(".")[0]])
    signal = torch.from_numpy(soundfile.read(wav_file, dtype="float32")[0])
    audio_duration = signal.shape[0] / 16000
    num_chunks = int(audio_duration / seg_dur)
    chunks = [
        audio_id + "_" + str(i * seg_dur) + "_" + str(i * seg_dur + seg_dur)
        for i in range(num_chunks)
    ]
    entry = []
    for chunk in chunks:
        s, e = chunk.split("_")[-2:]
        start_sample = int(float(s) * 16000)
        end_sample = int(float(e) * 16000)
        mean_sig = torch.mean(torch.abs(signal[start_sample:end_sample]))
        if mean_sig < amp_th:
            continue
        entry.append(
            [chunk, audio_duration, wav_file, start_sample, end_sample, spk_id]
        )
    return entry


def test_prepare_matches_speechbrain(vox, prepared):
    save, paths = prepared
    assert set(paths) == {
        "train.csv",
        "dev.csv",
        "enrol.csv",
        "test.csv",
        "eval.csv",
    }
    train, dev = read(save / "train.csv"), read(save / "dev.csv")
    assert list(train[0]) == [
        "ID",
        "duration",
        "wav",
        "start",
        "stop",
        "spk_id",
    ]
    # Speakers of both trial lists are excluded from train and dev
    speakers = {r["spk_id"] for r in train + dev}
    assert speakers == set(TRAIN_SPK[:5])
    # Utterance-level split: no file in both
    assert not {r["wav"] for r in dev} & {r["wav"] for r in train}
    # Same rows as SpeechBrain's chunking, file by file (the silent file
    # and files shorter than 3 s give none)
    files = [
        str(p)
        for spk in TRAIN_SPK[:5]
        for p in sorted((vox / "wav" / spk).glob("*/*.wav"))
    ]
    assert len(files) == 31
    expected = [c for f in files for c in speechbrain_chunks(f)]
    got = sorted(
        [r["ID"], r["duration"], r["wav"], r["start"], r["stop"], r["spk_id"]]
        for r in train + dev
    )
    expected = sorted(
        [e[0], f"{e[1]:.4f}", e[2], str(e[3]), str(e[4]), e[5]]
        for e in expected
    )
    assert got == expected
    assert not any("vidC" in r["ID"] for r in train + dev)  # amp_th
    assert train[0]["ID"].count("--") == 2 and train[0]["ID"].endswith(".0")
    assert len(train) > 5 * len(dev) > 0
    # Enrol / test of the main list; eval = every utterance of both lists
    main = (vox / "veri_test2.txt").read_text().split()
    enrol_ids = {r["ID"] for r in read(save / "enrol.csv")}
    assert enrol_ids == {e[:-4] for e in main[1::3]}
    eval_rows = read(save / "eval.csv")
    assert {r["ID"] for r in eval_rows} >= enrol_ids
    assert any(r["spk_id"] == HARD_SPK for r in eval_rows)
    row = eval_rows[0]
    assert (
        int(row["start"]) == 0
        and int(row["stop"]) == soundfile.info(row["wav"]).frames
    )


def test_prepare_skips_and_redoes(vox, prepared):
    from voxceleb_prepare import prepare_voxceleb

    save, _ = prepared
    stamp = os.path.getmtime(save / "train.csv")
    args = (str(vox), str(save), str(vox / "veri_test2.txt"))
    kwargs = dict(
        trial_files={"Vox1-H": str(vox / "list_test_hard2.txt")}, seed=1
    )
    prepare_voxceleb(*args, **kwargs)
    assert os.path.getmtime(save / "train.csv") == stamp
    other = save.parent / "prep_other"
    prepare_voxceleb(str(vox), str(other), args[2], random_segment=True)
    rows = read(other / "train.csv") + read(other / "dev.csv")
    assert HARD_SPK in {r["spk_id"] for r in rows}  # only Vox1-O excluded
    assert all(int(r["start"]) == 0 for r in rows)
    with pytest.raises(FileNotFoundError, match="wav/"):
        prepare_voxceleb(str(vox / "wav"), str(other / "x"), args[2])
    bad = save.parent / "bad_list.txt"
    bad.write_text("1 id10270/vidA/00001.wav id10299/none/00001.wav\n")
    with pytest.raises(FileNotFoundError, match="id10299/none/00001"):
        prepare_voxceleb(str(vox), str(other / "y"), str(bad))


def test_hub_layout_teacher_loads(teacher, tmp_path):
    from speechbrain_kd.teachers import FrozenTeacher

    folder, hp = teacher
    model = FrozenTeacher.from_pretrained(str(folder), str(tmp_path / "t"))
    assert model.num_classes == 7
    assert model.label_encoder.encode_label("id00003") == 2
    wavs = torch.randn(2, 16000)
    hp["embedding_model"].eval()
    feats = hp["mean_var_norm"](hp["compute_features"](wavs), torch.ones(2))
    ref = hp["embedding_model"](feats, torch.ones(2))
    torch.testing.assert_close(model.encode(wavs), ref)


TINY = [
    "--channels=16",
    "--emb_dim=32",
    "--teacher_emb_dim=32",
    "--batch_size=8",
    "--sentence_len=1.5",
    "--num_workers=0",
    "--number_of_epochs=1",
    "--noprogressbar",
    "--prep_opts={num_workers: 0, seed: 1}",
    "--cohort_opts={num_utts: 24, top_k: 6}",
    "--test_dataloader_opts={batch_size: 4}",
]


def test_kd_end_to_end(vox, teacher, tmp_path):
    from speechbrain.inference.speaker import EncoderClassifier

    out = tmp_path / "trkd"
    proc = subprocess.run(
        [
            sys.executable,
            "train_kd.py",
            "hparams/trkd.yaml",
            f"--data_folder={vox}",
            f"--verification_file={vox}/veri_test2.txt",
            f"--trial_lists={{Vox1-H: {vox}/list_test_hard2.txt}}",
            f"--output_folder={out}",
            f"--prep_folder={tmp_path}/prep",
            f"--teacher_source={teacher[0]}",
            "--out_n_neurons=7",
            f"--noise_csv={vox}/noise.csv",
            f"--rir_csv={vox}/rir.csv",
            "--save_scores=True",
            *TINY,
        ],
        cwd=VOX,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = (out / "train_log.txt").read_text()
    # one epoch: its last step is past 60/150 of the run, tau is 0.05
    assert "train trkd" in log and "tau: 5.00e-02" in log
    result = json.loads((out / "verification.json").read_text())
    assert set(result) == {"teacher", "student"}
    for r in result.values():
        assert r["trial_list"] == "Vox1-O" and r["scoring"] == "cosine"
        assert set(r["by_list"]) == {"Vox1-O", "Vox1-H"}
        for by_method in r["by_list"].values():
            assert set(by_method) == {"cosine", "s-norm", "as-norm"}
            for m in by_method.values():
                assert 0 <= m["EER"] <= 100 and m["target_trials"] >= 2
    assert (
        result["student"]["by_list"]["Vox1-O"]["cosine"]["target_trials"] == 8
    )
    scores = (out / "scores" / "student_Vox1-O_s-norm.txt").read_text()
    lines = [line.split() for line in scores.splitlines()]
    assert len(lines) == 16 and lines[0][2] in ("0", "1")
    cosine = (out / "scores" / "student_Vox1-O_cosine.txt").read_text()
    assert cosine != scores  # normalised scores differ from raw cosine
    student = EncoderClassifier.from_hparams(
        source=str(out / "pretrained"), savedir=str(tmp_path / "load")
    )
    assert student.hparams.label_encoder.lab2ind["id09999"] == 6
    assert student.encode_batch(torch.randn(1, 16000)).shape == (1, 1, 32)


def test_unknown_speakers(vox, prepared, tmp_path):
    """Error by default; embedding-only distillation by option."""
    import speechbrain as sb
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.dataio.dataloader import make_dataloader

    from speechbrain_kd.data import prepare_datasets
    from speechbrain_kd.teachers import load_teacher, student_label_encoder
    from speechbrain_kd.training import make_brain

    folder, _ = make_hub_teacher(tmp_path / "small", ["id00001", "id00002"])
    save, _ = prepared
    overrides = {
        "data_folder": str(vox),
        "verification_file": str(vox / "veri_test2.txt"),
        "output_folder": str(tmp_path / "out"),
        "prep_folder": str(save),
        "teacher_source": str(folder),
        "channels": 16,
        "emb_dim": 16,
        "teacher_emb_dim": 32,
        "out_n_neurons": 5,
        "noise_csv": str(vox / "noise.csv"),
        "rir_csv": str(vox / "rir.csv"),
    }
    with open(VOX / "hparams" / "dkd.yaml") as f:
        hparams = load_hyperpyyaml(f, overrides)
    os.makedirs(hparams["save_folder"], exist_ok=True)
    teacher = load_teacher(hparams, {})
    with pytest.raises(ValueError, match="unknown_speakers=embedding_only"):
        student_label_encoder(hparams, teacher)
    hparams["unknown_speakers"] = "embedding_only"
    encoder = student_label_encoder(hparams, teacher)
    assert len(encoder) == 5 and list(hparams["distill_terms"]) == ["embedding"]
    datasets = prepare_datasets(hparams, encoder)
    brain = make_brain(hparams, {"noprogressbar": True}, teacher)
    assert [t.name for t in brain.terms] == ["embedding"]
    # A 16-d student learns the 32-d teacher embedding through a head
    assert "distill_embedding" in brain.modules
    brain.on_fit_start()
    brain.make_dataloader(datasets["train"], sb.Stage.TRAIN)
    brain.on_stage_start(sb.Stage.TRAIN, epoch=1)
    batch = next(iter(make_dataloader(datasets["train"], batch_size=2)))
    preds = brain.compute_forward(batch, sb.Stage.TRAIN)
    # noise, reverb, frequency drop, chunk drop + the clean batch
    assert preds["classifier_out"].shape[0] == 10
    assert batch.spk_id_encoded.data.shape[0] == 10
    assert "teacher_logits" not in preds and "teacher_embedding" in preds
    loss = brain.compute_objectives(preds, batch, sb.Stage.TRAIN)
    assert torch.isfinite(loss) and 0 <= brain._batch_terms["embedding"] <= 2


METHODS = ("nokd", "kd", "dkd", "trkd")


def load_tree(name):
    import ruamel.yaml

    with open(VOX / "hparams" / f"{name}.yaml") as f:
        return ruamel.yaml.YAML().load(f)


def without_method(tree):
    """YAML lines of everything but the method's own keys and comments."""
    import copy
    import io

    import ruamel.yaml

    tree = copy.deepcopy(tree)
    for key in (
        "distill_terms",
        "tau_schedule",
        "partition_T",
        "kd_warmup",
        "method",
        "output_folder",
    ):
        tree.pop(key, None)
    out = io.StringIO()
    ruamel.yaml.YAML().dump(tree, out)
    return [
        line.split(" #")[0]
        for line in out.getvalue().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_methods_differ_only_in_distillation():
    base = without_method(load_tree("nokd"))
    for name in METHODS:
        tree = load_tree(name)
        assert without_method(tree) == base, name
        assert f"results/{name}/" in str(tree["output_folder"])
        assert bool(tree["distill_terms"]) == (name != "nokd")


def test_paper_settings():
    from hyperpyyaml import load_hyperpyyaml

    def hp(name):
        with open(VOX / "hparams" / f"{name}.yaml") as f:
            return load_hyperpyyaml(
                f, {"data_folder": "unused", "verification_file": "unused"}
            )

    trkd, teacher = hp("trkd"), hp("teacher_ecapa1024")
    loss = trkd["compute_cost"].loss_fn
    assert (loss.scale, loss.margin) == (32.0, 0.2)
    assert teacher["compute_cost"].loss_fn.scale == 32.0
    fn = trkd["distill_terms"]["trkd"]["fn"]
    assert (fn.lambda_mass, fn.lambda_conf, fn.T) == (1.0, 8.0, 4.0)
    assert fn.partition_T is None  # the triage at T
    tau, total = trkd["tau_schedule"], 150 * 1000  # the paper's proportions
    assert [tau.at_step(s, total) for s in (0, 10_000)] == [1.0, 1.0]
    assert tau.at_step(60_000, total) == 0.05 == tau.at_step(total - 1, total)
    assert 0.05 < tau.at_step(35_000, total) < 0.1  # gamma 0.001: fast drop
    warm = trkd["kd_warmup"]
    assert warm.at_step(5600, 80_000) == pytest.approx(0.8)  # epoch 5.6 of 7
    assert trkd["n_mels"] == 80 and trkd["sentence_len"] == 3.0
    assert trkd["channels"] == 400 and teacher["channels"] == 1024
    assert trkd["wav_augment"] is None  # no noise / RIR CSV given
    sizes = [
        sum(p.numel() for p in h["embedding_model"].parameters())
        for h in (trkd, teacher)
    ]
    assert sizes[0] < 0.25 * sizes[1]


def test_verify_script_all_backends(vox, teacher, tmp_path):
    """verify.py scores a hub-layout folder with every back-end."""
    methods = ["cosine", "z-norm", "t-norm", "s-norm", "as-norm", "plda"]
    proc = subprocess.run(
        [
            sys.executable,
            "verify.py",
            "hparams/verify.yaml",
            f"--data_folder={vox}",
            f"--verification_file={vox}/veri_test2.txt",
            f"--trial_lists={{Vox1-H: {vox}/list_test_hard2.txt}}",
            f"--model_source={teacher[0]}",
            f"--output_folder={tmp_path}/out",
            f"--prep_folder={tmp_path}/prep",
            "--prep_opts={num_workers: 0}",
            "--cohort_opts={num_utts: 30, top_k: 6}",
            "--plda_opts={num_utts: 100, rank_f: 8}",
            f"--scoring=[{', '.join(methods)}]",
            "--test_dataloader_opts={batch_size: 4, num_workers: 0}",
            "--noprogressbar",
        ],
        cwd=VOX,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((tmp_path / "out" / "verification.json").read_text())
    by_list = result["model"]["by_list"]
    assert list(by_list) == ["Vox1-O", "Vox1-H"]
    for figures in by_list.values():
        assert list(figures) == methods
    assert result["model"]["EER"] == by_list["Vox1-O"]["cosine"]["EER"]
