"""Log-mel filterbank features as two matrix products (export-friendly).

``MatmulFbank`` computes what ``speechbrain.lobes.features.Fbank`` computes
(centred STFT with a Hamming window, power spectrum, triangular mel
filters, ``10 * log10`` clamped at ``amin`` and limited to ``top_db``
below each sequence's maximum) with plain tensor operations:

1. frames: the zero-padded waveform cut into ``hop``-sample chunks,
   ``ceil(n_fft / hop)`` shifted copies concatenated (no gather, no
   ``unfold``);
2. the windowed real DFT as one matmul ``frames @ dft``: ``dft`` is
   ``[n_fft, n_fft]``, the Hamming window folded into its rows, its
   columns the cosines of the ``n_fft / 2 + 1`` bins and the sines of
   the bins whose sine is not identically zero (all but DC and Nyquist),
   so exactly the ``n_fft`` real numbers of the one-sided spectrum;
3. the power spectrum and the mel filters as ``(spec * spec) @ mel``:
   ``mel`` is the filter matrix with the rows of each bin's cosine and
   sine part equal, so the sum ``re**2 + im**2`` happens inside the
   product.

In ONNX this is Pad, Reshape, Slice/Concat, MatMul, Mul, MatMul, Log: no
DFT operator (slow in ONNX Runtime for ``n_fft = 400``), no
convolution with ``2 * (n_fft / 2 + 1)`` kernels, no ``Pow``. The values
equal SpeechBrain's up to float32 rounding (a DFT by matmul, not an FFT):
``tests/test_fbank.py`` checks features and embeddings.
"""

import math

import torch

# Fbank arguments this module reproduces and the values it supports
# (None: any value); anything else is an error.
_FIXED = {
    "deltas": False,
    "context": False,
    "requires_grad": False,
    "filter_shape": "triangular",
    "param_rand_factor": 0.0,
    # only used by the options above (learnable filters, context)
    "param_change_factor": None,
    "left_frames": None,
    "right_frames": None,
}


def _to_mel(hz):
    return 2595 * math.log10(1 + hz / 700)


def mel_matrix(n_mels, n_fft, sample_rate, f_min, f_max):
    """SpeechBrain's triangular mel filters, ``[n_fft // 2 + 1, n_mels]``.

    The same float32 operations as ``speechbrain.processing.features.
    Filterbank`` (frozen, triangular), hence the same values.

    Example
    -------
    >>> from speechbrain.processing.features import Filterbank
    >>> sb = Filterbank(n_mels=24, f_max=8000)
    >>> ours = mel_matrix(24, 400, 16000, 0, 8000)
    >>> f_c = sb.f_central.repeat(201, 1).T
    >>> band = sb.band.repeat(201, 1).T
    >>> bool((sb._create_fbank_matrix(f_c, band) == ours).all())
    True
    """
    if f_min >= f_max:
        raise ValueError(f"mel filters need f_min < f_max, got {f_min}, {f_max}")
    mel = torch.linspace(_to_mel(f_min), _to_mel(f_max), n_mels + 2)
    hz = 700 * (10 ** (mel / 2595) - 1)
    band = (hz[1:] - hz[:-1])[:-1]
    f_central = hz[1:-1]
    n_stft = n_fft // 2 + 1
    freqs = torch.linspace(0, sample_rate // 2, n_stft).repeat(n_mels, 1)
    slope = (freqs - f_central[:, None]) / band[:, None]
    zero = torch.zeros(1)
    return torch.max(zero, torch.min(slope + 1.0, -slope + 1.0)).T


def dft_matrix(window, n_fft):
    """The windowed one-sided real DFT as an ``[n_fft, n_fft]`` matrix.

    Column ``k`` (``k <= n_fft // 2``) is ``window * cos(2 pi k n / n_fft)``;
    the next columns are ``-window * sin(...)`` for the bins whose sine is
    not zero (``0 < k < n_fft / 2``). A window shorter than ``n_fft`` is
    centred, as ``torch.stft`` does. Computed in float64.

    Example
    -------
    >>> w = torch.hamming_window(8, dtype=torch.float64)
    >>> x = torch.randn(8, dtype=torch.float64)
    >>> spec = x @ dft_matrix(w, 8)
    >>> ref = torch.fft.rfft(x * w)
    >>> torch.allclose(spec[:5], ref.real), torch.allclose(spec[5:], ref.imag[1:4])
    (True, True)
    """
    window = window.to(torch.float64)
    left = (n_fft - window.numel()) // 2
    window = torch.nn.functional.pad(
        window, (left, n_fft - window.numel() - left)
    )
    n = torch.arange(n_fft, dtype=torch.float64)
    cos_bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    sin_bins = torch.arange(1, (n_fft + 1) // 2, dtype=torch.float64)
    # angles from (k n mod n_fft): exact arguments, accurate sin / cos
    cos = torch.cos(2 * math.pi * (torch.outer(n, cos_bins) % n_fft) / n_fft)
    sin = -torch.sin(2 * math.pi * (torch.outer(n, sin_bins) % n_fft) / n_fft)
    return torch.cat([cos, sin], dim=1) * window[:, None]


class MatmulFbank(torch.nn.Module):
    """``speechbrain.lobes.features.Fbank`` by matrix products.

    Takes ``Fbank``'s arguments; supports its defaults (Hamming window,
    centred zero-padded STFT, triangular filters, log mel with ``amin``
    1e-10, ``ref_value`` 1 and ``top_db`` 80) with any ``n_mels``,
    ``sample_rate``, ``f_min``, ``f_max``, ``n_fft``, ``win_length`` <=
    ``n_fft`` and ``hop_length`` (ms). Other options (deltas, context,
    learnable or non-triangular filters) raise ``ValueError`` naming the
    option. Input ``[batch, time]`` float waveforms; output
    ``[batch, time // hop + 1, n_mels]``, as ``Fbank``.

    Example
    -------
    >>> from speechbrain.lobes.features import Fbank
    >>> wav = 0.1 * torch.randn(2, 16000 + 37)
    >>> sb = Fbank(n_mels=80)
    >>> ours = MatmulFbank.from_fbank(sb)
    >>> ours(wav).shape
    torch.Size([2, 101, 80])
    >>> bool((ours(wav) - sb(wav)).abs().max() < 1e-3)
    True
    """

    def __init__(
        self,
        n_mels=40,
        sample_rate=16000,
        f_min=0,
        f_max=None,
        n_fft=400,
        win_length=25,
        hop_length=10,
        amin=1e-10,
        ref_value=1.0,
        top_db=80.0,
        **fixed,
    ):
        super().__init__()
        for key, value in fixed.items():
            if key not in _FIXED:
                raise ValueError(
                    f"MatmulFbank: unknown Fbank option {key!r} (supported: "
                    f"{sorted(_FIXED)} at their defaults)"
                )
            if _FIXED[key] is not None and value != _FIXED[key]:
                raise ValueError(
                    f"MatmulFbank supports Fbank's {key}={_FIXED[key]!r} "
                    f"only, got {value!r}"
                )
        if f_max is None:
            f_max = sample_rate // 2
        win = int(round(sample_rate / 1000.0 * win_length))
        hop = int(round(sample_rate / 1000.0 * hop_length))
        if not 0 < win <= n_fft or hop <= 0:
            raise ValueError(
                f"MatmulFbank needs 0 < win_length <= n_fft and hop_length "
                f"> 0 (samples), got win {win}, n_fft {n_fft}, hop {hop}"
            )
        self.n_fft, self.hop = n_fft, hop
        self.chunks = -(-n_fft // hop)  # ceil
        self.top_db = float(top_db)
        self.amin = float(amin)
        self.offset = 10.0 * math.log10(max(amin, ref_value))
        window = torch.hamming_window(win)
        self.register_buffer(
            "dft", dft_matrix(window, n_fft).float(), persistent=False
        )
        mel = mel_matrix(n_mels, n_fft, sample_rate, f_min, f_max)
        # rows of the sine columns: the mel rows of bins 1 .. n_sin
        mel = torch.cat([mel, mel[1 : (n_fft + 1) // 2]])
        self.register_buffer("mel", mel, persistent=False)

    @classmethod
    def from_fbank(cls, fbank):
        """The ``MatmulFbank`` of a ``speechbrain.lobes.features.Fbank``
        instance (its options read from its sub-modules); ``ValueError``
        if it uses an option this module does not support."""
        stft, fb = fbank.compute_STFT, fbank.compute_fbanks
        checks = {
            "STFT window_fn (Hamming)": torch.equal(
                stft.window, torch.hamming_window(stft.win_length)
            ),
            "STFT center=True": stft.center,
            "STFT pad_mode='constant'": stft.pad_mode == "constant",
            "STFT onesided=True": stft.onesided,
            "STFT normalized_stft=False": not stft.normalized_stft,
            "Filterbank log_mel=True": fb.log_mel,
            "Filterbank power_spectrogram=2": fb.power_spectrogram == 2,
            "Filterbank freeze=True": fb.freeze,
            "Fbank deltas=False": not fbank.deltas,
            "Fbank context=False": not fbank.context,
            "Filterbank filter_shape='triangular'": (
                fb.filter_shape == "triangular"
            ),
            "Filterbank param_rand_factor=0": fb.param_rand_factor == 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"MatmulFbank does not support this Fbank: {bad}")
        module = cls(
            n_mels=fb.n_mels,
            sample_rate=stft.sample_rate,
            f_min=fb.f_min,
            f_max=fb.f_max,
            n_fft=stft.n_fft,
            win_length=1000.0 * stft.win_length / stft.sample_rate,
            hop_length=1000.0 * stft.hop_length / stft.sample_rate,
            amin=fb.amin,
            ref_value=fb.ref_value,
            top_db=fb.top_db,
        )
        if module.hop != stft.hop_length:
            raise ValueError(
                f"MatmulFbank: hop {module.hop} != the STFT's "
                f"{stft.hop_length} samples"
            )
        return module

    def frames(self, wav):
        """``[batch, time // hop + 1, n_fft]`` frames of the centred,
        zero-padded ``wav`` ``[batch, time]``."""
        hop, chunks = self.hop, self.chunks
        n_frames = wav.shape[1] // hop + 1
        half = self.n_fft // 2
        # torch.stft (center): n_fft // 2 zeros each side; then enough
        # zeros for (n_frames + chunks - 1) whole chunks
        padded = torch.nn.functional.pad(wav, (half, chunks * hop))
        padded = padded[:, : (n_frames + chunks - 1) * hop]
        blocks = padded.reshape(wav.shape[0], n_frames + chunks - 1, hop)
        parts = [blocks[:, i : i + n_frames] for i in range(chunks)]
        return torch.cat(parts, dim=-1)[..., : self.n_fft]

    def forward(self, wav):
        """Log-mel features ``[batch, frames, n_mels]`` of ``wav``."""
        if wav.dim() != 2:
            raise ValueError(
                f"MatmulFbank takes [batch, time] waveforms, got shape "
                f"{tuple(wav.shape)}"
            )
        wav = wav.float()
        spec = self.frames(wav) @ self.dft
        fbanks = (spec * spec) @ self.mel
        x_db = 10.0 * torch.log10(torch.clamp(fbanks, min=self.amin))
        if self.offset:
            x_db = x_db - self.offset
        floor = x_db.amax(dim=(-2, -1), keepdim=True) - self.top_db
        return torch.max(x_db, floor)
