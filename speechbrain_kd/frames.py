"""Masked statistics over the valid frames of a padded batch (torch only).

Shared by the multi-level objectives, the aggregators of
``speechbrain_kd.lobes.aggregation`` and the export-time statistics pooling
(``speechbrain_kd.sb_private.export_patches``).
"""

import torch


def frame_mask(lengths, num_frames):
    """Boolean mask of the valid frames of a padded batch.

    The number of valid frames of an utterance is ``round(length * T)``, as
    in SpeechBrain's statistics pooling, and at least one.

    Arguments
    ---------
    lengths : torch.Tensor or None
        ``[batch]`` relative lengths in (0, 1]; ``None``: no padding.
    num_frames : int
        Number of frames ``T`` of the padded batch.

    Returns
    -------
    torch.Tensor
        ``[batch, T]`` boolean, True on valid frames (all True when
        ``lengths`` is None: then the batch size is unknown and the mask is
        ``[1, T]``).

    Example
    -------
    >>> import torch
    >>> frame_mask(torch.tensor([1.0, 0.5]), 4)
    tensor([[ True,  True,  True,  True],
            [ True,  True, False, False]])
    """
    if lengths is None:
        return torch.ones(1, num_frames, dtype=torch.bool)
    lengths = torch.as_tensor(lengths).reshape(-1)
    valid = torch.round(lengths.float() * num_frames).clamp(min=1)
    steps = torch.arange(num_frames, device=lengths.device)
    return steps.unsqueeze(0) < valid.unsqueeze(1)


def masked_mean_std(frames, lengths=None, eps=1e-10):
    """Mean and standard deviation over the valid frames of each utterance.

    The standard deviation is the unbiased one (as SpeechBrain's
    ``StatisticsPooling``, without its noise), and 0 for one frame.

    Arguments
    ---------
    frames : torch.Tensor
        ``[batch, time, dim]``.
    lengths : torch.Tensor, optional
        ``[batch]`` relative lengths.
    eps : float
        Floor of the variance under the square root.

    Returns
    -------
    mean, std : torch.Tensor
        ``[batch, dim]`` each.

    Example
    -------
    >>> import torch
    >>> x = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> mean, std = masked_mean_std(x, torch.tensor([0.67]))
    >>> mean, std
    (tensor([[2.]]), tensor([[1.4142]]))
    """
    if frames.dim() != 3:
        raise ValueError(
            f"frames must be [batch, time, dim], got {tuple(frames.shape)}"
        )
    mask = frame_mask(lengths, frames.shape[1]).to(frames.device)
    mask = mask.expand(frames.shape[0], -1).unsqueeze(-1).to(frames.dtype)
    count = mask.sum(1)
    mean = (frames * mask).sum(1) / count
    var = (((frames - mean.unsqueeze(1)) ** 2) * mask).sum(1)
    var = var / (count - 1).clamp(min=1)
    return mean, var.clamp(min=eps).sqrt() * (count > 1)
