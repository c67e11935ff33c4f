"""The speaker head of the MLP-Mixer, Transformer and WavLM encoders.

``SpeakerHead`` turns ``[batch, T, input_size]`` frames into
``[batch, 1, emb_dim]`` embeddings, ignoring padded frames (their number
given exactly, or by SpeechBrain's relative ``lengths``).
"""

import torch
from speechbrain.lobes.models.ECAPA_TDNN import AttentiveStatisticsPooling

from speechbrain_kd.frames import counts_mask, valid_counts, zero_padding


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
        x = zero_padding(x, counts_mask(counts, num_frames)[..., None])
        # The pooling keeps the frames t < lengths * T: n - 0.5 keeps
        # exactly n whatever the rounding of n / T * T.
        rel = (counts.to(x.dtype) - 0.5) / num_frames
        stats = self.pooling(x.transpose(1, 2), rel).squeeze(-1)
        return self.fc(self.norm(stats)).unsqueeze(1)
