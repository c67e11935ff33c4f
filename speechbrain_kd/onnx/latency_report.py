"""Reports of CPU latency measurements (``latency``): the markdown table,
the goal ratios, the block of ``bench/RESULTS.md`` between marker
comments and the "Latency" section of a model card."""

import os

from speechbrain_kd.fileio import atomic_write_text
from speechbrain_kd.onnx.latency import RUNTIMES

START, END = "<!-- latency -->", "<!-- /latency -->"


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


def sizes_mb(folder, files):
    """File sizes (MB) per runtime: the embedding checkpoint of the
    published ``folder`` for the PyTorch runtimes, ``files[runtime]``
    (paths) for the others."""
    ckpt = os.path.getsize(os.path.join(folder, "embedding_model.ckpt"))
    out = {"pytorch": ckpt, "sb_encode_batch": ckpt}
    out.update({k: os.path.getsize(p) for k, p in files.items()})
    return {k: round(v / 1e6, 3) for k, v in out.items()}


def sizes_table(sizes):
    """Markdown table of ``{model: sizes_mb(...)}``."""
    lines = ["| model | " + " | ".join(RUNTIMES) + " |"]
    lines.append("|---|" + "---|" * len(RUNTIMES))
    for k, s in sizes.items():
        cells = " | ".join(f"{s[r]:.2f}" for r in RUNTIMES)
        lines.append(f"| {k} | {cells} |")
    return "\n".join(lines)


def pick(rows, model, runtime, threads=1, seconds=3.0, batch=1):
    """Median ms per utterance of one configuration of ``rows``."""
    for r in rows:
        key = (r["model"], r["runtime"], r["threads"], r["seconds"])
        if key == (model, runtime, threads, seconds) and r["batch"] == batch:
            return r["median_ms"]
    raise KeyError((model, runtime, threads, seconds, batch))


def ratios(rows, labels):
    """The goal ratios of medians at 1 thread, 3 s, batch 1: each student
    (``labels[1:]``) over the teacher (``labels[0]``) per runtime, and
    the student's int8 time over its float ONNX and ``encode_batch``.

    Example
    -------
    >>> rows = [dict(model=m, runtime=r, threads=1, seconds=3.0, batch=1,
    ...              median_ms=t * (1 if m == "t" else 0.5))
    ...         for m in "ts" for r, t in zip(RUNTIMES, (8, 4, 2, 10))]
    >>> ratios(rows, ["t", "s"])["s int8/encode_batch"]
    0.2
    """
    teacher, students = labels[0], labels[1:]
    out = {}
    for s in students:
        for r in RUNTIMES:
            out[f"{s}/{teacher} {r}"] = pick(rows, s, r) / pick(
                rows, teacher, r
            )
        int8 = pick(rows, s, "onnx_int8")
        out[f"{s} int8/float ONNX"] = int8 / pick(rows, s, "onnx_float")
        out[f"{s} int8/encode_batch"] = int8 / pick(rows, s, "sb_encode_batch")
    return {k: round(v, 3) for k, v in out.items()}


def results_block(result, seconds):
    """The ``bench/RESULTS.md`` block of a ``bench/latency.py`` result
    (``machine``, ``command``, ``total_s``, ``rows``, ``sizes_mb``,
    ``ratios_1thread_3s_batch1``)."""
    ratio_text = "; ".join(
        f"{k} {v:.2f}" for k, v in result["ratios_1thread_3s_batch1"].items()
    )
    return "\n".join(
        [
            f"Machine: {result['machine']}. Command: `{result['command']}` "
            f"({result['total_s']} s).",
            "",
            latency_table(result["rows"], seconds),
            "",
            "File MB (PyTorch: the embedding model checkpoint):",
            "",
            sizes_table(result["sizes_mb"]),
            "",
            f"Ratios of medians (1 thread, 3 s, batch 1): {ratio_text}.",
        ]
    )
