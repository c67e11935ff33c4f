"""Fuzz (seeded random loops): random bytes and random shapes into the audio
loading and into every objective of ``speechbrain_kd.objectives``.

Audio: every outcome is either a finite mono float32 signal of the
expected length or a ``FileNotFoundError`` / ``RuntimeError`` /
``ValueError`` naming the file, as an oracle predicts from what was
written. Objectives: valid shapes (batch >= 1, finite inputs of any scale
and dtype) give a finite loss with finite gradients; mismatched shapes,
out-of-range targets and out-of-range tau raise ``ValueError`` /
``RuntimeError``. Every function of ``objectives/*`` that ``KDBrain`` can
call with its own inputs is found and fuzzed automatically.
"""

import importlib
import inspect
import io
import math
import pkgutil
import random

import numpy
import pytest
import soundfile
import torch

import speechbrain_kd.objectives
from speechbrain_kd.data import load_audio
from speechbrain_kd.terms import INPUTS

SEED = 20260
ERRORS = (FileNotFoundError, RuntimeError, ValueError)


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ audio


@pytest.fixture
def memory_cap():
    """At most 4 GiB more address space: a decoder allocating for a
    corrupt header raises MemoryError here instead of exhausting the
    (shared) machine."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = int(open("/proc/self/statm").read().split()[0]) * 4096
    resource.setrlimit(resource.RLIMIT_AS, (used + 4 * 2**30, hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def wav_bytes(frames=400, channels=1, rate=16000, fmt="WAV", subtype="PCM_16"):
    buf = io.BytesIO()
    data = numpy.zeros((frames, channels), dtype="float32")
    soundfile.write(buf, data, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def outcome(path, **kwargs):
    """The signal, or the exception (checked to name the file)."""
    try:
        sig = load_audio(str(path), **kwargs)
    except ERRORS as e:
        assert str(path) in str(e), f"{type(e).__name__} without path: {e}"
        return e
    assert isinstance(sig, torch.Tensor) and sig.dim() == 1, kwargs
    assert sig.dtype == torch.float32 and torch.isfinite(sig).all(), kwargs
    return sig


def test_random_bytes_to_load_audio(tmp_path, memory_cap):
    """Random files, some behind real headers, some real files with bytes
    flipped or cut: never a crash, never an unnamed error or NaN."""
    rng = random.Random(SEED)
    real = [
        wav_bytes(),
        wav_bytes(300, 2, 8000),
        wav_bytes(500, 1, 16000, "FLAC", "PCM_16"),
        wav_bytes(200, 1, 16000, "WAV", "FLOAT"),
        wav_bytes(700, 1, 16000, "OGG", "VORBIS"),
    ]
    prefixes = [b"", b"RIFF", b"fLaC", b"OggS", b"ID3\x03", real[0][:44]]
    errors = signals = 0
    for i in range(300):
        kind = rng.randrange(3)
        if kind == 0:  # random bytes behind a (maybe) real header
            data = rng.choice(prefixes) + rng.randbytes(rng.randrange(0, 3000))
        elif kind == 1:  # a real file with random bytes flipped
            data = bytearray(rng.choice(real))
            for _ in range(rng.randrange(1, 20)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data)
        else:  # a real file cut short
            src = rng.choice(real)
            data = src[: rng.randrange(len(src))]
        ext = rng.choice([".wav", ".flac", ".ogg", ".mp3", ".bin"])
        path = tmp_path / f"f{i}{ext}"
        path.write_bytes(data)
        start = rng.choice([0, 0, rng.randrange(-5, 600)])
        stop = rng.choice([None, rng.randrange(-5, 900)])
        result = outcome(
            path, start=start, stop=stop, resample=rng.random() < 0.5
        )
        errors += isinstance(result, Exception)
        signals += isinstance(result, torch.Tensor)
    assert errors > 100 and signals > 10  # both outcomes were exercised
    assert isinstance(outcome(tmp_path / "nope.wav"), FileNotFoundError)


def expected_audio(frames, channels, rate, start, stop, resample, downmix):
    """What load_audio must do (None: an error) and the output length."""
    if frames == 0:
        return None
    if rate != 16000 and not resample:
        return None
    if channels > 1 and not downmix:
        return None
    stop = None if stop is None or stop <= start else stop
    end = frames if stop is None else stop
    if not 0 <= start < end <= frames:
        return None
    return math.ceil((end - start) * 16000 / rate)


def test_random_audio_shapes(tmp_path, memory_cap):
    """Valid files of random length, channels, rate and sample format,
    random segments and options, some with NaN/inf samples: load_audio
    matches an oracle exactly (length, values, or an error)."""
    rng = numpy.random.default_rng(SEED)
    checked = {"signal": 0, "error": 0}
    for i in range(150):
        frames = int(
            rng.choice([0, 1, 2, 399, 400, int(rng.integers(3, 3000))])
        )
        channels = int(rng.integers(1, 4))
        rate = int(rng.choice([8000, 16000, 16000, 22050, 44100]))
        fmt, subtype = [
            ("WAV", "PCM_16"),
            ("WAV", "PCM_24"),
            ("WAV", "FLOAT"),
            ("WAV", "DOUBLE"),
            ("FLAC", "PCM_16"),
        ][int(rng.integers(5))]
        data = numpy.clip(rng.normal(0, 0.3, (frames, channels)), -1, 1)
        bad_at = None
        if fmt == "WAV" and subtype in ("FLOAT", "DOUBLE") and frames:
            if rng.random() < 0.3:
                bad_at = int(rng.integers(frames))
                data[bad_at, 0] = rng.choice([numpy.nan, numpy.inf, -numpy.inf])
        path = tmp_path / f"a{i}.{fmt.lower()}"
        try:
            soundfile.write(str(path), data, rate, format=fmt, subtype=subtype)
        except (RuntimeError, ValueError):  # e.g. an empty FLAC
            continue
        start = int(rng.choice([0, 0, rng.integers(-3, frames + 3)]))
        stop = rng.choice([None, int(rng.integers(-3, frames + 3))])
        opts = dict(
            start=start,
            stop=stop,
            resample=bool(rng.random() < 0.5),
            downmix=bool(rng.random() < 0.7),
        )
        length = expected_audio(frames, channels, rate, **opts)
        seg_stop = frames if stop is None or stop <= start else stop
        if length is not None and bad_at is not None:
            if start <= bad_at < seg_stop:
                length = None  # NaN/inf inside the segment
        result = outcome(path, **opts)
        if length is None:
            # An empty FLAC is not even recognised: RuntimeError
            error = (RuntimeError, ValueError) if not frames else ValueError
            assert isinstance(result, error), (frames, rate, opts)
            checked["error"] += 1
            continue
        assert isinstance(result, torch.Tensor), (result, frames, rate, opts)
        assert result.shape == (length,), (frames, rate, opts)
        if rate == 16000:
            want = data[start:seg_stop].mean(axis=1)
            tol = 1e-4 if subtype == "PCM_16" else 1e-6
            numpy.testing.assert_allclose(result.numpy(), want, atol=tol)
        checked["signal"] += 1
    assert checked["signal"] > 20 and checked["error"] > 20


# ------------------------------------------------------------- objectives


def objective_functions():
    """Public functions of ``objectives/*`` that KDBrain can call with its
    own inputs as a distillation term (all required arguments among
    ``brain.INPUTS``, a student output among them)."""
    found = {}
    package = speechbrain_kd.objectives
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for name, fn in vars(module).items():
            if name.startswith("_") or not inspect.isfunction(fn):
                continue
            if fn.__module__ != module.__name__:
                continue
            params = inspect.signature(fn).parameters.values()
            required = [p.name for p in params if p.default is p.empty]
            student = [r for r in required if r.startswith("student_")]
            if student and set(required) <= set(INPUTS):
                found[f"{info.name}.{name}"] = fn
    return found


def random_inputs(rng, names, batch, classes, dim):
    """Valid inputs by name, at a random scale and dtype (finite)."""
    dtype = rng.choice([torch.float32, torch.float16, torch.bfloat16])
    limit = 6e4 if dtype == torch.float16 else 1e6
    scale = min(rng.choice([1e-6, 1e-3, 1.0, 30.0, 1e3, 1e4]), limit / 8)

    def tensor(*shape):
        x = torch.randn(*shape) * scale
        if rng.random() < 0.1:
            x = torch.zeros(*shape)
        return x.to(dtype).float().requires_grad_()

    make = {
        "student_logits": lambda: tensor(batch, classes),
        "teacher_logits": lambda: tensor(batch, classes).detach(),
        "targets": lambda: torch.randint(classes, (batch,)),
        "student_embedding": lambda: tensor(batch, dim),
        "teacher_embedding": lambda: tensor(batch, dim).detach(),
        "lengths": lambda: torch.rand(batch).clamp_min(0.05),
        "tau": lambda: rng.choice([1e-9, 1e-3, 0.05, 0.5, 0.999, 1.0]),
    }
    return {name: make[name]() for name in names}


def invalid_inputs(rng, inputs, classes):
    """One mutation that makes the inputs invalid, or None."""
    options = []
    if "teacher_logits" in inputs:
        t = inputs["teacher_logits"]
        options.append(("teacher_logits", torch.randn(t.shape[0], classes + 3)))
        if t.shape[0] > 1:  # a batch of 1 broadcasts: see the xfail below
            options.append(
                ("teacher_logits", torch.randn(t.shape[0] + 2, classes))
            )
    if "targets" in inputs:
        n = inputs["targets"].shape[0]
        options.append(("targets", torch.full((n,), classes)))
        options.append(("targets", torch.full((n,), -1)))
        if n > 1:
            options.append(("targets", torch.zeros(n + 1, dtype=torch.long)))
    if "tau" in inputs:
        options += [("tau", 0.0), ("tau", -0.5), ("tau", float("nan"))]
    if not options:
        return None
    key, value = rng.choice(options)
    return dict(inputs, **{key: value})


def check_finite(name, fn, inputs):
    value = fn(**inputs)
    assert value.dim() == 0 and torch.isfinite(value), (name, value)
    leaves = [v for v in inputs.values() if torch.is_tensor(v)]
    leaves = [v for v in leaves if v.requires_grad]
    if leaves:
        grads = torch.autograd.grad(value, leaves, allow_unused=True)
        for g in grads:
            assert g is None or torch.isfinite(g).all(), name
    return value


def test_objectives_random_shapes():
    functions = objective_functions()
    assert {"kd.kd_loss", "dkd.dkd_loss", "trkd.trkd_loss"} <= set(functions)
    rng = random.Random(SEED)
    torch.manual_seed(SEED)
    for name, fn in sorted(functions.items()):
        params = inspect.signature(fn).parameters.values()
        names = [p.name for p in params if p.name in INPUTS]
        raised = 0
        for _ in range(120):
            batch = rng.choice([1, 2, 3, 8, 33])
            classes = rng.choice([2, 3, 10, 269, 1211])
            dim = rng.choice([1, 2, 16, 192])
            inputs = random_inputs(rng, names, batch, classes, dim)
            value = check_finite(name, fn, inputs)
            if name.split(".")[1] in ("kd_loss", "dkd_loss", "trkd_loss"):
                # KL divergences (x T^2 = 16): >= 0 up to float32 rounding
                assert value >= -1e-4 * 16, (name, value)
            bad = invalid_inputs(rng, inputs, classes)
            if bad is not None:
                with pytest.raises((ValueError, RuntimeError)):
                    fn(**bad)
                raised += 1
        assert raised or not set(names) & {"targets", "tau"}, name


@pytest.mark.parametrize("case", ["broadcast", "empty", "T0", "T-1"])
@pytest.mark.parametrize("method", ["kd", "dkd", "trkd"])
def test_objectives_reject_degenerate_inputs(case, method):
    from speechbrain_kd.objectives.dkd import dkd_loss
    from speechbrain_kd.objectives.kd import kd_loss
    from speechbrain_kd.objectives.trkd import trkd_loss

    n = 0 if case == "empty" else 4
    s, t = torch.randn(n, 10), torch.randn(n, 10)
    if case == "broadcast":
        s = s[:1]
    T = {"T0": 0.0, "T-1": -1.0}.get(case, 4.0)
    y = torch.zeros(n, dtype=torch.long)
    call = {
        "kd": lambda: kd_loss(s, t, T=T),
        "dkd": lambda: dkd_loss(s, t, y, T=T),
        "trkd": lambda: trkd_loss(s, t, y, tau=0.5, T=T),
    }[method]
    with pytest.raises(ValueError):
        call()


def test_embedding_objectives_random_shapes():
    from speechbrain_kd.objectives.complexity import complexity_loss
    from speechbrain_kd.objectives.embedding import (
        EmbeddingDistillation,
        FrameDistillation,
        cosine_distance,
        frame_cosine_distance,
    )

    rng = random.Random(SEED + 1)
    torch.manual_seed(SEED + 1)
    for _ in range(60):
        batch = rng.choice([1, 2, 5, 16])
        frames = rng.choice([1, 2, 50])
        d_s, d_t = rng.choice([1, 8, 64]), rng.choice([1, 8, 192])
        scale = rng.choice([1e-6, 1e-3, 1.0, 1e3])
        zero = rng.random() < 0.1

        def emb(*shape, scale=scale, zero=zero):
            x = torch.zeros(*shape) if zero else torch.randn(*shape) * scale
            return x.requires_grad_()

        lengths = torch.rand(batch).clamp_min(0.01)
        s = emb(batch, d_t)
        check_finite(
            "cosine",
            cosine_distance,
            {"student": s, "teacher": emb(batch, 1, d_t).detach()},
        )
        with pytest.raises(ValueError):
            cosine_distance(emb(batch, d_t + 1), emb(batch, d_t))
        inputs = {
            "student": emb(batch, frames, d_t),
            "teacher": emb(batch, frames, d_t).detach(),
            "lengths": lengths,
        }
        check_finite("frame_cosine", frame_cosine_distance, inputs)
        with pytest.raises(ValueError):
            frame_cosine_distance(
                emb(batch, frames + 1, d_t), emb(batch, frames, d_t), lengths
            )
        term = EmbeddingDistillation(
            d_s, [{"layers": ["embedding"], "dim": d_t}]
        )
        check_finite(
            "EmbeddingDistillation",
            term,
            {
                "student_embedding": emb(batch, d_s),
                "teacher_embedding": emb(batch, d_t).detach(),
                "lengths": lengths,
            },
        )
        term = FrameDistillation("a", "b", d_s, d_t)
        check_finite(
            "FrameDistillation",
            term,
            {
                "lengths": lengths,
                "student_a": emb(batch, frames, d_s),
                "teacher_b": emb(batch, frames, d_t).detach(),
            },
        )
        with pytest.raises((ValueError, RuntimeError)):
            term(
                lengths=lengths,
                student_a=emb(batch, frames, d_s + 1),
                teacher_b=emb(batch, frames, d_t),
            )
        ratio = torch.tensor(rng.uniform(0, 2), requires_grad=True)
        mode = rng.choice(["abs", "squared", "hinge"])
        target = rng.uniform(0.01, 1)
        value = complexity_loss(ratio, target, mode)
        assert torch.isfinite(value) and value >= 0
