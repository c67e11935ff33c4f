"""Multi-process training: ``torchrun --nproc_per_node=2 ... gloo`` on CPU.

With N processes, each process takes every N-th example of the
single-process order and uses ``batch_size`` per process, so that a run
with ``--batch_size=B`` on N processes sees, at every optimiser step,
exactly the examples of a single-process run with ``--batch_size=N*B``
(tested exactly below, with the samplers). What still differs is
BatchNorm: each process normalises with the statistics of its own B
examples (``SyncBatchNorm`` needs CUDA) and the running statistics used
in evaluation are process 0's, from batches of B rather than N*B. On the
tiny run this moves the losses by 10-30 % and the scores by a trial or
two, about what changing the seed does; such a comparison with loose
tolerances failed at random (one run in several), so the 2-process run
is compared with the single-process one only where they must agree
(schedules, the frozen teacher's scores) and, figure by figure, with
another 2-process run of the same seed: interrupted by ``kill -9`` and
resumed, it ends with the same figures as an uninterrupted one.
"""

import json
import math

import pytest
import test_reliability as rel
import torch
from test_reliability import (
    RESUME_ARGS,
    build,
    checkpoints,
    ckpt_state,
    kill_at_intra_epoch_checkpoint,
    log_lines,
    reference_run,
    run_kd,
)

from speechbrain_kd.train_log import parse_line

# Fixtures shared with test_reliability.py
prep, teacher_dir = rel.prep, rel.teacher_dir
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def process_group(monkeypatch, tmp_path):
    """A one-process gloo group, with the torchrun environment."""
    for key, value in dict(
        RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1"
    ).items():
        monkeypatch.setenv(key, value)
    torch.distributed.init_process_group(
        "gloo",
        init_method=f"file://{tmp_path / 'rendezvous'}",
        rank=0,
        world_size=1,
    )
    yield
    torch.distributed.destroy_process_group()


def test_ddp_wrapping_and_data_split(
    tiny_data, prep, teacher_dir, tmp_path, monkeypatch, process_group
):
    """The student's modules are wrapped in DDP (no SyncBatchNorm on CPU),
    the teacher is not; N processes with batch B together take the batches
    of a single process with batch N*B, epoch after epoch."""
    brain, datasets, _ = build(tiny_data, prep, teacher_dir, tmp_path)
    assert brain.distributed_launch
    brain._wrap_distributed()
    ddp = torch.nn.parallel.DistributedDataParallel
    for name in ("embedding_model", "classifier"):
        assert isinstance(brain.modules[name], ddp), name
    assert not any(
        isinstance(m, torch.nn.SyncBatchNorm) for m in brain.modules.modules()
    )
    assert not isinstance(brain.teacher, ddp)
    teacher_params = {id(p) for p in brain.teacher.parameters()}
    assert not teacher_params & {id(p) for p in brain.modules.parameters()}
    assert not any(p.requires_grad for p in brain.teacher.parameters())
    # Embeddings for scoring bypass the wrappers (main process only)
    wavs = torch.randn(2, 16000)
    assert brain.encode(wavs).shape == (2, 1, 16)

    train = datasets["train"]
    opts = dict(batch_size=8, shuffle=True, drop_last=True)
    brain.distributed_launch = False
    single = brain._train_loader_specifics(train, dict(opts))["sampler"]
    brain.distributed_launch = True
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *a: 2)
    per_rank = []
    for rank in (0, 1):
        brain.rank = rank
        kwargs = brain._train_loader_specifics(train, dict(opts, batch_size=4))
        assert "shuffle" not in kwargs or not kwargs["shuffle"]
        per_rank.append(kwargs["sampler"])

    def batches(sampler, size, epoch):
        sampler.set_epoch(epoch)
        order = list(sampler)
        return [
            order[i : i + size] for i in range(0, len(order) - size + 1, size)
        ]

    for epoch in (1, 2):
        whole = batches(single, 8, epoch)
        parts = [batches(s, 4, epoch) for s in per_rank]
        assert len(whole) == len(parts[0]) == len(parts[1]) == 8
        for k, batch in enumerate(whole):
            assert not set(parts[0][k]) & set(parts[1][k])
            assert set(parts[0][k]) | set(parts[1][k]) == set(batch), k
    assert batches(single, 8, 1) != batches(single, 8, 2)  # reshuffled


def kept_checkpoints(lines):
    """The epochs whose end-of-epoch checkpoints SpeechBrain keeps after
    ``save_and_keep_only(min_keys=["ErrorRate"])`` (num_to_keep 1): the
    most recent and the lowest validation error (the most recent of
    equal ones); intra-epoch checkpoints are deleted."""
    errors = [parse_line(line)["valid ErrorRate"] for line in lines]
    best = max(
        range(len(errors)), key=lambda i: (-errors[i], i)
    )  # lowest error, then latest
    return sorted({len(errors), best + 1})


def printed_close(got, want):
    """Within one unit of the last digit SpeechBrain prints (3 significant
    digits): what a sum of the same float32 values in another order can
    change in a log line.

    >>> printed_close(1.01, 1.0), printed_close(1.02, 1.0)
    (True, False)
    """
    if want == 0:
        return got == 0
    unit = 10.0 ** (math.floor(math.log10(abs(want))) - 2)
    return abs(got - want) <= unit * (1 + 1e-9)


def run_ddp(out, tiny_data, prep, teacher_dir, wait=True):
    """The tiny TRKD run on 2 processes, batch 4 each (8 in all)."""
    args = [*RESUME_ARGS, "--batch_size=4"]
    return run_kd(out, tiny_data, prep, teacher_dir, *args, wait=wait, nproc=2)


@pytest.fixture(scope="module")
def ddp_reference(tmp_path_factory, tiny_data, prep, teacher_dir):
    """An uninterrupted 2-process run (once)."""
    out = tmp_path_factory.mktemp("ddp") / "uninterrupted"
    proc = run_ddp(out, tiny_data, prep, teacher_dir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def test_torchrun_trains_and_writes_once(
    ddp_reference, tiny_data, prep, teacher_dir, tmp_path_factory
):
    """torchrun --nproc_per_node=2 (gloo, CPU), 4 examples per process: it
    trains, only the main process writes (one log, the checkpoints of
    SpeechBrain's policy and no other, one verification.json, one
    published folder), with the single-process schedules and teacher."""
    ref = reference_run(tmp_path_factory, tiny_data, prep, teacher_dir)
    out = ddp_reference
    assert (out / "pretrained" / "embedding_model.ckpt").is_file()
    lines, ref_lines = log_lines(out), log_lines(ref)
    assert len(lines) == len(ref_lines) == 2
    # as a set: two checkpoints of the same second sort by their suffix,
    # which SpeechBrain picks from the folders that exist at that moment
    assert sorted(ckpt_state(c) for c in checkpoints(out)) == [
        (epoch, False) for epoch in kept_checkpoints(lines)
    ]
    assert not list((out / "save").glob("CKPT*/*.pending"))
    for line, ref_line in zip(lines, ref_lines):
        got, want = parse_line(line), parse_line(ref_line)
        assert got.keys() == want.keys()
        for key in ("epoch", "lr", "tau"):
            assert got[key] == want[key]  # same schedule
        assert all(math.isfinite(v) for v in got.values())
    result = json.loads((out / "verification.json").read_text())
    ref_result = json.loads((ref / "verification.json").read_text())
    assert result["teacher"] == ref_result["teacher"]  # the frozen teacher
    assert result["student"].keys() == ref_result["student"].keys()


def test_torchrun_kill_9_then_resume(
    ddp_reference, tiny_data, prep, teacher_dir, tmp_path
):
    """kill -9 of a 2-process run during epoch 2 (after an intra-epoch
    checkpoint), the same command again: it resumes and ends with the
    figures of the uninterrupted 2-process run (each loss counted once,
    every process continuing its own random streams)."""
    out = tmp_path / "killed"
    proc = run_ddp(out, tiny_data, prep, teacher_dir, wait=False)
    latest = kill_at_intra_epoch_checkpoint(proc, out)
    proc = run_ddp(out, tiny_data, prep, teacher_dir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (
        f"Loading a checkpoint from {latest}" in (out / "log.txt").read_text()
    )
    lines, ref_lines = log_lines(out), log_lines(ddp_reference)
    assert len(lines) == len(ref_lines) == 2
    for line, ref_line in zip(lines, ref_lines):
        got, want = parse_line(line), parse_line(ref_line)
        assert got.keys() == want.keys()
        for key in want:  # the same weights; sums in another order
            assert printed_close(got[key], want[key]), key
    result = json.loads((out / "verification.json").read_text())
    ref_result = json.loads((ddp_reference / "verification.json").read_text())
    assert result["teacher"] == ref_result["teacher"]
    for key, value in ref_result["student"].items():
        if isinstance(value, float):
            assert result["student"][key] == pytest.approx(value, abs=1e-6)
    for name in ("embedding_model", "classifier"):
        a = torch.load(ddp_reference / "pretrained" / f"{name}.ckpt")
        b = torch.load(out / "pretrained" / f"{name}.ckpt")
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
