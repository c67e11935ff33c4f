"""The teacher cache: stored outputs equal the live teacher's, objectives
from it are exact or within the documented bound, builds resume after
``kill -9``, a mismatched cache is refused, and a cached run trains like a
live run on the same views."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy
import pytest
import test_reliability as rel
import torch
from test_objectives import realistic_teacher_logits
from test_reliability import build, log_lines, run_kd

from speechbrain_kd.data import dataio_prep
from speechbrain_kd.data.views import epoch_view, view_generator
from speechbrain_kd.objectives.gkd import gkd_loss
from speechbrain_kd.objectives.kd import kd_loss
from speechbrain_kd.objectives.trkd import confusion_mask, trkd_loss
from speechbrain_kd.teacher_cache import (
    CacheWriter,
    TeacherCache,
    check_meta,
    prepare_teacher_cache,
    rebuild_logits,
    split_top,
    tail_bound,
)
from speechbrain_kd.train_log import parse_line

prep, teacher_dir = rel.prep, rel.teacher_dir
pytestmark = pytest.mark.usefixtures("one_thread")

META = dict(
    key={"teacher": "abc", "manifest": "def", "views": 2},
    segments=3,
    views=2,
    classes=5,
    embedding_dim=4,
    topk=None,
    T=None,
)


def fp16_close(a, b):
    """Equal within float16 rounding (relative 2^-11, plus subnormals)."""
    torch.testing.assert_close(a.float(), b.float(), rtol=2.0**-10, atol=1e-4)


# ------------------------------------------------------------ objectives


def test_topk_objectives_exact_or_bounded():
    """Top-k storage with the tail's log-sum-exp at T: TRKD (tau small,
    F inside the top k) and GKD are exact; KD moves by less than
    ``tail_bound``."""
    t, y = realistic_teacher_logits(num_classes=400, batch=64)
    g = torch.Generator().manual_seed(5)
    s = t * 0.5 + torch.randn(t.shape, generator=g)
    T, k = 4.0, 32
    index, top, lse = split_top(t, y, k, T)
    r = rebuild_logits(index, top, lse, t.shape[1], T)
    # the kept logits and the tail's probability at T are exact
    torch.testing.assert_close(r.gather(1, index), t.gather(1, index))
    torch.testing.assert_close(
        (r / T).log_softmax(-1).gather(1, index),
        (t / T).log_softmax(-1).gather(1, index),
    )
    assert confusion_mask(t, y, 0.05, T).sum(-1).max() < k
    for tau in (0.05, 0.1):
        torch.testing.assert_close(
            trkd_loss(s, r, y, tau=tau, T=T), trkd_loss(s, t, y, tau=tau, T=T)
        )
    from speechbrain_kd.objectives.gkd import primary_mask

    assert primary_mask(t, 0.3, T).sum(-1).max() < k  # P inside the top k
    torch.testing.assert_close(
        gkd_loss(s, r, threshold=0.3, T=T), gkd_loss(s, t, threshold=0.3, T=T)
    )
    exact, approx = kd_loss(s, t, T), kd_loss(s, r, T)
    kept = torch.zeros_like(t, dtype=torch.bool).scatter(1, index, True)
    p_t = (t / T).softmax(-1)
    log_q = (s / T).log_softmax(-1)
    bound = 0.0
    for i in range(t.shape[0]):  # per row, then the batch mean
        tail = ~kept[i]
        spread = log_q[i][tail].max() - log_q[i][tail].min()
        bound += tail_bound(
            float(p_t[i][tail].sum()), int(tail.sum()), float(spread), T
        )
    bound /= t.shape[0]
    assert abs(float(approx - exact)) <= bound
    assert abs(float(approx - exact)) > 0  # the tail is approximate


def test_store_and_read_round_trip(tmp_path):
    """Full logits in float16; rows and views land where they are read."""
    writer = CacheWriter(str(tmp_path / "c"), META)
    logits = torch.randn(6, 5) * 30
    emb = torch.randn(6, 4)
    rows, views = [0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1]
    writer.write(rows[:4], views[:4], logits[:4], emb[:4], torch.zeros(4))
    assert writer.pending() == [(2, 0), (2, 1)]
    with pytest.raises(RuntimeError, match="not complete"):
        writer.finish()
    writer.write(rows[4:], views[4:], logits[4:], emb[4:], torch.zeros(2))
    writer.finish()
    assert not (tmp_path / "c.partial").exists()
    cache = TeacherCache(str(tmp_path / "c"))
    out = cache.read(torch.tensor([2, 0]), torch.tensor([1, 1]))
    fp16_close(out["logits"], logits[[5, 1]])
    fp16_close(out["embedding"], emb[[5, 1]])
    check_meta(str(tmp_path / "c"), META)
    other = dict(META, key=dict(META["key"], manifest="xyz"))
    with pytest.raises(ValueError, match=r"key\.manifest differ"):
        check_meta(str(tmp_path / "c"), other)


BUILD_SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    from speechbrain_kd.teacher_cache import build_cache

    class Teacher(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.lin = torch.nn.Linear(16, 7)

        def forward(self, wavs, lens):
            time.sleep(float(sys.argv[2]))
            x = wavs[:, :16]
            return {"logits": 30 * self.lin(x), "embedding": x[:, :4]}

    def load_view(row, view):
        g = torch.Generator().manual_seed(100 * row + view)
        return torch.randn(32, generator=g)

    meta = dict(key={"k": 1}, segments=40, views=3, classes=7,
                embedding_dim=4, topk=None, T=None)
    segments = [(f"utt{i}", i % 7) for i in range(40)]
    build_cache(sys.argv[1], meta, Teacher().eval(), segments, load_view,
                batch_size=4)
    """
)


def test_interrupted_build_resumes(tmp_path):
    """kill -9 during the build, same command again: it continues (the
    views already written are not computed again) and the cache equals an
    uninterrupted build."""
    script = tmp_path / "build.py"
    script.write_text(BUILD_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ref = tmp_path / "ref"
    subprocess.run(
        [sys.executable, str(script), str(ref), "0"], check=True, env=env
    )
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), "0.05"],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    done = out.with_name("killed.partial") / "done.npy"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            flags = numpy.load(done, mmap_mode="r")
            if 0 < flags.sum() < flags.size // 2:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = int(numpy.load(done).sum())
    assert 0 < written < 120 and not out.exists()
    log = subprocess.run(
        [sys.executable, str(script), str(out), "0"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    ).stderr
    assert f"0/{120 - written} " in log  # the progress bar of what is left
    for name in ("logits", "embedding", "done"):
        a = numpy.load(ref / f"{name}.npy")
        b = numpy.load(out / f"{name}.npy")
        assert numpy.array_equal(a, b), name


# ------------------------------------------------------------ the recipe


def test_cached_outputs_equal_live_teacher(
    tiny_data, prep, teacher_dir, tmp_path
):
    """For the same view, the cached logits and embedding are the live
    teacher's within float16 rounding; the training set draws its views
    from the same crops."""
    brain, datasets, hparams = build(
        tiny_data, prep, teacher_dir, tmp_path, train_views=3
    )
    hparams = dict(
        hparams,
        teacher_cache={"enabled": True, "folder": str(tmp_path / "tc")},
    )
    cache = prepare_teacher_cache(
        hparams, brain.teacher, brain.teacher.label_encoder
    )
    meta = json.loads((tmp_path / "tc" / "meta.json").read_text())
    assert meta["views"] == 3 and meta["topk"] is None
    train = datasets["train"]
    train.set_epoch(2)
    items = [train[i] for i in (0, 5, 11)]
    for item in items:
        assert item["view"] == epoch_view(hparams["seed"], 2, item["id"], 3)
    wavs = torch.stack([item["sig"] for item in items])
    live = brain.teacher(wavs, torch.ones(len(items)))
    stored = cache.read(
        torch.tensor([item["cache_index"] for item in items]),
        torch.tensor([item["view"] for item in items]),
    )
    fp16_close(stored["logits"], live["logits"])
    fp16_close(stored["embedding"], live["embedding"])
    # every objective from the cache equals the live value (float16)
    s = torch.randn_like(live["logits"])
    y = torch.tensor([item["spk_id_encoded"].item() for item in items])
    for tau in (1.0, 0.05):
        torch.testing.assert_close(
            trkd_loss(s, stored["logits"], y, tau=tau),
            trkd_loss(s, live["logits"], y, tau=tau),
            rtol=1e-2,
            atol=1e-3,
        )
    torch.testing.assert_close(
        kd_loss(s, stored["logits"]),
        kd_loss(s, live["logits"]),
        rtol=1e-2,
        atol=1e-3,
    )
    # a view is the crop of its generator, whatever the epoch
    assert not torch.equal(
        torch.rand(1, generator=view_generator(1986, 0, "a")),
        torch.rand(1, generator=view_generator(1986, 1, "a")),
    )
    # another seed: other views, so the cache is refused
    with pytest.raises(ValueError, match=r"key\.views_seed"):
        prepare_teacher_cache(
            dict(hparams, seed=7), brain.teacher, brain.teacher.label_encoder
        )
    # another seed with views_seed = the cache's seed: the same views, so
    # the cache serves it, and its training set crops those views
    other = dict(hparams, seed=7, views_seed=hparams["seed"])
    prepare_teacher_cache(other, brain.teacher, brain.teacher.label_encoder)
    label_encoder = brain.teacher.label_encoder
    other_train = dataio_prep(other, label_encoder)["train"]
    other_train.set_epoch(2)
    for i in (0, 5, 11):
        item = other_train[i]
        assert item["view"] == epoch_view(7, 2, item["id"], 3)
        view = torch.tensor([item["view"]])
        stored_other = cache.read(torch.tensor([item["cache_index"]]), view)
        live_other = brain.teacher(item["sig"].unsqueeze(0), torch.ones(1))
        fp16_close(stored_other["logits"], live_other["logits"])


def test_cached_run_matches_live_run(tiny_data, prep, teacher_dir, tmp_path):
    """A tiny cached TRKD run and a tiny live TRKD run on the same stored
    views log the same training losses epoch by epoch, within 2 % with
    float32 storage and 5 % with float16 (the default); the teacher's
    masses, which depend only on the teacher and the views, to the
    printed digits. (The teacher's logits in a training batch and in a
    cache batch differ in the last bits, padding and batch size being
    others, and such differences grow over the steps of this 2-epoch run;
    its validation loss moves by several % from them, so it is not
    compared.)"""
    args = [*rel.RESUME_ARGS, "--train_views=3"]
    live = tmp_path / "live"
    proc = run_kd(live, tiny_data, prep, teacher_dir, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = ("train loss", "train task", "train trkd")
    masses = [f"train trkd_{k}" for k in ("F_mean", "F_median")]
    masses += [f"train trkd_mass_{k}" for k in ("target", "confusion")]
    for dtype, rtol in (("float32", 2e-2), ("float16", 5e-2)):
        cached = tmp_path / dtype
        proc = run_kd(
            cached,
            tiny_data,
            prep,
            teacher_dir,
            *args,
            f"--teacher_cache={{enabled: True, dtype: {dtype}, "
            f"folder: {tmp_path / dtype}_cache}}",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "teacher cache" in (cached / "log.txt").read_text().lower()
        assert len(log_lines(live)) == len(log_lines(cached)) == 2
        for a, b in zip(log_lines(live), log_lines(cached)):
            got, want = parse_line(b), parse_line(a)
            assert got.keys() == want.keys()
            for key in losses:
                assert got[key] == pytest.approx(want[key], rel=rtol), key
            for key in masses:
                assert got[key] == want[key], key


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(train_views=None), "needs train_views"),
        (dict(teacher_taps={"a": "blocks.1"}), "teacher_taps"),
        (dict(wav_augment=object()), "wav_augment"),
        (dict(teacher_cache={"enabled": True, "colour": 1}), "colour"),
        (dict(teacher_cache={"enabled": True, "topk": 8, "T": None}), "T"),
        (dict(teacher_cache={"enabled": True, "dtype": "int8"}), "dtype"),
    ],
)
def test_cached_mode_refuses_what_it_cannot_replay(change, message):
    from speechbrain_kd.teacher_cache import cache_settings

    hparams = dict(
        train_views=4, save_folder="s", teacher_cache={"enabled": True}
    )
    hparams.update(change)
    with pytest.raises(ValueError, match=message):
        cache_settings(hparams)
