"""Signal processing of the synthetic corpus (numpy only).

Band-limited resampling of espeak's 22.05 kHz output (``resample``),
random linear-phase equalisers (``make_eq``, ``tilt_fir``) and coloured
noise (``coloured_noise``).
"""

import math

import numpy as np


def resample(x, orig_sr, new_sr, taper=0.1):
    """Band-limited resampling in the frequency domain.

    The signal is zero-padded (so that the circular FFT does not wrap its
    end onto its start), its spectrum cut at the lower Nyquist frequency
    with a raised-cosine taper over the top ``taper`` fraction of the band,
    and transformed back at the new length.

    Arguments
    ---------
    x : numpy.ndarray
        1-D signal.
    orig_sr : int
        Sample rate of ``x``.
    new_sr : int
        Wanted sample rate.
    taper : float
        Fraction of the kept band over which the gain falls to zero.

    Returns
    -------
    numpy.ndarray
        float64 signal of ``ceil(len(x) * new_sr / orig_sr)`` samples.

    Example
    -------
    >>> t = np.arange(22050) / 22050
    >>> y = resample(np.sin(2 * np.pi * 440 * t), 22050, 16000)
    >>> y.shape
    (16000,)
    >>> ref = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    >>> bool(np.abs(y - ref)[400:-400].max() < 1e-3)
    True
    """
    x = np.asarray(x, dtype=np.float64)
    if orig_sr == new_sr:
        return x.copy()
    g = math.gcd(orig_sr, new_sr)
    up, down = new_sr // g, orig_sr // g
    n_out = -(-len(x) * up // down)
    pad = max(1024, len(x) // 8)  # zeros against circular wrap-around
    blocks = _fast_length(-(-(len(x) + pad) // down))
    n_in, n_new = blocks * down, blocks * up
    spectrum = np.fft.rfft(x, n=n_in)[: min(n_in, n_new) // 2 + 1]
    freqs = np.arange(len(spectrum)) / (min(n_in, n_new) / 2)
    ramp = np.clip((freqs - (1.0 - taper)) / taper, 0.0, 1.0)
    spectrum *= 0.5 * (1.0 + np.cos(np.pi * ramp))
    y = np.fft.irfft(spectrum, n=n_new) * (n_new / n_in)
    return y[:n_out]


def make_eq(rng, num_taps=33, max_db=6.0):
    """Draws a smooth random equaliser: the ``num_taps`` (odd) taps of a
    linear-phase FIR filter.

    The gain curve (in dB, over 0-8 kHz) is a random tilt plus three random
    cosine ripples drawn from ``rng`` (a ``numpy.random.Generator``), at
    most about ``max_db`` away from flat.

    Example
    -------
    >>> taps = make_eq(np.random.default_rng(0))
    >>> taps.shape
    (33,)
    """
    freqs = np.linspace(0.0, 1.0, num_taps // 2 + 1)
    db = rng.uniform(-1.0, 1.0) * max_db * (freqs - 0.5)
    for k in (1, 2, 3):
        amp = rng.uniform(-1.0, 1.0) * max_db / (2 * k)
        db += amp * np.cos(np.pi * k * freqs + rng.uniform(0, 2 * np.pi))
    return _fir_from_db(db, num_taps)


def _fir_from_db(db, num_taps):
    """Linear-phase FIR (Hann-windowed) with the given dB gain curve."""
    impulse = np.fft.irfft(10.0 ** (db / 20.0), n=num_taps)
    impulse = np.roll(impulse, num_taps // 2)
    return impulse * np.hanning(num_taps + 2)[1:-1]


def tilt_fir(tilt_db, num_taps=33):
    """FIR with a linear spectral tilt of ``tilt_db`` from 0 to 8 kHz."""
    freqs = np.linspace(0.0, 1.0, num_taps // 2 + 1)
    return _fir_from_db(tilt_db * (freqs - 0.5), num_taps)


def coloured_noise(rng, num_samples, exponent):
    """Gaussian noise with a power spectrum proportional to ``f**-exponent``.

    ``exponent`` 0 is white noise, 1 pink noise. The result has unit RMS.
    """
    n_fft = _fast_length(num_samples)
    spectrum = np.fft.rfft(rng.standard_normal(n_fft))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0
    noise = np.fft.irfft(spectrum * freqs ** (-exponent / 2.0), n=n_fft)
    noise = noise[:num_samples]
    return noise / max(np.sqrt(np.mean(noise**2)), 1e-12)


def _fast_length(n):
    """The smallest ``2**a * 3**b * 5**c >= n`` (a fast FFT length)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35 * (1 << max(0, (-(-n // p35) - 1).bit_length()))
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best
