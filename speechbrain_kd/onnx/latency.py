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
- ``latency_table`` / ``replace_block`` / ``update_card_latency``: the
  markdown table, the block of ``bench/RESULTS.md`` between marker
  comments, and the "Latency" section of a model card.

``python -m speechbrain_kd.onnx.latency memory ...`` is the child.
"""

import argparse
import json
import math
import os
import subprocess
import sys

from speechbrain_kd.fileio import atomic_write_text

RUNTIMES = ("pytorch", "onnx_float", "onnx_int8", "sb_encode_batch")
START, END = "<!-- latency -->", "<!-- /latency -->"


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


def _cell(row):
    if row is None:
        return "-"
    return f"{row['median_ms']:.2f} / {row['p90_ms']:.2f} ({row['runs']})"


def latency_table(rows, seconds=(1.0, 3.0, 10.0)):
    """Markdown table of ``rows`` (dicts with ``model``, ``runtime``,
    ``threads``, ``batch``, ``seconds``, ``median_ms``, ``p90_ms``,
    ``runs``, ``rtf``, optional ``peak_rss_mb``): one line per model,
    runtime, threads and batch; per audio length "median / p90 ms per
    utterance (runs)"; the real-time factor and peak memory at the
    longest.

    Example
    -------
    >>> row = dict(model="s", runtime="onnx_int8", threads=1, batch=1,
    ...            seconds=1.0, median_ms=2.0, p90_ms=2.5, runs=200,
    ...            rtf=0.002, peak_rss_mb=80.0)
    >>> print(latency_table([row], seconds=(1.0,)).splitlines()[2])
    | s | onnx_int8 | 1 | 1 | 2.00 / 2.50 (200) | 0.0020 | 80 |
    """
    cells = {}
    order = []
    for r in rows:
        key = (r["model"], r["runtime"], r["threads"], r["batch"])
        if key not in cells:
            order.append(key)
        cells.setdefault(key, {})[float(r["seconds"])] = r
    longest = max(seconds)
    head = " | ".join(f"{s:g} s: median / p90 ms (runs)" for s in seconds)
    lines = [
        f"| model | runtime | threads | batch | {head} "
        f"| RTF at {longest:g} s | peak RSS MB at {longest:g} s |",
        "|---|---|---|---|" + "---|" * len(seconds) + "---|---|",
    ]
    for key in order:
        per = cells[key]
        last = per.get(float(longest))
        rtf = f"{last['rtf']:.4f}" if last else "-"
        rss = last.get("peak_rss_mb") if last else None
        rss = f"{rss:.0f}" if rss is not None else "-"
        row = " | ".join(_cell(per.get(float(s))) for s in seconds)
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {row} "
            f"| {rtf} | {rss} |"
        )
    return "\n".join(lines)


def replace_block(text, block, start=START, end=END):
    """``text`` with what lies between the marker lines ``start`` and
    ``end`` replaced by ``block``.

    Example
    -------
    >>> replace_block("a\\n<!-- latency -->\\nold\\n<!-- /latency -->\\nb",
    ...               "new")
    'a\\n<!-- latency -->\\nnew\\n<!-- /latency -->\\nb'
    """
    i, j = text.find(start), text.find(end)
    if i < 0 or j < 0 or j < i:
        raise ValueError(
            f"markers {start!r} ... {end!r} not found in this order"
        )
    return text[: i + len(start)] + "\n" + block.strip("\n") + "\n" + text[j:]


def update_card_latency(folder, rows, command, machine, seconds=None):
    """Writes (or replaces) the "Latency" section of ``folder``'s model
    card (``README.md``, atomically): the ``latency_table`` of ``rows``,
    the machine and the command that measured them. The section goes at
    the end; a later ONNX export (which rewrites the card from its "ONNX"
    section on) drops it, as the figures are then out of date."""
    card = os.path.join(folder, "README.md")
    if not os.path.isfile(card):
        raise FileNotFoundError(f"{card}: no model card to update")
    with open(card) as f:
        text = f.read()
    head, sep, tail = text.partition("\n## Latency\n")
    if sep:  # keep the sections after the old Latency section
        nxt = tail.find("\n## ")
        tail = tail[nxt:] if nxt >= 0 else ""
    text = head.rstrip("\n") + "\n" + tail.rstrip("\n")
    section = [
        "",
        "## Latency",
        "",
        f"CPU time per utterance ({machine}); median / p90 over the runs "
        "in brackets; RTF: compute time per second of audio.",
        "",
        latency_table(rows, seconds or (1.0, 3.0, 10.0)),
        "",
        f"Measured with `{command}`.",
        "",
    ]
    atomic_write_text(card, text.rstrip("\n") + "\n" + "\n".join(section))
    return card


def machine_description():
    """CPU model and the library versions, one line."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = []
    for name in ("torch", "onnxruntime"):
        try:
            module = __import__(name)
            versions.append(f"{name} {module.__version__}")
        except ImportError:
            pass
    return ", ".join([cpu, f"{os.cpu_count()} logical CPUs", *versions])


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
