"""Reliability: bad input, interruption (kill -9 and resume), non-finite
losses, atomic checkpoints and exports, class and hyperparameter checks.

The tiny runs use a teacher exported untrained (random weights: what is
tested is the machinery, not the accuracy) and the ``tiny_data`` corpus.
"""

import functools
import json
import math
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy
import pytest
import soundfile
import torch
from conftest import RECIPE

from speechbrain_kd.data import (
    EpochDataset,
    crop_generator,
    load_audio,
    make_trials,
    random_crop,
    read_csv,
    read_trials,
    write_csv,
    write_trials,
)

sys.path.insert(0, str(RECIPE))
from mini_prepare import prepare_mini  # noqa: E402

PREP_OPTS = dict(arabic_valid_utts=2, arabic_trials=40, libri_trials=20)
TINY = [
    "--channels=16",
    "--emb_dim=16",
    "--batch_size=8",
    "--noprogressbar",
    "--out_n_neurons=9",
    "--prep_opts={arabic_valid_utts: 2, arabic_trials: 40, libri_trials: 20}",
]
# 2 epochs of 8 steps, tau 1 then 0.05, lr annealed, a checkpoint every 3
# steps (intra-epoch) and at the end of every epoch
RESUME_ARGS = [
    "--number_of_epochs=2",
    "--tau_schedule={start_at: 0.25, end_at: 0.75}",
    "--ckpt_interval_steps=3",
    "--num_workers=1",  # crops drawn in a worker process
]


# ---------------------------------------------------------------- fixtures


pytestmark = pytest.mark.usefixtures("one_thread")


# Fixtures and the reference run are shared with test_ddp.py: they are
# built once per session, in folders of the session's base temp folder.


@pytest.fixture(scope="module")
def prep(tiny_data, tmp_path_factory):
    """The tiny corpus, plus a smaller test set (1-s Arabic utterances
    only) and its trial list, to keep the runs' scoring short."""
    folder = tmp_path_factory.getbasetemp() / "reliability_prep"
    if not (folder / "trials_small.txt").exists():
        prepare_mini(str(tiny_data), str(folder), **PREP_OPTS)
        rows = [
            r for r in read_csv(folder / "test.csv") if r["spk_id"][:2] != "ls"
        ]
        write_csv(rows, folder / "test_small.csv")
        write_trials(make_trials(rows, 20, seed=1), folder / "trials.tmp")
        os.replace(folder / "trials.tmp", folder / "trials_small.txt")
    return folder


def load_yaml(name, **overrides):
    from hyperpyyaml import load_hyperpyyaml

    with open(RECIPE / "hparams" / name) as f:
        return load_hyperpyyaml(f, overrides)


def tiny_overrides(tiny_data, prep, out, **extra):
    overrides = dict(
        data_folder=str(tiny_data),
        output_folder=str(out),
        prep_folder=str(prep),
        channels=16,
        emb_dim=16,
        out_n_neurons=9,
    )
    overrides.update(extra)
    return overrides


def export_teacher(
    dest, tiny_data, prep, tmp, label_encoder=None, n=9, check=None
):
    """An untrained tiny ECAPA teacher, published like a trained one
    (``check``: as ``export_pretrained``'s)."""
    from speechbrain.dataio.encoder import CategoricalEncoder

    from speechbrain_kd.export import export_pretrained

    overrides = tiny_overrides(tiny_data, prep, tmp, out_n_neurons=n)
    hparams = load_yaml("teacher_ecapa.yaml", **overrides)
    if label_encoder is None:
        label_encoder = CategoricalEncoder()
        label_encoder.update_from_iterable(
            sorted({r["spk_id"] for r in read_csv(prep / "train.csv")})
        )
    export_pretrained(
        str(dest),
        str(RECIPE / "hparams" / "teacher_ecapa.yaml"),
        overrides,
        hparams["modules"],
        label_encoder,
        check=check,
    )
    return dest


@pytest.fixture(scope="module")
def teacher_dir(tiny_data, prep, tmp_path_factory):
    tmp = tmp_path_factory.getbasetemp() / "reliability_teacher"
    if not (tmp / "pretrained").is_dir():
        export_teacher(tmp / "pretrained", tiny_data, prep, tmp)
    return tmp / "pretrained"


def reference_run(tmp_path_factory, tiny_data, prep, teacher_dir):
    """An uninterrupted single-process run of RESUME_ARGS (once)."""
    ref = tmp_path_factory.getbasetemp() / "reliability_reference"
    if not (ref / "done").exists():
        shutil.rmtree(ref, ignore_errors=True)
        proc = run_kd(ref, tiny_data, prep, teacher_dir, *RESUME_ARGS)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (ref / "done").touch()
    return ref


def torchrun(nproc):
    """The command prefix of a ``torchrun --nproc_per_node=nproc`` run."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
    ]


def run_kd(out, tiny_data, prep, teacher_dir, *args, wait=True, nproc=1):
    """The tiny TRKD run; ``nproc`` > 1: under torchrun (gloo)."""
    launch = [sys.executable] if nproc == 1 else torchrun(nproc)
    given = {a.split("=")[0] for a in args}  # these replace TINY's
    if nproc > 1:
        args = (*args, "--distributed_backend=gloo")
    cmd = [
        *launch,
        "train_kd.py",
        "hparams/trkd.yaml",
        f"--data_folder={tiny_data}",
        f"--output_folder={out}",
        f"--prep_folder={prep}",
        f"--teacher_source={teacher_dir}",
        f"--test_csv={prep}/test_small.csv",
        f"--verification_file={prep}/trials_small.txt",
        *[t for t in TINY if t.split("=")[0] not in given],
        *args,
    ]
    if not wait:
        out.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            cmd,
            cwd=RECIPE,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
            stdout=subprocess.DEVNULL,
            stderr=open(out.parent / f"{out.name}.stderr", "w"),
            start_new_session=True,  # its own process group: killpg
        )
    return run_command(cmd)


def run_command(cmd, timeout=300):
    """Runs ``cmd`` in the recipe folder, in its own process group, killed
    as a whole (data-loading workers, torchrun's processes) on timeout."""
    proc = subprocess.Popen(
        cmd,
        cwd=RECIPE,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_9(proc)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def checkpoints(out):
    save = out / "save"
    if not save.is_dir():
        return []
    return sorted(p for p in save.iterdir() if p.name.startswith("CKPT"))


def ckpt_state(ckpt):
    """(epoch, intra-epoch?) of a checkpoint folder, None if incomplete."""
    try:
        meta = (ckpt / "CKPT.yaml").read_text()
        epoch = int((ckpt / "counter.ckpt").read_text())
    except (OSError, ValueError):
        return None
    return epoch, "intra_epoch" in meta


def log_lines(out):
    return (out / "train_log.txt").read_text().splitlines()


def descendants(pid):
    """The PIDs of every process below ``pid`` (from /proc)."""
    children = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_9(proc):
    """``kill -9`` of ``proc``, its process group and every process below
    it (torchrun starts its workers in sessions of their own)."""
    pids = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_at_intra_epoch_checkpoint(proc, out):
    """``kill -9`` of the run ``proc`` (its whole process group) once an
    intra-epoch checkpoint of epoch 2 exists; checks the run was killed
    there (only epoch 1 logged, nothing scored) and returns that
    checkpoint."""
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        states = [ckpt_state(c) for c in checkpoints(out)]
        if (2, True) in states:  # an intra-epoch checkpoint of epoch 2
            kill_9(proc)  # workers too
            break
        time.sleep(0.01)
    else:  # never reached the kill point: stop it, the assert below fails
        if proc.poll() is None:
            kill_9(proc)
    stderr = out.parent / f"{out.name}.stderr"
    assert proc.wait(timeout=60) == -signal.SIGKILL, stderr.read_text()[-3000:]
    # the last one written: the highest (epoch, intra-epoch) state (names
    # and mtimes of checkpoints of the same second need not be ordered)
    latest = max(checkpoints(out), key=lambda c: ckpt_state(c) or (0, False))
    assert ckpt_state(latest) == (2, True)
    assert len(log_lines(out)) == 1
    assert not (out / "verification.json").exists()
    return latest


# ------------------------------------------------------------ interruption


def test_kill_9_then_resume_gives_same_results(
    tiny_data, prep, teacher_dir, tmp_path, tmp_path_factory
):
    """kill -9 during epoch 2 (after an intra-epoch checkpoint), run the
    same command again: same log lines (losses of every term, tau, lr,
    error rate) and the same verification.json as an uninterrupted run."""
    ref = reference_run(tmp_path_factory, tiny_data, prep, teacher_dir)
    out = tmp_path / "killed"
    proc = run_kd(out, tiny_data, prep, teacher_dir, *RESUME_ARGS, wait=False)
    latest = kill_at_intra_epoch_checkpoint(proc, out)

    proc = run_kd(out, tiny_data, prep, teacher_dir, *RESUME_ARGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert f"Loading a checkpoint from {latest}" in log
    assert log_lines(out) == log_lines(ref)
    assert "tau: 5.00e-02" in log_lines(out)[1]
    ref_result = json.loads((ref / "verification.json").read_text())
    result = json.loads((out / "verification.json").read_text())
    assert result == ref_result
    for name in ("embedding_model", "classifier"):
        a = torch.load(ref / "pretrained" / f"{name}.ckpt")
        b = torch.load(out / "pretrained" / f"{name}.ckpt")
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


# ----------------------------------------------------------- in-process


def build(tiny_data, prep, teacher_dir, out, terms=None, run_opts=None, **kw):
    """Datasets and a KDBrain for trkd.yaml on the tiny corpus."""
    from speechbrain_kd.brain import KDBrain
    from speechbrain_kd.data import dataio_prep
    from speechbrain_kd.teachers import FrozenTeacher

    overrides = tiny_overrides(
        tiny_data,
        prep,
        out,
        teacher_source=str(teacher_dir),
        test_csv=str(prep / "test_small.csv"),
        verification_file=str(prep / "trials_small.txt"),
        batch_size=8,
        num_workers=0,
    )
    overrides.update(kw)
    hparams = load_yaml("trkd.yaml", **overrides)
    if terms is not None:
        hparams["distill_terms"] = terms
    teacher = FrozenTeacher.from_pretrained(
        str(teacher_dir),
        savedir=str(out / f"teacher_{teacher_dir.parent.name}"),
    )
    datasets = dataio_prep(hparams, teacher.label_encoder)
    brain = KDBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=dict(noprogressbar=True, **(run_opts or {})),
        checkpointer=hparams["checkpointer"],
        teacher=teacher,
    )
    return brain, datasets, hparams


def fit(brain, datasets, hparams):
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )


def params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def stage(name):
    import speechbrain as sb

    return getattr(sb.Stage, name)


def test_tau_is_set_every_step_from_the_run_progress(
    tiny_data, prep, teacher_dir, tmp_path
):
    """With trkd.yaml's curriculum in fractions of the steps, the tau a
    term sees at every step of a 2-epoch run (8 steps an epoch) is the
    curriculum's at that step of 16, by hand: 1 until step 4 (0.25), 0.05
    from step 12 (0.75); the log line shows the epoch's last tau."""
    from speechbrain_kd.schedules import TauCurriculum

    taus = []

    def record(student_logits, tau):
        taus.append(tau)
        return student_logits.sum() * 0

    brain, datasets, hparams = build(
        tiny_data,
        prep,
        teacher_dir,
        tmp_path,
        terms={"record": {"fn": record, "weight": 1.0}},
        number_of_epochs=2,
        tau_schedule={"start_at": 0.25, "end_at": 0.75},
    )
    fit(brain, datasets, hparams)
    want = TauCurriculum(start_at=0.25, end_at=0.75)
    assert taus == [want.at_step(s, 16) for s in range(16)]
    assert taus[:5] == [1.0] * 5 and taus[12:] == [0.05] * 4
    g, r = 0.001, 0.5  # step 8: halfway
    assert taus[8] == pytest.approx(0.05 + 0.95 * (g**r - g) / (1 - g))
    assert len(set(taus[4:13])) == 9  # a new value every step
    lines = log_lines(tmp_path)
    assert "tau: 5.00e-02" in lines[1]
    assert f"tau: {taus[7]:.2e}" in lines[0]


def test_nonfinite_loss_stops_naming_step_and_batch(
    tiny_data, prep, teacher_dir, tmp_path
):
    """A NaN loss in epoch 2 (patience 0): ValueError naming the epoch, the
    step and the batch IDs; no update, no checkpoint after epoch 1."""
    calls = []

    def poison(student_logits):
        calls.append(1)
        bad = len(calls) == 8 + 2  # 8 steps an epoch: epoch 2, step 2
        return student_logits.sum() * 0 + (float("nan") if bad else 0.0)

    brain, datasets, hparams = build(
        tiny_data,
        prep,
        teacher_dir,
        tmp_path,
        terms={"poison": {"fn": poison, "weight": 1.0}},
        run_opts={"nonfinite_patience": 0},
        number_of_epochs=2,
    )
    with pytest.raises(ValueError) as err:
        fit(brain, datasets, hparams)
    # The IDs of batch 2 of epoch 2, from the sampler itself
    sampler = brain.train_sampler
    sampler.set_epoch(2)
    order = [datasets["train"].data_ids[i] for i in sampler]
    message = str(err.value)
    assert f"epoch 2, step 2, batch IDs {order[8:16]}" in message
    assert "poison=nan" in message and "nonfinite_patience=0" in message
    assert len(calls) == 10
    for value in params(brain.modules.embedding_model).values():
        assert torch.isfinite(value).all()
    states = [ckpt_state(c) for c in checkpoints(tmp_path)]
    assert states == [(1, False)]  # the last good one, kept


def test_nonfinite_batch_is_skipped_within_patience(
    tiny_data, prep, teacher_dir, tmp_path, caplog
):
    """With patience left, the inf batch changes nothing (weights, Adam
    state, BatchNorm statistics) and training goes on; the epoch
    statistics leave it out."""
    calls, starts = [], []

    def poison(student_logits):
        calls.append(1)
        bad = len(calls) == 3
        return student_logits.sum() * 0 + (float("inf") if bad else 0.0)

    brain, datasets, hparams = build(
        tiny_data,
        prep,
        teacher_dir,
        tmp_path,
        terms={"poison": {"fn": poison, "weight": 1.0}},
        run_opts={"nonfinite_patience": 1},
        number_of_epochs=1,
    )
    start = brain.on_fit_batch_start

    def spy(batch, should_step):  # the whole state before each step
        state = params(brain.modules)
        if starts:
            for k, v in brain.optimizer.state_dict()["state"].items():
                state.update({f"adam{k}{n}": t.clone() for n, t in v.items()})
        starts.append(state)
        start(batch, should_step)

    brain.on_fit_batch_start = spy
    with caplog.at_level("WARNING"):
        fit(brain, datasets, hparams)
    assert len(calls) == len(starts) == 8
    assert starts[2].keys() == starts[3].keys()
    for key, value in starts[2].items():  # before step 3 == after it
        torch.testing.assert_close(starts[3][key], value, rtol=0, atol=0)
    assert any(  # step 2 did update
        not torch.equal(starts[1][k], starts[2][k]) for k in starts[1]
    )
    assert "epoch 1, step 3, batch IDs" in caplog.text
    assert "batch skipped" in caplog.text
    assert all(math.isfinite(v) for v in brain.train_stats.values())
    assert brain.train_stats["poison"] == 0.0
    assert [ckpt_state(c) for c in checkpoints(tmp_path)] == [(1, False)]


def test_class_count_and_label_checks(tiny_data, prep, teacher_dir, tmp_path):
    from speechbrain.dataio.dataloader import make_dataloader
    from speechbrain.dataio.encoder import CategoricalEncoder

    from speechbrain_kd.teachers import FrozenTeacher

    # out_n_neurons that is not the teacher's class count
    with pytest.raises(ValueError, match="--out_n_neurons=9"):
        build(tiny_data, prep, teacher_dir, tmp_path / "a", out_n_neurons=5)

    # A teacher folder whose label encoder does not match its classifier
    labels = sorted({r["spk_id"] for r in read_csv(prep / "train.csv")})
    short = CategoricalEncoder()
    short.update_from_iterable(labels[:8])
    bad_teacher = export_teacher(
        tmp_path / "bad_teacher", tiny_data, prep, tmp_path, short
    )
    brain, datasets, _ = build(tiny_data, prep, teacher_dir, tmp_path / "b")
    brain.teacher = FrozenTeacher.from_pretrained(
        str(bad_teacher), savedir=str(tmp_path / "bt")
    )
    brain.on_fit_start()
    brain.make_dataloader(datasets["train"], stage("TRAIN"))
    brain.on_stage_start(stage("TRAIN"), epoch=1)
    batch = next(iter(make_dataloader(datasets["valid"], batch_size=4)))
    with pytest.raises(ValueError, match="its label encoder.*inconsistent"):
        brain.fit_batch(batch)

    # Resuming with a teacher whose classes are in another order
    brain, _, _ = build(tiny_data, prep, teacher_dir, tmp_path / "c")
    brain.checkpointer.save_checkpoint()
    shuffled = CategoricalEncoder()
    shuffled.update_from_iterable(labels[::-1])
    other = export_teacher(
        tmp_path / "other_teacher", tiny_data, prep, tmp_path, shuffled
    )
    brain, _, _ = build(tiny_data, prep, other, tmp_path / "c")
    with pytest.raises(ValueError, match="another order than the teacher"):
        brain.checkpointer.recover_if_possible()


def test_hyperparameter_ranges(tiny_data, prep, teacher_dir, tmp_path):
    from speechbrain_kd.objectives.kd import kd_loss
    from speechbrain_kd.objectives.trkd import trkd_loss
    from speechbrain_kd.terms import build_terms

    bad = [
        (functools.partial(kd_loss, T=0.0), 1.0, r"\[T\] must be .* > 0"),
        (functools.partial(kd_loss, T=float("nan")), 1.0, r"\[T\]"),
        (functools.partial(trkd_loss, tau=1.5), 1.0, r"\[tau\].*\(0, 1\]"),
        (functools.partial(trkd_loss, lambda_conf=-1), 1.0, "lambda_conf"),
        (kd_loss, -0.5, r"\[weight\]"),
        (kd_loss, float("inf"), r"\[weight\]"),
    ]
    for fn, weight, match in bad:
        with pytest.raises(ValueError, match=match):
            build_terms({"t": {"fn": fn, "weight": weight}})
    for tau in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="tau_schedule must be"):
            build(tiny_data, prep, teacher_dir, tmp_path, tau_schedule=tau)
    brain, _, _ = build(tiny_data, prep, teacher_dir, tmp_path)
    brain.tau_schedule = lambda epoch: epoch / 4
    brain.on_stage_start(stage("TRAIN"), epoch=4)
    assert brain.tau == 1.0
    with pytest.raises(ValueError, match=r"epoch 5, step 1\) must be .*1.25"):
        brain.on_stage_start(stage("TRAIN"), epoch=5)


# ------------------------------------------------------------ bad input


def wav(path, samples, rate=16000, subtype=None):
    soundfile.write(str(path), samples, rate, subtype=subtype)
    return str(path)


def test_bad_audio_files(tmp_path):
    """Each fault: one exception naming the file and what was expected."""
    tone = numpy.sin(numpy.arange(16000) / 10.0).astype("float32") * 0.1
    cases = {
        "missing": (str(tmp_path / "missing.wav"), FileNotFoundError, ""),
        "empty_file": (str(tmp_path / "empty.wav"), RuntimeError, "audio"),
        "zero_frames": (wav(tmp_path / "zero.wav", tone[:0]), None, "empty"),
        "corrupt": (str(tmp_path / "corrupt.flac"), RuntimeError, "Cannot"),
        "nan": (
            wav(
                tmp_path / "nan.wav", numpy.full(800, numpy.nan), 16000, "FLOAT"
            ),
            ValueError,
            "NaN or infinite",
        ),
        "rate": (wav(tmp_path / "8k.wav", tone, 8000), ValueError, "16000 Hz"),
    }
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.flac").write_bytes(os.urandom(4000))
    for name, (path, error, words) in cases.items():
        with pytest.raises(error or (RuntimeError, ValueError)) as err:
            load_audio(path)
        assert path in str(err.value) and words in str(err.value), name

    # Truncated: a header that promises more samples than the file holds
    full = wav(tmp_path / "full.wav", tone)
    data = open(full, "rb").read()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.wav.*(truncated|outside)"):
        load_audio(str(tmp_path / "cut.wav"), 0, 16000)
    # A segment past the end of the file
    with pytest.raises(ValueError, match="full.wav: segment .*16000 samples"):
        load_audio(full, 8000, 24000)

    # Stereo: averaged by default, an error with downmix=False
    stereo = wav(tmp_path / "st.wav", numpy.stack([tone, -tone], 1))
    assert load_audio(stereo).abs().max() < 1e-4  # (x - x) / 2, 16-bit
    with pytest.raises(ValueError, match="st.wav: 2 channels, expected mono"):
        load_audio(stereo, downmix=False)
    # Another rate: an error by default, resampled with resample=True
    sig = load_audio(str(tmp_path / "8k.wav"), resample=True)
    assert sig.shape == (32000,) and torch.isfinite(sig).all()
    # A FLAC header claiming 2^36 samples: an error, not a huge allocation
    soundfile.write(str(tmp_path / "big.flac"), tone, 16000)
    flac = bytearray((tmp_path / "big.flac").read_bytes())
    flac[21] |= 0x0F  # STREAMINFO total samples (36 bits) all ones
    flac[22:26] = b"\xff\xff\xff\xff"
    (tmp_path / "big.flac").write_bytes(bytes(flac))
    with pytest.raises(ValueError, match="big.flac.*longer than"):
        load_audio(str(tmp_path / "big.flac"))
    # ...as is an implausible rate when resampling (no huge kernel)
    odd = bytearray(data)
    odd[24:28] = (1308630848).to_bytes(4, "little")
    (tmp_path / "odd.wav").write_bytes(bytes(odd))
    with pytest.raises(ValueError, match="odd.wav.*cannot resample"):
        load_audio(str(tmp_path / "odd.wav"), resample=True)


def test_bad_manifest_lines(tmp_path):
    header = "ID,duration,wav,start,stop,spk_id\n"
    good = "a,1.0,a.wav,0,16000,s\n"
    cases = {
        "extra field": (good + "b,1.0,b.wav,0,16000,s,x\n", "6 .* got 7"),
        "missing field": (good + "b,1.0,b.wav,0,16000\n", "6 .* got 5"),
        "bad number": (good + "b,1.0,b.wav,zero,16000,s\n", "bad number"),
        "empty ID": (good + ",1.0,b.wav,0,16000,s\n", "empty ID"),
        "duplicate": (good + good, "duplicate ID 'a'"),
        "stop before start": (good + "b,1.0,b.wav,9,9,s\n", "start < stop"),
        "negative": (good + "b,1.0,b.wav,-5,9,s\n", "start < stop"),
        "nan duration": (good + "b,nan,b.wav,0,9,s\n", "positive duration"),
        "header only": ("", "no rows"),
    }
    for name, (body, match) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.csv"
        path.write_text(header + body)
        with pytest.raises(ValueError, match=f"{path}.*{match}"):
            read_csv(path)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe" + os.urandom(64))
    with pytest.raises(ValueError, match="binary.csv"):
        read_csv(binary)
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="binary.csv"):
        read_trials(binary)


def manifest(tmp_path, name, rows):
    full = [
        dict(ID=i, duration=(b - a) / 16000, wav=w, start=a, stop=b, spk_id=s)
        for i, w, a, b, s in rows
    ]
    write_csv(full, tmp_path / name)
    return str(tmp_path / name)


def test_dataio_prep_checks_before_training(tmp_path):
    """Bad audio, too-short segments and trial entries missing from the
    test manifest fail in dataio_prep (before any training step), with one
    error naming the manifest, the line and the file; a segment shorter
    than the crop but not than min_sentence_len is kept whole (padded)."""
    from speechbrain.dataio.batch import PaddedBatch
    from speechbrain.dataio.encoder import CategoricalEncoder

    from speechbrain_kd.data import dataio_prep

    tone = numpy.sin(numpy.arange(16000) / 10.0).astype("float32") * 0.1
    wav(tmp_path / "a.wav", tone)
    wav(tmp_path / "b.wav", tone[:11200])  # 0.7 s: shorter than the crop
    wav(tmp_path / "c.wav", tone[:4800])  # 0.3 s: too short
    wav(tmp_path / "d8k.wav", tone[:8000], 8000)  # 1 s at 8 kHz
    (tmp_path / "bad.wav").write_bytes(os.urandom(2000))
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(["s", "t"])
    good_train = [
        ("a", "a.wav", 0, 16000, "s"),
        ("b", "b.wav", 0, 11200, "t"),
    ]
    hparams = dict(
        data_folder=str(tmp_path),
        sample_rate=16000,
        sentence_len=1.0,
        train_csv=manifest(tmp_path, "train.csv", good_train),
        valid_csv=manifest(tmp_path, "valid.csv", good_train),
        test_csv=manifest(tmp_path, "test.csv", good_train),
        seed=3,
    )
    write_trials([(1, "a.wav", "b.wav")], tmp_path / "trials.txt")
    hparams["verification_file"] = str(tmp_path / "trials.txt")
    datasets = dataio_prep(hparams, encoder)
    train = datasets["train"]
    assert train[0]["sig"].shape == (16000,)  # 1-s row, 1-s crop: whole
    assert train[1]["sig"].shape == (11200,)  # shorter: kept whole...
    batch = PaddedBatch([train[0], train[1]])
    assert batch.sig.data.shape == (2, 16000)  # ...zero-padded in the batch
    torch.testing.assert_close(batch.sig.lengths, torch.tensor([1.0, 0.7]))

    def fails(match, **changes):
        with pytest.raises(ValueError, match=match):
            dataio_prep(dict(hparams, **changes), encoder)

    bad = good_train + [("x", "bad.wav", 0, 100, "s")]
    fails(
        r"train_bad.csv: 1 of 3 rows have bad audio.*line 4 \(ID x\): "
        r"Cannot read audio file .*bad.wav",
        train_csv=manifest(tmp_path, "train_bad.csv", bad),
    )
    short = good_train + [("c", "c.wav", 0, 4800, "s")]
    fails(
        r"valid_short.csv.*line 4 \(ID c\).*0.3 s, shorter than "
        "min_sentence_len=0.5",
        valid_csv=manifest(tmp_path, "valid_short.csv", short),
    )
    # Shorter rows are accepted down to min_sentence_len
    dataio_prep(
        dict(
            hparams,
            min_sentence_len=0.25,
            valid_csv=str(tmp_path / "valid_short.csv"),
        ),
        encoder,
    )
    past_end = good_train + [("e", "b.wav", 0, 16000, "s")]
    fails(
        "after the end of the file",
        train_csv=manifest(tmp_path, "train_end.csv", past_end),
    )
    rate = good_train + [("d", "d8k.wav", 0, 8000, "s")]
    fails(
        r"d8k.wav: sample rate 8000 Hz, expected 16000 Hz",
        test_csv=manifest(tmp_path, "test_8k.csv", rate),
    )
    datasets = dataio_prep(
        dict(hparams, test_csv=str(tmp_path / "test_8k.csv"), resample=True),
        encoder,
    )
    assert datasets["test"][2]["sig"].shape == (16000,)
    write_trials([(1, "a.wav", "zz.wav")], tmp_path / "trials_bad.txt")
    fails(
        r"trials_bad.txt: 1 trial entries are not IDs of .*test.csv.*'zz'",
        verification_file=str(tmp_path / "trials_bad.txt"),
    )
    fails("min_sentence_len must be in", min_sentence_len=2.0)


def test_crops_depend_only_on_seed_epoch_and_id():
    sig = torch.arange(48000.0)

    def crop(seed, epoch, key):
        return random_crop(sig, 16000, crop_generator(seed, epoch, key))[0]

    assert crop(1, 2, "u") == crop(1, 2, "u")
    starts = {crop(1, e, "u") for e in range(1, 9)}
    assert len(starts) > 4  # a new crop every epoch
    assert crop(1, 2, "u") != crop(1, 2, "v") or crop(1, 3, "u") != crop(
        1, 3, "v"
    )
    ds = EpochDataset({"u": {"x": 1}})
    assert ds.epoch == 0
    ds.set_epoch(7)
    assert ds.epoch == 7


# ------------------------------------------------ atomic saves and exports


def test_interrupted_checkpoint_is_never_loaded(tmp_path):
    """A failure (or kill) while a checkpoint is being written leaves a
    folder that is not a checkpoint: recovery loads the previous one, and
    the next save removes the leftover."""
    from speechbrain_kd.checkpointing import AtomicCheckpointer

    class Bomb:
        armed = False

    def save_bomb(obj, path):
        if obj.armed:
            raise KeyboardInterrupt("killed while saving")
        open(path, "w").write("ok")

    model = torch.nn.Linear(3, 3)
    ckpt = AtomicCheckpointer(
        tmp_path,
        {"model": model, "bomb": Bomb()},
        custom_save_hooks={"bomb": save_bomb},
        custom_load_hooks={"bomb": lambda obj, path, end_of_epoch: None},
    )
    good = ckpt.save_checkpoint(meta={"n": 1})
    saved = params(model)
    with torch.no_grad():
        model.weight.add_(1.0)
    Bomb.armed = True
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(meta={"n": 2})
    folders = [p for p in tmp_path.iterdir() if p.name.startswith("CKPT")]
    assert len(folders) == 2  # the half-written one is on disk...
    assert [c.meta["n"] for c in ckpt.list_checkpoints()] == [1]  # ...unseen
    loaded = ckpt.recover_if_possible()
    assert loaded.path == good.path
    torch.testing.assert_close(model.weight, saved["weight"])
    Bomb.armed = False
    ckpt.save_and_keep_only(meta={"n": 3})
    folders = [p for p in tmp_path.iterdir() if p.name.startswith("CKPT")]
    assert [c.meta["n"] for c in ckpt.list_checkpoints()] == [3]
    assert len(folders) == 1


def test_failed_export_keeps_previous_export(
    tiny_data, prep, tmp_path, monkeypatch
):
    """An export that fails half-way leaves the previous export as it was,
    and no temporary folder behind."""
    dest = export_teacher(tmp_path / "pub", tiny_data, prep, tmp_path)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    real_save = torch.save

    def failing_save(obj, path, *args, **kwargs):
        if str(path).endswith("classifier.ckpt"):
            raise OSError("disk full")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        export_teacher(dest, tiny_data, prep, tmp_path)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name[0] == ".") == []


def test_check_export_tolerance_scales_with_the_embeddings(
    tmp_path, monkeypatch
):
    """check_export allows atol up to embedding values of 1 and atol x the
    largest value above: float32 noise of large x-vector embeddings passes,
    a real mismatch does not."""
    from speechbrain.inference.speaker import EncoderClassifier

    from speechbrain_kd.export import check_export

    class Loaded:
        out = None

        def encode_batch(self, wavs, wav_lens):
            return self.out

    loaded = Loaded()
    monkeypatch.setattr(
        EncoderClassifier, "from_hparams", lambda **kwargs: loaded
    )
    wavs, lens = torch.zeros(2, 160), torch.ones(2)

    def check(ref, got):
        loaded.out = got
        return check_export(
            "pub", lambda w, n: ref, wavs, lens, savedir=str(tmp_path)
        )

    small = torch.full((2, 1, 4), 0.5)
    assert check(small, small + 5e-5) == pytest.approx(5e-5, rel=1e-3)
    with pytest.raises(RuntimeError, match=r"pub: .* by 2\.00e-04"):
        check(small, small + 2e-4)  # values below 1: absolute 1e-4
    large = torch.full((2, 1, 4), 20.0)
    assert check(large, large + 1.8e-3) == pytest.approx(1.8e-3, rel=1e-3)
    with pytest.raises(RuntimeError, match=r"> 0\.0001 x 20"):
        check(large, large + 3e-3)  # above 1e-4 x 20
    with pytest.raises(RuntimeError, match="shape"):
        check(large, large[:1])


def test_failed_check_keeps_previous_export(tiny_data, prep, tmp_path):
    """A check that fails (a reload mismatch) leaves the previous export,
    says which folder was not published, and leaves no temporary folder;
    the check sees the complete folder before it is renamed."""
    dest = export_teacher(tmp_path / "pub", tiny_data, prep, tmp_path)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    seen = []

    def mismatch(folder):
        seen.append(sorted(os.listdir(folder)))
        raise RuntimeError("reloaded embeddings differ by 1.0")

    with pytest.raises(RuntimeError, match=r"pub: not published, .* by 1\.0"):
        export_teacher(dest, tiny_data, prep, tmp_path, check=mismatch)
    assert seen == [sorted(before)]
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name[0] == ".") == []
