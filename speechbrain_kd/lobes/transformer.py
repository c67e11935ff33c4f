"""Transformer speaker encoder of the same shape as the MLP-Mixer.

``TransformerSpeaker`` is ``speechbrain_kd.lobes.mixer.MixerSpeaker`` with
its Mixer blocks replaced by Transformer encoder layers: the student of
the paper's complexity comparison, where self-attention costs ``O(T^2)``
and convolutional token mixing ``O(T)``. Same front ends
(``speechbrain_kd.lobes.front_end``), same head
(``speechbrain_kd.lobes.heads.SpeakerHead``), same ``(x, lengths=None)``
-> ``[batch, 1, emb_dim]``.
"""

import math

import torch

from speechbrain_kd.frames import counts_mask, zero_padding
from speechbrain_kd.lobes.front_end import FrontEnd
from speechbrain_kd.lobes.heads import SpeakerHead


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
        mask = counts_mask(counts, num_frames)[..., None].to(x.dtype)
        x = x + sinusoidal_positions(num_frames, x.shape[-1], x.device)
        x = zero_padding(x, mask)
        padding = mask[..., 0] == 0
        for block in self.blocks:
            x = zero_padding(block(x, src_key_padding_mask=padding), mask)
        return self.head(self.norm(x), counts=counts)
