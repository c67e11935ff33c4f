"""MLP-Mixer speaker encoder with convolutional token mixing and MFM.

After "A Speaker Verification System Based on a Modified MLP-Mixer Student
Model for Transformer Compression" (IEEE Access, 2025): a self-supervised
Transformer teacher (WavLM) is compressed into an MLP-Mixer student, whose
blocks cost linear time in the number of frames instead of the quadratic
self-attention of a Transformer student. Two changes to the MLP-Mixer:

- token mixing includes a 1D convolution over time (local temporal
  context);
- channel mixing activates with Max-Feature-Map (``MaxFeatureMap``: the
  element-wise maximum of two halves of the channels) instead of GELU.

Token mixing for variable-length speech. The MLP-Mixer's token-mixing MLP
is a ``Linear(T, hidden) -> GELU -> Linear(hidden, T)`` over the ``T``
tokens of one image, which needs a fixed ``T``: speech utterances differ in
length. Here the token-mixing MLP is made convolutional: a depthwise
``Conv1d`` over time (kernel ``k``, each channel expanded to
``token_expansion`` hidden channels; the paper's 1D convolution), GELU, and
a second depthwise ``Conv1d`` (kernel ``k``) back to one channel per
channel. That is a two-layer MLP over a sliding window of ``2k - 1``
frames, applied per channel and shared across positions: it accepts any
length and costs ``O(T)``. The global context that the fixed-length MLP
gave comes from the depth of the stack and the attentive statistics
pooling at the end.

Padding. Every lobe takes SpeechBrain's relative ``lengths``: the padded
frames are zeroed before every convolution over time and pooling ignores
them, so a padded batch gives each utterance the output it gets alone (see
``tests/test_mixer.py``). The numbers of valid frames follow the front
end exactly (``round(length * T)`` input frames or samples, then the
strides).

``MixerSpeaker`` and the equal-depth ``TransformerSpeaker`` (the paper's
complexity comparison) take ``(x, lengths=None)`` and return
``[batch, 1, emb_dim]`` like SpeechBrain's ECAPA-TDNN, so a recipe trains
and publishes them like any SpeechBrain encoder. Front ends (``front_end``):

- ``fbank``: ``[batch, frames, input_size]`` features (e.g. 80 mel Fbank at
  100 Hz, from ``compute_features`` and ``mean_var_norm``), cut into
  non-overlapping patches of ``patch_size`` frames (2: 50 Hz tokens);
- ``conv``: ``[batch, samples]`` raw waveforms through a wav2vec2-style
  strided convolutional feature encoder (320-sample hop, 50 Hz at 16 kHz,
  the frame rate of WavLM); use ``FrontEndFeatures`` and
  ``FrontEndNormalization`` with the same ``front_end`` as the
  ``compute_features`` and ``mean_var_norm`` of the YAML.
"""

import math

import torch
import torch.nn.functional as F
from speechbrain.lobes.models.ECAPA_TDNN import AttentiveStatisticsPooling

from speechbrain_kd.lobes.waveform import RawWaveform, WaveformNormalization

FRONT_ENDS = ("fbank", "conv")

# wav2vec2 / WavLM feature encoder: 400-sample receptive field, 320 hop
CONV_KERNELS = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)


def valid_counts(lengths, num_frames, batch_size):
    """Numbers of valid frames of a padded batch (``round(length * T)``).

    Arguments
    ---------
    lengths : torch.Tensor or None
        ``[batch]`` relative lengths in (0, 1]; None: no padding.
    num_frames : int
        Frames (or samples) ``T`` of the padded batch.
    batch_size : int
        Batch size (used when ``lengths`` is None).

    Returns
    -------
    torch.Tensor
        ``[batch]`` int64 counts, at least 1.

    Example
    -------
    >>> import torch
    >>> valid_counts(torch.tensor([1.0, 0.5, 0.01]), 10, 3)
    tensor([10,  5,  1])
    """
    if lengths is None:
        return torch.full((batch_size,), num_frames, dtype=torch.long)
    lengths = torch.as_tensor(lengths).reshape(-1)
    if lengths.shape[0] != batch_size:
        raise ValueError(
            f"lengths has {lengths.shape[0]} entries for a batch of "
            f"{batch_size}"
        )
    counts = torch.round(lengths.double() * num_frames).long()
    return counts.clamp(min=1, max=num_frames)


def counts_mask(counts, num_frames):
    """``[batch, T, 1]`` float mask, 1 on the first ``counts`` frames.

    Example
    -------
    >>> import torch
    >>> counts_mask(torch.tensor([3, 1]), 3)[..., 0]
    tensor([[1., 1., 1.],
            [1., 0., 0.]])
    """
    steps = torch.arange(num_frames, device=counts.device)
    return (steps.unsqueeze(0) < counts.unsqueeze(1)).float().unsqueeze(-1)


def zero_padding(x, mask):
    """``x`` with zeros where ``mask`` is 0 (NaN or inf padding included).

    Example
    -------
    >>> import torch
    >>> x = torch.tensor([[1.0, float("nan")]])
    >>> zero_padding(x, torch.tensor([[1.0, 0.0]]))
    tensor([[1., 0.]])
    """
    return torch.where(
        mask > 0, x, torch.zeros((), dtype=x.dtype, device=x.device)
    )


class MaxFeatureMap(torch.nn.Module):
    """Max-Feature-Map: the element-wise maximum of two halves of a dimension.

    ``MFM(x) = max(x[..., :C/2], x[..., C/2:])`` (Wu et al., "A Light CNN for
    Deep Face Representation with Noisy Labels"): a competitive activation
    that keeps the stronger of two features and halves the channels.

    Arguments
    ---------
    dim : int
        The dimension split in two (its size must be even).

    Example
    -------
    >>> import torch
    >>> MaxFeatureMap()(torch.tensor([[1.0, -5.0, 3.0, 2.0]]))
    tensor([[3., 2.]])
    """

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        """``x`` with its ``dim`` halved."""
        size = x.shape[self.dim]
        if size % 2:
            raise ValueError(
                f"MaxFeatureMap needs an even size along dim {self.dim}, got "
                f"shape {tuple(x.shape)}"
            )
        a, b = torch.chunk(x, 2, dim=self.dim)
        return torch.maximum(a, b)


class TokenMixing(torch.nn.Module):
    """Convolutional token mixing: a depthwise MLP over a window of frames.

    ``LayerNorm -> depthwise Conv1d(k) to token_expansion channels per
    channel -> GELU -> depthwise Conv1d(k) back``: per channel, a two-layer
    MLP over ``2k - 1`` neighbouring frames, for any number of frames.
    Padded frames are zeroed before each convolution.

    Arguments
    ---------
    dim : int
        Channels.
    kernel_size : int
        Odd kernel of the two convolutions over time.
    token_expansion : int
        Hidden channels per channel.
    dropout : float
        Dropout on the output.

    Example
    -------
    >>> import torch
    >>> TokenMixing(8, kernel_size=3)(torch.randn(2, 10, 8)).shape
    torch.Size([2, 10, 8])
    """

    def __init__(self, dim, kernel_size=7, token_expansion=2, dropout=0.0):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be an odd positive int, got {kernel_size}"
            )
        hidden = dim * token_expansion
        pad = kernel_size // 2
        self.norm = torch.nn.LayerNorm(dim)
        self.conv1 = torch.nn.Conv1d(
            dim, hidden, kernel_size, padding=pad, groups=dim
        )
        self.conv2 = torch.nn.Conv1d(
            hidden, dim, kernel_size, padding=pad, groups=dim
        )
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, x, mask=None):
        """``[batch, T, dim]`` -> ``[batch, T, dim]`` (``mask`` [B, T, 1])."""
        y = self.norm(x)
        if mask is not None:
            y = zero_padding(y, mask)
        y = F.gelu(self.conv1(y.transpose(1, 2)))
        if mask is not None:
            y = zero_padding(y, mask.transpose(1, 2))
        y = self.conv2(y).transpose(1, 2)
        return self.dropout(y)


class ChannelMixing(torch.nn.Module):
    """Channel mixing with Max-Feature-Map: ``LayerNorm -> Linear(dim, 2h)
    -> MFM -> Linear(h, dim)``, ``h = channel_expansion * dim``.

    Example
    -------
    >>> import torch
    >>> ChannelMixing(8)(torch.randn(2, 10, 8)).shape
    torch.Size([2, 10, 8])
    """

    def __init__(self, dim, channel_expansion=2, dropout=0.0):
        super().__init__()
        hidden = int(dim * channel_expansion)
        self.norm = torch.nn.LayerNorm(dim)
        self.fc1 = torch.nn.Linear(dim, 2 * hidden)
        self.mfm = MaxFeatureMap(-1)
        self.fc2 = torch.nn.Linear(hidden, dim)
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, x):
        """``[batch, T, dim]`` -> ``[batch, T, dim]`` (frame by frame)."""
        return self.dropout(self.fc2(self.mfm(self.fc1(self.norm(x)))))


class MixerBlock(torch.nn.Module):
    """One modified Mixer block: ``x + TokenMixing(x)``, then
    ``x + ChannelMixing(x)``; padded frames of the output are zero.

    Arguments
    ---------
    dim : int
        Channels.
    kernel_size : int
        Odd kernel of the token-mixing convolutions.
    token_expansion : int
        Hidden channels per channel in token mixing.
    channel_expansion : float
        Hidden size of channel mixing, in multiples of ``dim`` (after MFM).
    dropout : float
        Dropout of both branches.

    Example
    -------
    >>> import torch
    >>> block = MixerBlock(16, kernel_size=3)
    >>> mask = torch.ones(2, 12, 1)
    >>> mask[1, 6:] = 0
    >>> out = block(torch.randn(2, 12, 16), mask)
    >>> out.shape, bool((out[1, 6:] == 0).all())
    (torch.Size([2, 12, 16]), True)
    """

    def __init__(
        self,
        dim,
        kernel_size=7,
        token_expansion=2,
        channel_expansion=2,
        dropout=0.0,
    ):
        super().__init__()
        self.token_mixing = TokenMixing(
            dim, kernel_size, token_expansion, dropout
        )
        self.channel_mixing = ChannelMixing(dim, channel_expansion, dropout)

    def forward(self, x, mask=None):
        """``[batch, T, dim]`` and ``[batch, T, 1]`` mask -> ``[batch, T,
        dim]``."""
        x = x + self.token_mixing(x, mask)
        x = x + self.channel_mixing(x)
        return x if mask is None else zero_padding(x, mask)


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
        if front_end not in FRONT_ENDS:
            raise ValueError(
                f"front_end must be one of {list(FRONT_ENDS)}, got "
                f"{front_end!r}"
            )
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
            x = zero_padding(x, counts_mask(counts, x.shape[1]))
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
        x = zero_padding(x, counts_mask(counts, x.shape[1])[..., 0])
        tokens = self.projection(self.norm(self.encoder(x)))
        return tokens, self.encoder.output_counts(counts)


class SpeakerHead(torch.nn.Module):
    """Attentive statistics pooling, BatchNorm and a linear embedding layer
    (the end of SpeechBrain's ECAPA-TDNN), on ``[batch, T, input_size]``.

    Arguments
    ---------
    input_size : int
        Channels of the frames.
    emb_dim : int
        Embedding dimension.
    attention_channels : int
        Bottleneck of the attention.

    Example
    -------
    >>> import torch
    >>> head = SpeakerHead(16, 8)
    >>> head(torch.randn(3, 20, 16), torch.tensor([1.0, 0.5, 0.3])).shape
    torch.Size([3, 1, 8])
    """

    def __init__(self, input_size, emb_dim=192, attention_channels=128):
        super().__init__()
        self.pooling = AttentiveStatisticsPooling(
            input_size, attention_channels=attention_channels
        )
        self.norm = torch.nn.BatchNorm1d(2 * input_size)
        self.fc = torch.nn.Linear(2 * input_size, emb_dim)

    def forward(self, x, lengths=None, counts=None):
        """Embeddings ``[batch, 1, emb_dim]``.

        ``counts`` (valid frames, exact) takes precedence over the relative
        ``lengths``; padded frames never count.
        """
        num_frames = x.shape[1]
        if counts is None:
            counts = valid_counts(lengths, num_frames, x.shape[0])
        counts = counts.to(x.device)
        x = zero_padding(x, counts_mask(counts, num_frames))
        # The pooling keeps the frames t < lengths * T: n - 0.5 keeps
        # exactly n whatever the rounding of n / T * T.
        rel = (counts.to(x.dtype) - 0.5) / num_frames
        stats = self.pooling(x.transpose(1, 2), rel).squeeze(-1)
        return self.fc(self.norm(stats)).unsqueeze(1)


class MixerSpeaker(torch.nn.Module):
    """Modified MLP-Mixer speaker encoder (``[batch, 1, emb_dim]``).

    Front end (``FrontEnd``), ``num_blocks`` ``MixerBlock`` (``blocks.0``
    ... ``blocks.<N-1>``, each ``[batch, T, dim]``: tap them by these
    paths in ``student_taps``), LayerNorm, then ``SpeakerHead``.

    Arguments
    ---------
    front_end : str
        ``fbank`` (features in) or ``conv`` (raw waveforms in).
    input_size : int
        Feature size of the ``fbank`` front end (e.g. ``n_mels``).
    dim : int
        Channels of the blocks.
    num_blocks : int
        Number of Mixer blocks.
    kernel_size : int
        Odd kernel of the token-mixing convolutions.
    token_expansion : int
        Hidden channels per channel in token mixing.
    channel_expansion : float
        Hidden size of channel mixing (after MFM), in multiples of ``dim``.
    patch_size : int
        Frames per token of the ``fbank`` front end.
    conv_channels : int
        Channels of the ``conv`` front end.
    emb_dim : int
        Embedding dimension.
    attention_channels : int
        Bottleneck of the attentive statistics pooling.
    dropout : float
        Dropout inside the blocks.

    Example
    -------
    >>> import torch
    >>> model = MixerSpeaker(input_size=20, dim=16, num_blocks=2, emb_dim=8)
    >>> model(torch.randn(3, 100, 20), torch.tensor([1.0, 0.7, 0.4])).shape
    torch.Size([3, 1, 8])
    >>> wav_model = MixerSpeaker("conv", dim=16, num_blocks=2,
    ...                          conv_channels=8, emb_dim=8)
    >>> wav_model(torch.randn(2, 16000)).shape
    torch.Size([2, 1, 8])
    """

    def __init__(
        self,
        front_end="fbank",
        input_size=80,
        dim=256,
        num_blocks=8,
        kernel_size=7,
        token_expansion=2,
        channel_expansion=2,
        patch_size=2,
        conv_channels=256,
        emb_dim=192,
        attention_channels=128,
        dropout=0.0,
    ):
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.front = FrontEnd(
            front_end, input_size, dim, patch_size, conv_channels
        )
        self.blocks = torch.nn.ModuleList(
            MixerBlock(
                dim, kernel_size, token_expansion, channel_expansion, dropout
            )
            for _ in range(num_blocks)
        )
        self.norm = torch.nn.LayerNorm(dim)
        self.head = SpeakerHead(dim, emb_dim, attention_channels)

    def forward(self, x, lengths=None):
        """Embeddings ``[batch, 1, emb_dim]`` of features or waveforms."""
        x, counts = self.front(x, lengths)
        mask = counts_mask(counts, x.shape[1]).to(x.dtype)
        x = zero_padding(x, mask)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x), counts=counts)


def sinusoidal_positions(num_frames, dim, device=None):
    """``[num_frames, dim]`` sinusoidal position encodings (Vaswani et al.).

    Example
    -------
    >>> sinusoidal_positions(3, 4)[0]
    tensor([0., 1., 0., 1.])
    """
    pos = torch.arange(num_frames, device=device, dtype=torch.float32)
    freqs = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32)
        * (-math.log(10000.0) / dim)
    )
    angles = pos.unsqueeze(1) * freqs.unsqueeze(0)
    out = torch.zeros(num_frames, dim, device=device)
    out[:, 0::2] = torch.sin(angles)
    out[:, 1::2] = torch.cos(angles[:, : dim // 2])
    return out


class TransformerSpeaker(torch.nn.Module):
    """Transformer speaker encoder of the same shape as ``MixerSpeaker``.

    Same front end and head; the Mixer blocks are replaced by
    ``num_blocks`` pre-norm ``torch.nn.TransformerEncoderLayer`` (``dim``,
    ``num_heads``, feed-forward ``ff_expansion * dim``, GELU) with a key
    padding mask, after sinusoidal position encodings. The Transformer
    student of the paper's complexity comparison: self-attention costs
    ``O(T^2)`` where token mixing costs ``O(T)``.

    Example
    -------
    >>> import torch
    >>> model = TransformerSpeaker(input_size=20, dim=16, num_blocks=2,
    ...                            num_heads=2, emb_dim=8)
    >>> model(torch.randn(3, 100, 20), torch.tensor([1.0, 0.7, 0.4])).shape
    torch.Size([3, 1, 8])
    """

    def __init__(
        self,
        front_end="fbank",
        input_size=80,
        dim=256,
        num_blocks=8,
        num_heads=4,
        ff_expansion=4,
        patch_size=2,
        conv_channels=256,
        emb_dim=192,
        attention_channels=128,
        dropout=0.0,
    ):
        super().__init__()
        if dim % 2:
            raise ValueError(f"dim must be even, got {dim}")
        self.front = FrontEnd(
            front_end, input_size, dim, patch_size, conv_channels
        )
        self.blocks = torch.nn.ModuleList(
            torch.nn.TransformerEncoderLayer(
                dim,
                num_heads,
                dim_feedforward=int(ff_expansion * dim),
                dropout=dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(num_blocks)
        )
        self.norm = torch.nn.LayerNorm(dim)
        self.head = SpeakerHead(dim, emb_dim, attention_channels)

    def forward(self, x, lengths=None):
        """Embeddings ``[batch, 1, emb_dim]`` of features or waveforms."""
        x, counts = self.front(x, lengths)
        num_frames = x.shape[1]
        mask = counts_mask(counts, num_frames).to(x.dtype)
        x = x + sinusoidal_positions(num_frames, x.shape[-1], x.device)
        x = zero_padding(x, mask)
        padding = mask[..., 0] == 0
        for block in self.blocks:
            x = zero_padding(block(x, src_key_padding_mask=padding), mask)
        return self.head(self.norm(x), counts=counts)


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
        if front_end not in FRONT_ENDS:
            raise ValueError(
                f"front_end must be one of {list(FRONT_ENDS)}, got "
                f"{front_end!r}"
            )
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
        if front_end not in FRONT_ENDS:
            raise ValueError(
                f"front_end must be one of {list(FRONT_ENDS)}, got "
                f"{front_end!r}"
            )
        if front_end == "fbank":
            from speechbrain.processing.features import InputNormalization

            self.norm = InputNormalization(norm_type="sentence", std_norm=False)
        else:
            self.norm = WaveformNormalization(normalize=True)

    def forward(self, x, lengths=None):
        """Normalised features or waveforms (same shape)."""
        return self.norm(x, lengths)
