"""Log-mel filterbank features as two matrix products (export-friendly).

``MatmulFbank`` computes what ``speechbrain.lobes.features.Fbank`` computes
(centred STFT with a Hamming window, power spectrum, triangular mel
filters, ``10 * log10`` clamped at ``amin`` and limited to ``top_db``
below each sequence's maximum) with plain tensor operations:

1. frames: the zero-padded waveform cut into ``hop``-sample chunks,
   ``ceil(n_fft / hop)`` shifted copies concatenated (no gather, no
   ``unfold``), times the window;
2. the one-sided real DFT in two matrix-product stages (Cooley-Tukey,
   ``n_fft = p * q``, 20 x 20 for 400, ``dft_stages``): ``p``-point DFTs
   as one matmul, then, for each of their ``p`` bins, a ``q``-point DFT
   with the twiddle factors folded into its matrix, as one batched
   matmul; ~10 M multiply-adds for 3 s instead of ~48 M for the direct
   ``[n_fft, n_fft / 2 + 1]`` DFT, and all ``n_fft / 2 + 1`` bins;
3. the power spectrum ``re * re + im * im`` in the stage-2 order of the
   bins, and the mel filters as one product with the filter matrix's
   rows in that order (the reordering happens inside the product; rows
   of bins past ``n_fft / 2`` are zero).

In ONNX this is Pad, Slice/Concat, Mul, one Transpose of the frames, four
MatMul, one Transpose of the power spectrum, Log: no DFT operator (slow in
ONNX Runtime for ``n_fft = 400``), no convolution, no ``Pow``. Measured
for 3 s, 1 thread (``bench/RESULTS.md``, front-end candidates): ~1.0 ms
in ONNX Runtime, against ~1.5 ms for the direct DFT matmul, ~2.0 ms for
the DFT convolution and ~13 ms for ONNX's DFT operator. The values equal
SpeechBrain's up to float32 rounding (within 3e-4 dB on random input):
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
    >>> sb = Filterbank(n_mels=24, f_max=8000, log_mel=False)
    >>> power = torch.rand(2, 5, 201)
    >>> torch.equal(sb(power), power @ mel_matrix(24, 400, 16000, 0, 8000))
    True
    """
    if f_min >= f_max:
        raise ValueError(
            f"mel filters need f_min < f_max, got {f_min}, {f_max}"
        )
    mel = torch.linspace(_to_mel(f_min), _to_mel(f_max), n_mels + 2)
    hz = 700 * (10 ** (mel / 2595) - 1)
    band = (hz[1:] - hz[:-1])[:-1]
    f_central = hz[1:-1]
    n_stft = n_fft // 2 + 1
    freqs = torch.linspace(0, sample_rate // 2, n_stft).repeat(n_mels, 1)
    slope = (freqs - f_central[:, None]) / band[:, None]
    zero = torch.zeros(1)
    return torch.max(zero, torch.min(slope + 1.0, -slope + 1.0)).T


def split_size(n_fft):
    """``(p, q)``, ``p * q == n_fft``, ``p`` the largest divisor of ``n_fft``
    at most ``sqrt(n_fft)``: the two DFT sizes of ``MatmulFbank``.
    """
    p = max(d for d in range(1, math.isqrt(n_fft) + 1) if n_fft % d == 0)
    return p, n_fft // p


def dft_stages(n_fft):
    """Matrices of the one-sided DFT of ``n_fft`` real samples in two
    stages (Cooley-Tukey, ``n_fft = p * q``, ``split_size``), float64.

    With ``n = n_f + q * n_s`` and ``k = k_a + p * k_b``: stage 1, ``[p,
    2 p]``, is the ``p``-point DFT over ``n_s`` (real input: columns cos,
    then -sin, of ``k_a``); stage 2, ``[p, 2 q, 2 m]`` (``m = q // 2 +
    1``), is for each ``k_a`` the ``q``-point DFT over ``n_f`` with the
    twiddle factors folded in, from (real, imaginary) parts to (real,
    imaginary) parts of ``k_b = 0 .. m - 1``, which covers every bin
    ``k <= n_fft // 2``.

    Example
    -------
    >>> x = torch.randn(3, 12, dtype=torch.float64)
    >>> one, two = dft_stages(12)  # p = 3, q = 4
    >>> y = x.reshape(3, 3, 4).transpose(1, 2) @ one  # [3, n_f, 2 p]
    >>> y = y.reshape(3, 4, 2, 3).permute(3, 0, 2, 1).reshape(3, 3, 8)
    >>> z = (y @ two).reshape(3, 3, 2, 3)  # [k_a, batch, re / im, k_b]
    >>> ref = torch.fft.rfft(x)
    >>> torch.allclose(z[1, :, 0, 1], ref.real[:, 1 + 3 * 1])
    True
    >>> torch.allclose(z[2, :, 1, 1], ref.imag[:, 2 + 3 * 1])
    True
    """
    p, q = split_size(n_fft)
    m = q // 2 + 1
    n_s = torch.arange(p, dtype=torch.float64)
    k_a = torch.arange(p, dtype=torch.float64)
    angle = 2 * math.pi * (torch.outer(n_s, k_a) % p) / p
    one = torch.cat([torch.cos(angle), -torch.sin(angle)], dim=1)
    n_f = torch.arange(q, dtype=torch.float64)
    k = k_a[:, None] + p * torch.arange(m, dtype=torch.float64)  # [p, m]
    # theta[k_a, n_f, k_b] = 2 pi n_f k / n_fft, from (n_f k mod n_fft)
    theta = n_f[None, :, None] * k[:, None, :] % n_fft * (2 * math.pi / n_fft)
    cos, sin = torch.cos(theta), torch.sin(theta)
    # (yr + i yi)(cos - i sin) = yr cos + yi sin + i (yi cos - yr sin)
    two = torch.cat(
        [torch.cat([cos, -sin], dim=2), torch.cat([sin, cos], dim=2)], dim=1
    )
    return one, two


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
        # SpeechBrain's float32 window, centred in n_fft as torch.stft does
        window = torch.hamming_window(win)
        left = (n_fft - win) // 2
        window = torch.nn.functional.pad(window, (left, n_fft - win - left))
        self.register_buffer("window", window, persistent=False)
        self.p, self.q = split_size(n_fft)
        one, two = dft_stages(n_fft)
        # stage 1 multiplies from the left: [2 p, p]; stage 2 split into
        # the rows that read real and imaginary parts: [p, q, 2 m] each
        self.register_buffer(
            "stage1", one.T.float().contiguous(), persistent=False
        )
        for name, part in zip(("stage2_re", "stage2_im"), two.chunk(2, 1)):
            self.register_buffer(
                name, part.float().contiguous(), persistent=False
            )
        mel = mel_matrix(n_mels, n_fft, sample_rate, f_min, f_max)
        # rows (k_a, k_b) of the power spectrum in stage-2 order: the mel
        # row of bin k_a + p * k_b (zero past n_fft // 2)
        m = self.q // 2 + 1
        k = torch.arange(self.p)[:, None] + self.p * torch.arange(m)
        rows = torch.zeros(self.p, m, n_mels)
        valid = k <= n_fft // 2
        rows[valid] = mel[k[valid]]
        self.register_buffer("mel", rows.reshape(-1, n_mels), persistent=False)

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
            "Fbank requires_grad=False (frozen filters)": fb.freeze,
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
        p, q = self.p, self.q
        frames = self.frames(wav) * self.window  # [batch, frames, n_fft]
        # n = n_f + q * n_s: [n_s, batch * frames * n_f]
        x = frames.reshape(-1, p, q).transpose(0, 1).reshape(p, -1)
        # stage 1, p-point DFTs over n_s: [re / im, k_a, batch * frames, n_f]
        y = (self.stage1 @ x).reshape(2, p, -1, q)
        # stage 2, per k_a: [k_a, batch * frames, (re / im, k_b)]
        z = y[0] @ self.stage2_re + y[1] @ self.stage2_im
        z = z * z
        m = z.shape[-1] // 2
        power = (z[..., :m] + z[..., m:]).transpose(0, 1)
        power = power.reshape(z.shape[1], -1)  # [batch * frames, (k_a, k_b)]
        fbanks = (power @ self.mel).reshape(wav.shape[0], frames.shape[1], -1)
        x_db = 10.0 * torch.log10(torch.clamp(fbanks, min=self.amin))
        if self.offset:
            x_db = x_db - self.offset
        floor = x_db.amax(dim=(-2, -1), keepdim=True) - self.top_db
        return torch.max(x_db, floor)
