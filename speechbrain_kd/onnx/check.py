"""Checks an exported ONNX graph against PyTorch on synthetic test audio.

The check inputs are white noise and a speech-like signal
(``speech_like``) of ``CHECK_SECONDS``, and a padded batch when the graph
is batched; ``onnx_differences`` runs them in ONNX Runtime and in PyTorch
and reports the largest differences of the embeddings.
"""

import torch

CHECK_SECONDS = (1.0, 3.0, 7.3)


def speech_like(n, sample_rate, generator):
    """A voiced-speech-like test signal: harmonics of a wandering f0 under a
    syllable-rate envelope, breath noise, and a near-silent pause (the
    low-energy bins where float32 FFTs differ most)."""
    t = torch.arange(n) / sample_rate
    f0 = 100 + 150 * torch.rand(1, generator=generator)
    phase = (
        2
        * torch.pi
        * torch.cumsum(f0 * (1 + 0.1 * torch.sin(2 * torch.pi * 1.3 * t)), 0)
        / sample_rate
    )
    voiced = sum(torch.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1 + torch.sin(2 * torch.pi * 4 * t)) ** 2
    wav = 0.05 * envelope * voiced
    wav = wav + 0.003 * torch.randn(n, generator=generator)
    pause = slice(n // 3, n // 3 + n // 8)
    wav[pause] = 1e-4 * torch.randn(n // 8, generator=generator)
    return wav


def _check_batches(batched, sample_rate, generator):
    """Test inputs: several lengths of white noise and of a speech-like
    signal; a padded batch when ``batched``."""
    cases = []
    for seconds in CHECK_SECONDS:
        n = int(seconds * sample_rate)
        cases.append((0.1 * torch.randn(1, n, generator=generator), None))
        speech = speech_like(n, sample_rate, generator).unsqueeze(0)
        cases.append((speech, None))
    if batched:
        n = int(CHECK_SECONDS[-1] * sample_rate)
        wav = torch.stack(
            [speech_like(n, sample_rate, generator) for _ in range(3)]
        )
        lens = torch.tensor([1.0, 0.55, 0.8])
        for i, rel in enumerate(lens.tolist()):
            wav[i, round(rel * n) :] = 0.0
        cases.append((wav, lens))
    return [
        (wav, torch.ones(wav.shape[0]) if lens is None else lens)
        for wav, lens in cases
    ]


@torch.no_grad()
def onnx_differences(path, module, batched, sample_rate=16000, seed=0):
    """|ONNX Runtime - PyTorch| embedding differences over the check inputs.

    Arguments
    ---------
    path : str
        ``.onnx`` file.
    module : WaveformEncoder
        The PyTorch model it was exported from.
    batched : bool
        Whether the graph takes ``wav_lens`` and a dynamic batch.
    sample_rate : int
        Rate of the synthetic test audio.
    seed : int
        Seed of the test audio.

    Returns
    -------
    dict
        ``max_abs_diff``; ``max_rel_diff``: the difference divided by the
        embedding's scale (its largest magnitude, at least 1), worst case;
        ``max_cosine_diff``: the difference of the length-normalised
        embeddings (what cosine scoring sees).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        path, options, providers=["CPUExecutionProvider"]
    )
    generator = torch.Generator().manual_seed(seed)
    out = {"max_abs_diff": 0.0, "max_rel_diff": 0.0, "max_cosine_diff": 0.0}
    for wav, lens in _check_batches(batched, sample_rate, generator):
        feed = {"wav": wav.numpy()}
        if batched:
            feed["wav_lens"] = lens.numpy()
            ref = module(wav, lens)
        else:
            ref = module(wav)
        got = torch.from_numpy(session.run(None, feed)[0])
        if got.shape != ref.shape:
            raise RuntimeError(
                f"{path}: ONNX output shape {tuple(got.shape)} != PyTorch "
                f"{tuple(ref.shape)}"
            )
        diff = (got - ref).abs()
        scale = ref.abs().amax(-1, keepdim=True).clamp_min(1.0)
        unit = torch.nn.functional.normalize
        figures = {
            "max_abs_diff": float(diff.max()),
            "max_rel_diff": float((diff / scale).max()),
            "max_cosine_diff": float(
                (unit(got, dim=-1) - unit(ref, dim=-1)).abs().max()
            ),
        }
        for key, value in figures.items():
            out[key] = max(out[key], value)
    return out
