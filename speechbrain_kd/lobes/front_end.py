"""Front ends of the MLP-Mixer and Transformer speaker encoders.

A front end turns the input of an encoder into ``[batch, T, dim]`` tokens
and their numbers of valid frames (``FrontEnd``), for one of two inputs
(``front_end``):

- ``fbank``: ``[batch, frames, input_size]`` features (e.g. 80 mel Fbank at
  100 Hz, from ``compute_features`` and ``mean_var_norm``), cut into
  non-overlapping patches of ``patch_size`` frames (2: 50 Hz tokens);
- ``conv``: ``[batch, samples]`` raw waveforms through a wav2vec2-style
  strided convolutional feature encoder (``ConvFeatureEncoder``:
  320-sample hop, 50 Hz at 16 kHz, the frame rate of WavLM).

``FrontEndFeatures`` and ``FrontEndNormalization`` are the
``compute_features`` and ``mean_var_norm`` of a YAML, with the same
``front_end`` as its encoder. The numbers of valid tokens follow the
input exactly: ``speechbrain_kd.frames.valid_counts`` input frames or
samples, then the strides; padded input is zeroed before the first
convolution.
"""

import torch
import torch.nn.functional as F

from speechbrain_kd.frames import counts_mask, valid_counts, zero_padding
from speechbrain_kd.lobes.waveform import RawWaveform, WaveformNormalization

FRONT_ENDS = ("fbank", "conv")


def check_front_end(front_end):
    """Raises ``ValueError`` unless ``front_end`` is one of ``FRONT_ENDS``."""
    if front_end not in FRONT_ENDS:
        raise ValueError(
            f"front_end must be one of {list(FRONT_ENDS)}, got {front_end!r}"
        )

# wav2vec2 / WavLM feature encoder: 400-sample receptive field, 320 hop
CONV_KERNELS = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)


class ConvFeatureEncoder(torch.nn.Module):
    """wav2vec2-style feature encoder: strided ``Conv1d`` over the waveform,
    each followed by a LayerNorm over channels and GELU (the "layer" norm
    variant: frame by frame, so padding does not leak into valid frames).

    Arguments
    ---------
    channels : int
        Channels of every convolution.
    kernels, strides : sequence of int
        Kernels and strides (default: wav2vec2's, a 320-sample hop).

    Example
    -------
    >>> import torch
    >>> enc = ConvFeatureEncoder(16)
    >>> enc(torch.randn(2, 16000)).shape
    torch.Size([2, 49, 16])
    >>> enc.output_counts(torch.tensor([16000, 8000]))
    tensor([49, 24])
    """

    def __init__(
        self, channels=256, kernels=CONV_KERNELS, strides=CONV_STRIDES
    ):
        super().__init__()
        if len(kernels) != len(strides) or not kernels:
            raise ValueError(
                "ConvFeatureEncoder: kernels and strides must be non-empty "
                f"and of equal length, got {kernels} and {strides}"
            )
        self.kernels, self.strides = tuple(kernels), tuple(strides)
        self.convs = torch.nn.ModuleList()
        self.norms = torch.nn.ModuleList()
        in_channels = 1
        for k, s in zip(self.kernels, self.strides):
            self.convs.append(
                torch.nn.Conv1d(in_channels, channels, k, stride=s, bias=False)
            )
            self.norms.append(torch.nn.LayerNorm(channels))
            in_channels = channels
        self.output_size = channels

    @property
    def receptive_field(self):
        """Samples seen by one output frame."""
        field, hop = 1, 1
        for k, s in zip(self.kernels, self.strides):
            field += (k - 1) * hop
            hop *= s
        return field

    def output_counts(self, counts):
        """Frames computed from ``counts`` samples (at least 1)."""
        for k, s in zip(self.kernels, self.strides):
            counts = torch.div(counts - k, s, rounding_mode="floor") + 1
        return counts.clamp(min=1)

    def forward(self, wavs):
        """``[batch, samples]`` -> ``[batch, frames, channels]``."""
        if wavs.shape[-1] < self.receptive_field:
            raise ValueError(
                f"ConvFeatureEncoder: {wavs.shape[-1]} samples is shorter "
                f"than its receptive field ({self.receptive_field} samples)"
            )
        x = wavs.unsqueeze(1)
        for conv, norm in zip(self.convs, self.norms):
            x = F.gelu(norm(conv(x).transpose(1, 2))).transpose(1, 2)
        return x.transpose(1, 2)


class FrontEnd(torch.nn.Module):
    """Tokens and their valid counts from features or waveforms.

    ``fbank``: ``[batch, frames, input_size]`` cut into patches of
    ``patch_size`` frames, each linearly embedded (a strided ``Conv1d``);
    ``conv``: ``[batch, samples]`` through ``ConvFeatureEncoder``, then
    LayerNorm and a linear projection to ``dim``.

    Example
    -------
    >>> import torch
    >>> tokens, counts = FrontEnd("fbank", 20, 8, patch_size=2)(
    ...     torch.randn(2, 101, 20), torch.tensor([1.0, 0.5]))
    >>> tokens.shape, counts
    (torch.Size([2, 50, 8]), tensor([50, 25]))
    """

    def __init__(
        self,
        front_end="fbank",
        input_size=80,
        dim=256,
        patch_size=2,
        conv_channels=256,
        conv_kernels=CONV_KERNELS,
        conv_strides=CONV_STRIDES,
    ):
        super().__init__()
        check_front_end(front_end)
        self.front_end = front_end
        self.input_size = input_size
        self.patch_size = int(patch_size)
        if front_end == "fbank":
            if self.patch_size < 1:
                raise ValueError(f"patch_size must be >= 1, got {patch_size}")
            self.patch = torch.nn.Conv1d(
                input_size, dim, self.patch_size, stride=self.patch_size
            )
        else:
            self.encoder = ConvFeatureEncoder(
                conv_channels, conv_kernels, conv_strides
            )
            self.norm = torch.nn.LayerNorm(conv_channels)
            self.projection = torch.nn.Linear(conv_channels, dim)

    def forward(self, x, lengths=None):
        """Tokens ``[batch, T, dim]`` and valid counts ``[batch]``."""
        if self.front_end == "fbank":
            if x.dim() != 3 or x.shape[-1] != self.input_size:
                raise ValueError(
                    f"front_end 'fbank' expects [batch, frames, "
                    f"{self.input_size}] features, got shape "
                    f"{tuple(x.shape)} (raw waveforms need front_end: conv)"
                )
            if x.shape[1] < self.patch_size:
                raise ValueError(
                    f"{x.shape[1]} frames is shorter than patch_size "
                    f"{self.patch_size}"
                )
            counts = valid_counts(lengths, x.shape[1], x.shape[0])
            counts = counts.to(x.device)
            x = zero_padding(x, counts_mask(counts, x.shape[1])[..., None])
            tokens = self.patch(x.transpose(1, 2)).transpose(1, 2)
            counts = torch.div(
                counts, self.patch_size, rounding_mode="floor"
            ).clamp(min=1)
            return tokens, counts
        if x.dim() != 2:
            raise ValueError(
                "front_end 'conv' expects [batch, samples] waveforms, got "
                f"shape {tuple(x.shape)} (use compute_features: "
                "FrontEndFeatures with front_end: conv)"
            )
        counts = valid_counts(lengths, x.shape[1], x.shape[0]).to(x.device)
        x = zero_padding(x, counts_mask(counts, x.shape[1]))
        tokens = self.projection(self.norm(self.encoder(x)))
        return tokens, self.encoder.output_counts(counts)


class FrontEndFeatures(torch.nn.Module):
    """``compute_features`` matching a front end: SpeechBrain's ``Fbank``
    for ``fbank``, the waveform itself (``RawWaveform``) for ``conv``.

    Example
    -------
    >>> import torch
    >>> FrontEndFeatures("fbank", n_mels=40)(torch.randn(2, 16000)).shape
    torch.Size([2, 101, 40])
    >>> FrontEndFeatures("conv")(torch.randn(2, 16000)).shape
    torch.Size([2, 16000])
    """

    def __init__(self, front_end="fbank", n_mels=80, **fbank_kwargs):
        super().__init__()
        check_front_end(front_end)
        if front_end == "fbank":
            from speechbrain.lobes.features import Fbank

            self.features = Fbank(n_mels=n_mels, **fbank_kwargs)
        else:
            self.features = RawWaveform()

    def forward(self, wavs):
        """Features ``[batch, frames, n_mels]`` or waveforms."""
        return self.features(wavs)


class FrontEndNormalization(torch.nn.Module):
    """``mean_var_norm`` matching a front end: sentence-level mean
    normalisation of the features for ``fbank`` (SpeechBrain's
    ``InputNormalization``, as its ECAPA recipe), per-utterance waveform
    normalisation for ``conv`` (``WaveformNormalization``).

    Example
    -------
    >>> import torch
    >>> norm = FrontEndNormalization("conv")
    >>> norm(torch.randn(2, 16000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 16000])
    """

    def __init__(self, front_end="fbank"):
        super().__init__()
        check_front_end(front_end)
        if front_end == "fbank":
            from speechbrain.processing.features import InputNormalization

            self.norm = InputNormalization(norm_type="sentence", std_norm=False)
        else:
            self.norm = WaveformNormalization(normalize=True)

    def forward(self, x, lengths=None):
        """Normalised features or waveforms (same shape)."""
        return self.norm(x, lengths)
