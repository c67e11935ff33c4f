"""The valid frames of a padded batch: their counts, masks and statistics.

SpeechBrain pads a batch to its longest utterance and passes each
utterance's relative length in (0, 1]. The valid frames of an utterance
are its first ``round(length * T)`` frames (``T`` the padded number of
frames or samples), and at least one, as in SpeechBrain's statistics
pooling. ``valid_counts`` is that rule; ``counts_mask``, ``frame_mask``,
``zero_padding`` and ``masked_mean_std`` build on it. Used by the students
and heads of ``speechbrain_kd.lobes``, the objectives and the export-time
statistics pooling (``speechbrain_kd.sb_private.export_patches``).
"""

import torch


def valid_counts(lengths, num_frames, batch_size=None, dtype=torch.float64):
    """Numbers of valid frames of a padded batch (``round(length * T)``).

    Arguments
    ---------
    lengths : torch.Tensor or None
        ``[batch]`` relative lengths in (0, 1]; None: no padding.
    num_frames : int
        Frames (or samples) ``T`` of the padded batch.
    batch_size : int, optional
        Batch size: the number of counts when ``lengths`` is None (1 when
        not given), and the number of ``lengths`` expected otherwise.
    dtype : torch.dtype
        Floating type of the product ``length * T`` before rounding
        (half-way products round to even). ``frame_mask`` rounds in
        float32; the two differ only where ``length * T`` lies within
        float32 rounding of a half (e.g. length 0.460396 of 101 frames:
        46 in float32, 47 in float64).

    Returns
    -------
    torch.Tensor
        ``[batch]`` int64 counts in ``[1, T]``, on the device of
        ``lengths``.

    Example
    -------
    >>> import torch
    >>> valid_counts(torch.tensor([1.0, 0.5, 0.01]), 10, 3)
    tensor([10,  5,  1])
    >>> valid_counts(None, 10, 2)
    tensor([10, 10])
    """
    if lengths is None:
        size = 1 if batch_size is None else batch_size
        return torch.full((size,), num_frames, dtype=torch.long)
    lengths = torch.as_tensor(lengths).reshape(-1)
    if batch_size is not None and lengths.shape[0] != batch_size:
        raise ValueError(
            f"lengths has {lengths.shape[0]} entries for a batch of "
            f"{batch_size}"
        )
    counts = torch.round(lengths.to(dtype) * num_frames).long()
    return counts.clamp(min=1, max=num_frames)


def counts_mask(counts, num_frames):
    """``[batch, num_frames]`` bool mask, True on the first ``counts[b]``
    frames of row b.
    """
    steps = torch.arange(num_frames, device=counts.device)
    return steps.unsqueeze(0) < counts.unsqueeze(1)


def frame_mask(lengths, num_frames):
    """``[batch, T]`` bool mask of the valid frames of a padded batch.

    ``counts_mask`` of ``valid_counts`` of the ``[batch]`` relative
    ``lengths``, rounded in float32; ``[1, T]``, all True, if None.
    """
    counts = valid_counts(lengths, num_frames, dtype=torch.float32)
    return counts_mask(counts, num_frames)


def zero_padding(x, mask):
    """``x`` with zeros where ``mask`` is False or ``<= 0`` (NaN or inf padding
    included); ``mask`` broadcasts to ``x`` (e.g. ``[batch, T, 1]``).
    """
    keep = mask if mask.dtype == torch.bool else mask > 0
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))


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
