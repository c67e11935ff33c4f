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
from test_reliability import build, log_lines, params, run_kd

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
        except (OSError, ValueError, EOFError):  # not written yet
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


def cached_brain(tiny_data, prep, teacher_dir, out, dtype):
    """A trkd.yaml KDBrain (3 stored views) training from a ``dtype``
    teacher cache, with its datasets and hparams."""
    brain, datasets, hparams = build(
        tiny_data, prep, teacher_dir, out, train_views=3
    )
    hparams = dict(
        hparams,
        teacher_cache={
            "enabled": True,
            "dtype": dtype,
            "folder": str(out / f"cache_{dtype}"),
        },
    )
    cache = prepare_teacher_cache(
        hparams, brain.teacher, brain.teacher.label_encoder, False
    )
    brain.use_teacher_cache(cache)
    return brain, datasets, hparams


def train_batches(brain, datasets, hparams, epoch):
    """The training batches of ``epoch``, as the Brain draws them."""
    import speechbrain as sb

    loader = brain.make_dataloader(
        datasets["train"], sb.Stage.TRAIN, **hparams["train_dataloader_opts"]
    )
    brain.on_stage_start(sb.Stage.TRAIN, epoch)
    return list(loader)


# Largest |cached - live| / scale of a teacher logit or embedding stored
# in float32: one forward pass of the same crop in another batch (other
# BLAS blocking), never more than a few float32 ulps of the largest value.
FLOAT32_REL = 1e-5


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cached_batches_equal_live_teacher(
    dtype, tiny_data, prep, teacher_dir, tmp_path
):
    """At every step of one epoch, the teacher outputs the Brain takes from
    the cache (``compute_forward``) are the live teacher's on the batch's
    own crops: within float32 rounding with float32 storage, float16
    rounding with float16. The teacher's triage statistics of the epoch
    (|F| and the three masses, as logged) are the same from both: |F|
    exactly, the masses within the storage's rounding. The check that the
    cut is decided the same way is exact because no class's cumulative
    mass lies within the storage error of tau (asserted, not assumed)."""
    import speechbrain as sb

    from speechbrain_kd.objectives.partition import top_mass_set
    from speechbrain_kd.objectives.trkd import TRKDLoss

    brain, datasets, hparams = cached_brain(
        tiny_data, prep, teacher_dir, tmp_path, dtype
    )
    epoch = 2
    batches = train_batches(brain, datasets, hparams, epoch)
    tau, T = 0.3, 4.0  # a cut inside the 9 classes
    assert len(batches) == 8
    from_cache, from_live = TRKDLoss(T=T), TRKDLoss(T=T)
    g = torch.Generator().manual_seed(3)
    margin = float("inf")
    for batch in batches:
        with torch.no_grad():
            preds = brain.compute_forward(batch, sb.Stage.TRAIN)
            live = brain.teacher(*batch.sig)
        ids = batch.id
        assert batch.view.tolist() == [
            epoch_view(hparams["seed"], epoch, i, 3) for i in ids
        ]
        for key in ("logits", "embedding"):
            got, want = preds[f"teacher_{key}"], live[key]
            if dtype == "float32":
                scale = float(want.abs().max())
                torch.testing.assert_close(
                    got, want, rtol=0, atol=FLOAT32_REL * scale
                )
            else:
                fp16_close(got, want)
        y = batch.spk_id_encoded.data.view(-1)
        s = torch.randn(preds["teacher_logits"].shape, generator=g)
        from_cache(s, preds["teacher_logits"], y, tau)
        from_live(s, live["logits"], y, tau)
        # the cut: the cached and live confusion sets are equal
        gt = torch.nn.functional.one_hot(y, live["logits"].shape[1]).bool()
        for logits in (preds["teacher_logits"], live["logits"]):
            assert torch.equal(
                top_mass_set(logits, tau, T, exclude=gt),
                top_mass_set(live["logits"], tau, T, exclude=gt),
            )
        p = (live["logits"] / T).softmax(-1).masked_fill(gt, 0)
        p = p / p.sum(-1, keepdim=True)
        cum = p.sort(-1, descending=True).values.cumsum(-1)
        margin = min(margin, float((cum - tau).abs().min()))
    error = FLOAT32_REL if dtype == "float32" else 2.0**-10
    assert margin > 10 * error  # no class near the cut
    got, want = from_cache.epoch_stats(), from_live.epoch_stats()
    assert got.keys() == want.keys()
    for key in ("F_mean", "F_median"):
        assert got[key] == want[key], key
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=10 * error), key


def test_one_step_from_same_weights_same_loss(
    tiny_data, prep, teacher_dir, tmp_path
):
    """One optimiser step of a cached (float16) and of a live KDBrain from
    the same weights on the same batch: the same loss within float16
    rounding of the teacher's logits (the loss is the task term, equal,
    plus KL terms whose teacher probabilities move by < 2^-10 relative)."""
    live, datasets, hparams = build(
        tiny_data, prep, teacher_dir, tmp_path / "live", train_views=3
    )
    cached, _, _ = cached_brain(
        tiny_data, prep, teacher_dir, tmp_path / "cached", "float16"
    )
    for brain in (live, cached):
        brain.on_fit_start()
    a, b = params(live.modules), params(cached.modules)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    batch = train_batches(cached, datasets, hparams, 1)[0]
    train_batches(live, datasets, hparams, 1)
    assert live.tau == cached.tau
    loss_live = float(live.fit_batch(batch))
    loss_cached = float(cached.fit_batch(batch))
    assert loss_cached == pytest.approx(loss_live, rel=2.0**-10)
    terms_live = {k: float(v) for k, v in live._batch_terms.items()}
    terms_cached = {k: float(v) for k, v in cached._batch_terms.items()}
    assert terms_live["task"] == terms_cached["task"]
    assert terms_cached.keys() == terms_live.keys()
    for key in terms_live:
        assert terms_cached[key] == pytest.approx(
            terms_live[key], rel=2.0**-10, abs=1e-6
        ), key


def test_cached_recipe_run_logs_the_live_masses(
    tiny_data, prep, teacher_dir, tmp_path
):
    """``train_kd.py`` with ``--teacher_cache`` (float32) and without, on
    the same stored views: both finish, the cached one says it used the
    cache, and the teacher's logged triage (|F| and the masses, which
    depend only on the teacher, the views and tau) is printed the same.
    The student's losses are not compared: a cache batch and a training
    batch differ in the teacher's last bits, and 2 epochs of training
    grow such differences by a machine-dependent amount."""
    args = [*rel.RESUME_ARGS, "--train_views=3"]
    live = tmp_path / "live"
    proc = run_kd(live, tiny_data, prep, teacher_dir, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cached = tmp_path / "cached"
    proc = run_kd(
        cached,
        tiny_data,
        prep,
        teacher_dir,
        *args,
        "--teacher_cache={enabled: True, dtype: float32, "
        f"folder: {tmp_path}/cache}}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "teacher cache" in (cached / "log.txt").read_text().lower()
    masses = [f"train trkd_{k}" for k in ("F_mean", "F_median")]
    masses += [f"train trkd_mass_{k}" for k in ("target", "confusion")]
    assert len(log_lines(live)) == len(log_lines(cached)) == 2
    for a, b in zip(log_lines(live), log_lines(cached)):
        got, want = parse_line(b), parse_line(a)
        assert got.keys() == want.keys()
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


def test_tail_bound_hand_value():
    # T^2 m (log n + R) = 16 * 0.01 * (log 100 + 2)
    assert tail_bound(0.01, 100, 2.0, 4.0) == pytest.approx(1.0568, abs=5e-5)
