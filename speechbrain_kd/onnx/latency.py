"""CPU latency of a published speaker model in four runtimes.

The measuring parts of ``bench/latency.py``:

- ``make_runner``: one call embedding a ``[batch, samples]`` waveform in
  a runtime: ``pytorch`` (the exported graph's modules in PyTorch:
  ``MatmulFbank`` features, folded ECAPA-TDNN), ``onnx_float`` /
  ``onnx_int8`` (ONNX Runtime, CPU), ``sb_encode_batch`` (SpeechBrain's
  own ``EncoderClassifier.encode_batch``, the published inference path),
  each with ``threads`` intra-op threads;
- ``time_interleaved``: the runners called in turn, each for its own
  number of runs (``runs_for``: as many as fit a time budget, between a
  minimum and a maximum), so that load on the machine hits them alike;
- ``summary``: median / p90 ms per utterance and the real-time factor;
- ``peak_rss_mb``: peak resident memory of a child process that builds
  one runner and calls it (``os.wait4``: that child's own ``maxrss``);
- ``op_profile``: ONNX Runtime's share of kernel time per operator type.

The tables and model-card sections are ``latency_report``'s.

``python -m speechbrain_kd.onnx.latency memory ...`` is the child.
"""

import argparse
import json
import math
import os
import subprocess
import sys

RUNTIMES = ("pytorch", "onnx_float", "onnx_int8", "sb_encode_batch")


def runs_for(seconds_per_call, budget_s, min_runs=10, max_runs=200):
    """Number of timed runs of a call that takes ``seconds_per_call``: as
    many as fit ``budget_s``, clamped to ``[min_runs, max_runs]``.

    Example
    -------
    >>> runs_for(0.001, 2.0), runs_for(0.05, 2.0), runs_for(1.0, 2.0)
    (200, 40, 10)
    """
    if seconds_per_call <= 0:
        return max_runs
    return int(min(max_runs, max(min_runs, budget_s / seconds_per_call)))


def summary(times_s, batch, seconds):
    """Per-utterance figures of call times ``times_s`` (seconds) for
    ``batch`` utterances of ``seconds`` of audio each.

    Example
    -------
    >>> s = summary([0.010] * 9 + [0.020], batch=2, seconds=1.0)
    >>> s["median_ms"], s["p90_ms"], s["runs"], s["rtf"]
    (5.0, 5.5, 10, 0.005)
    """
    if not times_s:
        raise ValueError("summary: no times")
    ordered = sorted(times_s)
    n = len(ordered)

    def quantile(q):  # linear interpolation, as numpy's default
        pos = q * (n - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, n - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    median = 1000 * quantile(0.5) / batch
    return {
        "median_ms": round(median, 3),
        "p90_ms": round(1000 * quantile(0.9) / batch, 3),
        "runs": n,
        "rtf": round(median / 1000 / seconds, 5),
    }


def time_interleaved(
    runners, budget_s, min_runs=10, max_runs=200, warmup=3, interleave=True
):
    """Call times (seconds) of each of ``runners`` (name -> callable);
    each runs ``runs_for`` its warm-up time. ``interleave``: the runners
    called in turn, so that load on the machine hits them alike (for one
    thread); else each runner's runs in one block after its own warm-up
    (for several threads: the idle worker threads of one runtime spin for
    a while after its call and would take the next runner's cores).

    Example
    -------
    >>> times = time_interleaved({"a": lambda: None}, 0.01, 5, 8, 1)
    >>> len(times["a"])
    8
    """
    import time

    def warm(run):
        t0 = time.perf_counter()
        for _ in range(warmup):
            run()
        per_call = (time.perf_counter() - t0) / max(1, warmup)
        return runs_for(per_call, budget_s, min_runs, max_runs)

    def timed(run):
        t0 = time.perf_counter()
        run()
        return time.perf_counter() - t0

    if not interleave:
        return {
            name: [timed(run) for _ in range(warm(run))]
            for name, run in runners.items()
        }
    runs = {name: warm(run) for name, run in runners.items()}
    times = {name: [] for name in runners}
    for i in range(max(runs.values())):
        for name, run in runners.items():
            if i < runs[name]:
                times[name].append(timed(run))
    return times


def make_runner(runtime, source, threads, wav, savedir=None):
    """A callable embedding ``wav`` (``[batch, samples]`` float32 numpy)
    with ``runtime`` (one of ``RUNTIMES``), ``threads`` threads (default
    thread pools otherwise: idle worker threads spin for a while, as in
    a deployment).

    ``source`` is the ``.onnx`` file for the ONNX runtimes, the published
    folder otherwise (``savedir``: where ``from_hparams`` links it).
    """
    import numpy

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}: expected one of {RUNTIMES}")
    lens = numpy.ones(len(wav), dtype="float32")
    if runtime.startswith("onnx"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(
            source, options, providers=["CPUExecutionProvider"]
        )
        feed = {"wav": wav}
        if "wav_lens" in {i.name for i in session.get_inputs()}:
            feed["wav_lens"] = lens
        return lambda: session.run(None, feed)
    import torch
    from speechbrain.inference.speaker import EncoderClassifier

    torch.set_num_threads(threads)
    model = EncoderClassifier.from_hparams(
        source=os.path.abspath(source),
        savedir=savedir,
        run_opts={"device": "cpu"},
    )
    tw, tl = torch.from_numpy(wav), torch.from_numpy(lens)
    if runtime == "sb_encode_batch":

        def run():
            with torch.no_grad():
                return model.encode_batch(tw, tl)

        return run
    from speechbrain_kd.onnx.export import WaveformEncoder, fast_features
    from speechbrain_kd.onnx.fold import fold_ecapa

    mods = model.mods
    module = WaveformEncoder(
        fast_features(mods.compute_features),
        mods.mean_var_norm,
        fold_ecapa(mods.embedding_model.eval()),
    ).eval()

    def run():
        with torch.inference_mode():
            return module(tw, tl)

    return run


def noise_signal(batch, seconds, sample_rate=16000, seed=0):
    """``[batch, samples]`` float32 white noise (std 0.05), seeded."""
    import numpy

    g = numpy.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    return (0.05 * g.standard_normal((batch, n))).astype("float32")


# Runs argv[1:] and prints [exit code, maxrss of that child (KB)]
_LAUNCHER = (
    "import json, os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "print(json.dumps([os.waitstatus_to_exitcode(status), usage.ru_maxrss]))"
)


# The ONNX Runtime child: numpy and onnxruntime only (what a deployer
# loads), the input of ``noise_signal``
_ONNX_CHILD = (
    "import sys, numpy, onnxruntime as ort\n"
    "path, threads, batch, seconds, calls = sys.argv[1:]\n"
    "o = ort.SessionOptions()\n"
    "o.intra_op_num_threads, o.inter_op_num_threads = int(threads), 1\n"
    "s = ort.InferenceSession(path, o, providers=['CPUExecutionProvider'])\n"
    "n = int(round(float(seconds) * 16000))\n"
    "g = numpy.random.default_rng(0)\n"
    "wav = (0.05 * g.standard_normal((int(batch), n))).astype('float32')\n"
    "feed = {'wav': wav}\n"
    "if 'wav_lens' in {i.name for i in s.get_inputs()}:\n"
    "    feed['wav_lens'] = numpy.ones(int(batch), dtype='float32')\n"
    "for _ in range(int(calls)):\n"
    "    s.run(None, feed)\n"
)


def peak_rss_mb(runtime, source, threads, batch, seconds, calls=3):
    """Peak resident memory (MB) of a child process that builds the
    ``runtime`` runner of ``source`` and calls it ``calls`` times on
    ``batch`` x ``seconds`` of audio (``noise_signal``): Python, the
    libraries it loads and the model included. The ONNX Runtime child
    imports numpy and onnxruntime only; the PyTorch ones torch,
    SpeechBrain and this package."""
    sizes = [str(threads), str(batch), str(seconds), str(calls)]
    if runtime.startswith("onnx"):
        command = [sys.executable, "-c", _ONNX_CHILD, source, *sizes]
    else:
        module = "speechbrain_kd.onnx.latency"
        command = [sys.executable, "-m", module, "memory", runtime, source]
        command += sizes
    # Linux counts the memory a child had before its exec (a copy of its
    # parent's) in its maxrss: start it from a small launcher process, not
    # from this one (which may hold models and libraries)
    proc = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *command],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"memory child for {runtime} {source} failed:\n"
            f"{proc.stderr[-2000:]}"
        )
    code, maxrss_kb = json.loads(proc.stdout.strip().splitlines()[-1])
    if code != 0:
        raise RuntimeError(
            f"memory child for {runtime} {source} exited with {code}:\n"
            f"{proc.stderr[-2000:]}"
        )
    return round(maxrss_kb / 1024, 1)  # Linux: kilobytes


def op_profile(path, wav, batched, runs=20):
    """Share (%) of ONNX Runtime kernel time per operator type of the
    model at ``path`` embedding ``wav`` (``[samples]``) ``runs`` times
    with 1 thread: the 12 largest."""
    import collections
    import tempfile

    import numpy
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    options.log_severity_level = 3
    feed = {"wav": wav[None].astype("float32")}
    if batched:
        feed["wav_lens"] = numpy.ones(1, dtype="float32")
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = os.path.join(tmp, "prof")
        sess = ort.InferenceSession(
            path, options, providers=["CPUExecutionProvider"]
        )
        for _ in range(runs):
            sess.run(None, feed)
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    times = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times[e["args"]["op_name"]] += e["dur"]
    total = sum(times.values())
    return {op: round(100 * t / total, 1) for op, t in times.most_common(12)}


def _memory_child(argv):
    parser = argparse.ArgumentParser(prog="latency memory")
    parser.add_argument("runtime", choices=RUNTIMES)
    parser.add_argument("source")
    parser.add_argument("threads", type=int)
    parser.add_argument("batch", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("calls", type=int)
    args = parser.parse_args(argv)
    import tempfile

    wav = noise_signal(args.batch, args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        run = make_runner(
            args.runtime, args.source, args.threads, wav, savedir=tmp
        )
        for _ in range(args.calls):
            run()
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "memory":
        sys.exit(_memory_child(sys.argv[2:]))
    sys.exit(f"usage: python -m {__spec__.name} memory RUNTIME SOURCE ...")
