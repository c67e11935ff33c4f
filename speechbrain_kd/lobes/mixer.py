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
``tests/test_mixer.py``). The numbers of valid tokens come from the
front end (``speechbrain_kd.lobes.front_end.FrontEnd``).

``MixerSpeaker`` takes ``(x, lengths=None)`` and returns ``[batch, 1,
emb_dim]`` like SpeechBrain's ECAPA-TDNN, so a recipe trains and publishes
it like any SpeechBrain encoder. Its front ends (``front_end``: Fbank
patches or raw waveforms) are those of ``speechbrain_kd.lobes.front_end``
and its head is ``speechbrain_kd.lobes.heads.SpeakerHead``;
``speechbrain_kd.lobes.transformer.TransformerSpeaker`` is the
equal-depth Transformer of the paper's complexity comparison.

``FrontEndFeatures`` and ``FrontEndNormalization`` are importable from
here too: the ``hyperparams.yaml`` of published Mixer folders name them
``speechbrain_kd.lobes.mixer.FrontEndFeatures`` and
``speechbrain_kd.lobes.mixer.FrontEndNormalization``.
"""

import torch
import torch.nn.functional as F

from speechbrain_kd.frames import counts_mask, zero_padding
from speechbrain_kd.lobes.front_end import (
    FrontEnd,
    FrontEndFeatures,
    FrontEndNormalization,
)
from speechbrain_kd.lobes.heads import SpeakerHead

__all__ = [
    "ChannelMixing",
    "FrontEndFeatures",
    "FrontEndNormalization",
    "MaxFeatureMap",
    "MixerBlock",
    "MixerSpeaker",
    "TokenMixing",
]


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
        mask = counts_mask(counts, x.shape[1])[..., None].to(x.dtype)
        x = zero_padding(x, mask)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x), counts=counts)
