"""SpeechBrain code swapped during ``torch.export`` (ONNX export only).

``export_friendly()`` patches SpeechBrain functions and methods that
``torch.export`` cannot trace generally, with equivalent code, and
restores them on exit; ``speechbrain_kd.onnx`` exports inside it.
The patched names are listed in ``speechbrain_kd.sb_private.PRIVATE_API``
and checked by ``tests/test_sb_private.py``.
"""

import contextlib
import inspect

import torch

from speechbrain_kd.frames import masked_mean_std


def _length_to_mask(length, max_len=None, dtype=None, device=None):
    """SpeechBrain's ``length_to_mask`` without ``len()`` (export-safe)."""
    if max_len is None:
        max_len = length.max().long().item()
    mask = torch.arange(max_len, device=length.device, dtype=length.dtype)
    mask = mask.unsqueeze(0) < length.unsqueeze(1)
    return mask.to(dtype=dtype or length.dtype, device=device or length.device)


def _xvector_forward(self, x, lens=None):
    """``Xvector.forward`` without its ``try: ... except TypeError``."""
    for layer in self.blocks:
        params = inspect.signature(layer.forward).parameters
        x = layer(x, lengths=lens) if "lengths" in params else layer(x)
    return x


def _statistics_pooling_forward(self, x, lengths=None):
    """``StatisticsPooling.forward``, vectorised over the batch, no noise.

    Same frames as SpeechBrain's loop (``round(length * time)`` of each
    sentence), same unbiased standard deviation; SpeechBrain's random
    offset of at most 9 * eps on the means (eps = 1e-5) is left out, so the
    exported graph is deterministic.
    """
    if lengths is None:
        lengths = torch.ones(x.shape[0], device=x.device)
    mean, std = masked_mean_std(x, lengths, eps=0.0)
    stats = []
    if self.return_mean:
        stats.append(mean)
    if self.return_std:
        stats.append(std + self.eps)
    return torch.cat(stats, dim=1).unsqueeze(1)


def _stft_forward(self, x):
    """SpeechBrain's ``STFT.forward`` as one strided convolution.

    The windowed DFT of every frame is a ``conv1d`` with the cosine and sine
    bases as kernels: the same ``[batch, time, freq, 2]`` output as
    ``torch.stft`` (float32 rounding aside), but exported as a plain
    convolution, which ONNX Runtime runs ~10x faster than its generic DFT
    operator for SpeechBrain's n_fft of 400 (not a power of two).
    """
    if x.dim() != 2 or not self.onesided or self.normalized_stft:
        raise ValueError(
            "export_friendly STFT handles mono [batch, time] input, "
            "onesided, not normalised (SpeechBrain's Fbank defaults)"
        )
    n_fft = self.n_fft
    window = self.window.to(x.device, torch.float64)
    left = (n_fft - window.numel()) // 2  # torch.stft centres short windows
    window = torch.nn.functional.pad(
        window, (left, n_fft - window.numel() - left)
    )
    n = torch.arange(n_fft, dtype=torch.float64, device=x.device)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64, device=x.device)
    angle = 2 * torch.pi * torch.outer(k, n) / n_fft
    basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window
    basis = basis.to(x.dtype).unsqueeze(1)  # [2 * freq, 1, n_fft]
    if self.center:
        pad = n_fft // 2
        x = torch.nn.functional.pad(
            x.unsqueeze(1), (pad, pad), mode=self.pad_mode
        )
    else:
        x = x.unsqueeze(1)
    out = torch.nn.functional.conv1d(x, basis, stride=self.hop_length)
    real, imag = out.chunk(2, dim=1)  # [batch, freq, time] each
    return torch.stack([real, imag], -1).transpose(1, 2)


def _conv1d_manage_padding(
    self, x, kernel_size: int, dilation: int, stride: int
):
    """SpeechBrain's ``Conv1d._manage_padding`` without the no-op ``F.pad``
    of zero elements (1x1 convolutions): one ``Pad`` node fewer per such
    convolution in the exported graph, same values."""
    from speechbrain.nnet.CNN import get_padding_elem

    padding = get_padding_elem(self.in_channels, stride, kernel_size, dilation)
    if not any(padding):
        return x
    return torch.nn.functional.pad(x, padding, mode=self.padding_mode)


@contextlib.contextmanager
def export_friendly(stft=True):
    """Patches SpeechBrain code that ``torch.export`` cannot trace generally.

    - ``length_to_mask`` (used by ECAPA-TDNN) calls ``len(length)``, which
      pins the batch size: replaced by a copy without it (same values).
    - ``Xvector.forward`` tries each block with ``lengths`` and catches the
      ``TypeError``, which breaks tracing: replaced by a signature check.
    - ``StatisticsPooling`` loops over the batch with data-dependent sizes:
      replaced by a masked, vectorised version (same statistics, without
      the random 1e-5-scale offset it adds to the means).
    - ``STFT`` (in ``Fbank``): ``torch.stft`` becomes ONNX's DFT operator,
      slow in ONNX Runtime for n_fft = 400: replaced by a strided
      convolution with the DFT basis (same values up to float32 rounding).

    - ``Conv1d._manage_padding`` pads 1x1 convolutions by zero elements
      (an ONNX ``Pad`` node that copies its input): skipped.

    ``stft=False`` leaves ``STFT`` alone (``torch.stft``: the PyTorch
    reference of the export check). Everything is restored on exit.
    """
    import speechbrain.lobes.models.ECAPA_TDNN as ecapa
    import speechbrain.lobes.models.Xvector as xvector
    import speechbrain.nnet.CNN as cnn
    import speechbrain.nnet.pooling as pooling
    import speechbrain.processing.features as features

    patches = [
        (ecapa, "length_to_mask", _length_to_mask),
        (xvector.Xvector, "forward", _xvector_forward),
        (pooling.StatisticsPooling, "forward", _statistics_pooling_forward),
        (cnn.Conv1d, "_manage_padding", _conv1d_manage_padding),
    ]
    if stft:
        patches.append((features.STFT, "forward", _stft_forward))
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    try:
        for obj, name, new in patches:
            setattr(obj, name, new)
        yield
    finally:
        for obj, name, old in saved:
            setattr(obj, name, old)
