"""The non-timing parts of speechbrain_kd.onnx.latency and its reports."""

import pytest
import torch

from speechbrain_kd.onnx.latency import (
    RUNTIMES,
    make_runner,
    noise_signal,
    op_profile,
    peak_rss_mb,
    runs_for,
    summary,
    time_interleaved,
)
from speechbrain_kd.onnx.latency_report import (
    latency_table,
    ratios,
    replace_block,
    sizes_table,
    update_card_latency,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def row(model, runtime, seconds, batch=1, threads=1, ms=1.0):
    return dict(
        model=model,
        runtime=runtime,
        threads=threads,
        batch=batch,
        seconds=seconds,
        **summary([ms / 1000] * 5, 1, seconds),
        peak_rss_mb=100.0 + seconds,
    )


def test_runs_and_summary():
    assert runs_for(0.0, 1.0) == 200
    assert runs_for(0.01, 1.0, max_runs=50) == 50
    assert runs_for(10.0, 1.0, min_runs=7) == 7
    s = summary([0.004, 0.002, 0.003, 0.001, 0.005], batch=2, seconds=2.0)
    assert s == {"median_ms": 1.5, "p90_ms": 2.3, "runs": 5, "rtf": 0.00075}
    with pytest.raises(ValueError, match="no times"):
        summary([], 1, 1.0)


def test_interleaved_run_counts():
    calls = []
    runners = {k: (lambda k=k: calls.append(k)) for k in "ab"}
    times = time_interleaved(runners, 0.0, min_runs=4, max_runs=9, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4}
    # warm-up, then the runners in turn
    assert calls[:2] == ["a", "b"] and calls[2:6] == ["a", "b", "a", "b"]
    calls.clear()
    times = time_interleaved(runners, 0.0, 2, 9, warmup=1, interleave=False)
    assert {k: len(v) for k, v in times.items()} == {"a": 2, "b": 2}
    assert calls == ["a"] * 3 + ["b"] * 3  # each in a block


def test_table_pivots_lengths():
    rows = [row("s", "onnx_int8", s, ms=s) for s in (1.0, 3.0, 10.0)]
    rows.append(row("t", "pytorch", 3.0))
    lines = latency_table(rows).splitlines()
    assert lines[0].count("median / p90 ms (runs)") == 3
    assert lines[2] == (
        "| s | onnx_int8 | 1 | 1 | 1.00 / 1.00 (5) | 3.00 / 3.00 (5) "
        "| 10.00 / 10.00 (5) | 0.0010 | 110 |"
    )
    assert (
        lines[3] == "| t | pytorch | 1 | 1 | - | 1.00 / 1.00 (5) | - | - | - |"
    )


def test_replace_block():
    text = "x\n<!-- latency -->\nold\n<!-- /latency -->\ny\n"
    assert replace_block(text, "\nnew\n") == (
        "x\n<!-- latency -->\nnew\n<!-- /latency -->\ny\n"
    )
    with pytest.raises(ValueError, match="markers"):
        replace_block("x\n<!-- /latency -->\n<!-- latency -->\n", "new")


def test_card_section(tmp_path):
    card = tmp_path / "README.md"
    card.write_text("# model\n\n## Use\n\ntext\n\n## ONNX\n\nonnx text\n")
    rows = [row("s", "onnx_float", 3.0)]
    update_card_latency(str(tmp_path), rows, "cmd A", "cpu", (3.0,))
    first = card.read_text()
    assert first.startswith("# model\n\n## Use\n\ntext\n\n## ONNX\n")
    assert "## Latency" in first and "`cmd A`" in first
    assert "| s | onnx_float | 1 | 1 | 1.00 / 1.00 (5) |" in first
    # again: one section, replaced, the others kept
    update_card_latency(str(tmp_path), rows, "cmd B", "cpu", (3.0,))
    second = card.read_text()
    assert second.count("## Latency") == 1 and "cmd B" in second
    assert "cmd A" not in second and "onnx text" in second
    with pytest.raises(FileNotFoundError, match="README.md"):
        update_card_latency(str(tmp_path / "none"), rows, "c", "cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny published ECAPA and its float ONNX export."""
    from conftest import publish_tiny_ecapa

    from speechbrain_kd.onnx import export_onnx

    folder = tmp_path_factory.mktemp("tiny") / "pretrained"
    publish_tiny_ecapa(folder, init_seed=0)
    info = export_onnx(str(folder), update_card=False)
    return folder, info["path"]


def test_runners_agree(tiny, tmp_path):
    """The four runtimes embed the same input alike (int8 aside: the float
    file stands in for it)."""
    folder, onnx_path = tiny
    wav = noise_signal(2, 1.0)
    assert wav.shape == (2, 16000) and wav.dtype == "float32"
    out = {}
    for runtime in RUNTIMES:
        source = onnx_path if runtime.startswith("onnx") else str(folder)
        run = make_runner(runtime, source, 1, wav, savedir=str(tmp_path))
        emb = run()
        emb = emb[0] if isinstance(emb, list) else emb
        out[runtime] = torch.as_tensor(emb).reshape(2, -1)
    ref = out["sb_encode_batch"]
    for runtime, emb in out.items():
        assert torch.allclose(emb, ref, atol=1e-4), runtime
    with pytest.raises(ValueError, match="expected one of"):
        make_runner("tflite", onnx_path, 1, wav)


def test_peak_rss(tiny):
    _, onnx_path = tiny
    small = peak_rss_mb("onnx_float", onnx_path, 1, 1, 0.5, calls=1)
    big = peak_rss_mb("onnx_float", onnx_path, 1, 16, 10.0, calls=1)
    # a child of this (torch-loaded) process would report our own RSS
    assert 10 < small < big
    with pytest.raises(RuntimeError, match="memory child"):
        peak_rss_mb("onnx_float", onnx_path + ".missing", 1, 1, 0.5)


def test_op_profile(tiny):
    """Shares of kernel time per operator type: positive, at most 100 in
    all, the convolutions among them."""
    _, onnx_path = tiny
    wav = noise_signal(1, 0.5)[0]
    shares = op_profile(onnx_path, wav, batched=True, runs=2)
    assert 0 < len(shares) <= 12 and all(v >= 0 for v in shares.values())
    assert sum(shares.values()) <= 100.5
    assert any("Conv" in op for op in shares)


def test_ratios_and_sizes_table():
    rows = [
        dict(
            model=m, runtime=r, threads=1, seconds=3.0, batch=1, median_ms=t * f
        )
        for m, f in (("teacher", 1.0), ("student", 0.25))
        for r, t in zip(RUNTIMES, (8.0, 4.0, 2.0, 10.0))
    ]
    out = ratios(rows, ["teacher", "student"])
    assert out["student/teacher onnx_int8"] == 0.25
    assert out["student int8/float ONNX"] == 0.5
    assert out["student int8/encode_batch"] == 0.2
    with pytest.raises(KeyError):
        ratios(rows, ["teacher", "absent"])
    table = sizes_table({"s": dict(zip(RUNTIMES, (2.0, 2.5, 1.25, 2.0)))})
    assert table.splitlines()[2] == "| s | 2.00 | 2.50 | 1.25 | 2.00 |"
