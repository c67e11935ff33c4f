"""Aggregators: frame-level outputs of one or more layers -> one vector.

Multi-level distillation (``speechbrain_kd.objectives.embedding``) turns
the frame-level outputs of several teacher layers into one utterance-level
target, either without parameters (``StatisticsAggregator``: masked mean and
standard deviation, the x-vector's statistics pooling over several layers)
or with a learnable dictionary encoding (``LDEAggregator`` around
``LDEPooling``, Cai et al., "A novel learnable dictionary encoding layer for
end-to-end language identification", ICASSP 2018). Both take a list of
``[batch, time, channels]`` tensors (or ``[batch, channels, time]`` with
``channels_first=True``) and the relative ``lengths`` of a padded batch,
whose padded frames never count.
"""

import math

import torch
import torch.nn.functional as F

from speechbrain_kd.frames import frame_mask, masked_mean_std


def stack_frames(frames, input_sizes, channels_first=False, owner="aggregator"):
    """Concatenates time-aligned frame-level outputs along the channels.

    Arguments
    ---------
    frames : torch.Tensor or list of torch.Tensor
        ``[batch, time, channels_i]`` (``[batch, channels_i, time]`` if
        ``channels_first``).
    input_sizes : list of int
        Expected ``channels_i``.
    channels_first : bool
        Layout of the inputs.
    owner : str
        Name used in error messages.

    Returns
    -------
    torch.Tensor
        ``[batch, time, sum(channels_i)]``.

    Example
    -------
    >>> import torch
    >>> stack_frames([torch.ones(2, 5, 3), torch.ones(2, 5, 4)], [3, 4]).shape
    torch.Size([2, 5, 7])
    >>> stack_frames([torch.ones(2, 5, 3), torch.ones(2, 4, 5)], [3, 4])
    Traceback (most recent call last):
    ...
    ValueError: aggregator: input 1 has 4 frames of 5 channels, expected 5 of 4
    """
    if isinstance(frames, torch.Tensor):
        frames = [frames]
    if len(frames) != len(input_sizes):
        raise ValueError(
            f"{owner}: got {len(frames)} frame-level inputs, expected "
            f"{len(input_sizes)} (input_sizes={list(input_sizes)})"
        )
    out = []
    num_frames = None
    for i, (x, size) in enumerate(zip(frames, input_sizes)):
        if x.dim() == 3 and channels_first:
            x = x.transpose(1, 2)
        if num_frames is None and x.dim() == 3:
            num_frames = x.shape[1]
        if x.dim() != 3:
            raise ValueError(
                f"{owner}: input {i} has shape {tuple(x.shape)}, expected "
                "[batch, time, channels] frames"
                + (" (channels first)" if channels_first else "")
            )
        if x.shape[2] != size or x.shape[1] != num_frames:
            raise ValueError(
                f"{owner}: input {i} has {x.shape[1]} frames of {x.shape[2]} "
                f"channels, expected {num_frames} of {size}"
            )
        out.append(x)
    return torch.cat(out, dim=-1)


def _check_sizes(input_sizes, owner):
    if isinstance(input_sizes, int):
        input_sizes = [input_sizes]
    sizes = list(input_sizes or [])
    if not sizes or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes
    ):
        raise ValueError(
            f"{owner}: input_sizes must be a list of positive ints (channels "
            f"of each aggregated layer), got {input_sizes!r}"
        )
    return sizes


class StatisticsAggregator(torch.nn.Module):
    """Statistics pooling over the frame-level outputs of several layers.

    Concatenates the layers along the channels and returns the mean and the
    standard deviation over the valid frames (no parameters, no noise).

    Arguments
    ---------
    input_sizes : list of int
        Channels of each input layer.
    channels_first : bool
        True for ``[batch, channels, time]`` inputs.

    Example
    -------
    >>> import torch
    >>> pool = StatisticsAggregator([4, 6])
    >>> pool.output_size
    20
    >>> pool([torch.randn(2, 30, 4), torch.randn(2, 30, 6)],
    ...      torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 20])
    """

    def __init__(self, input_sizes, channels_first=False):
        super().__init__()
        self.input_sizes = _check_sizes(input_sizes, "StatisticsAggregator")
        self.channels_first = channels_first
        self.output_size = 2 * sum(self.input_sizes)

    def forward(self, frames, lengths=None):
        """``[batch, 2 * sum(input_sizes)]``: means, then std deviations."""
        x = stack_frames(
            frames,
            self.input_sizes,
            self.channels_first,
            "StatisticsAggregator",
        )
        mean, std = masked_mean_std(x, lengths)
        return torch.cat([mean, std], dim=-1)


class LDEPooling(torch.nn.Module):
    """Learnable dictionary encoding (LDE) of a sequence of frames.

    With a dictionary of ``C`` components ``mu_c`` and smoothing factors
    ``s_c > 0``, each frame is softly assigned to the components,
    ``w_tc = softmax_c(-s_c * ||x_t - mu_c||^2)``, and the encoding of
    component ``c`` is the assignment-weighted mean residual
    ``e_c = sum_t w_tc (x_t - mu_c) / sum_t w_tc`` over the valid frames; the
    output concatenates the ``e_c`` (Cai et al., 2018). ``s_c`` is
    parametrised by its logarithm and starts at ``1 / input_size``, so that
    the first assignments are soft; ``mu_c`` starts uniform in [-1, 1].

    Arguments
    ---------
    input_size : int
        Channels ``D`` of the frames.
    num_components : int
        Dictionary size ``C``.
    eps : float
        Guards the assignment mass of empty components.

    Example
    -------
    >>> import torch
    >>> lde = LDEPooling(input_size=8, num_components=4)
    >>> x = torch.randn(3, 20, 8, requires_grad=True)
    >>> out = lde(x, torch.tensor([1.0, 0.5, 0.25]))
    >>> out.shape
    torch.Size([3, 32])
    >>> out.sum().backward()
    >>> lde.mu.grad.shape, bool(x.grad[2, 10:].abs().sum() == 0)
    (torch.Size([4, 8]), True)
    """

    def __init__(self, input_size, num_components=16, eps=1e-6):
        super().__init__()
        if input_size < 1 or num_components < 1:
            raise ValueError(
                "LDEPooling: input_size and num_components must be >= 1, got "
                f"{input_size} and {num_components}"
            )
        self.input_size = input_size
        self.num_components = num_components
        self.eps = eps
        self.mu = torch.nn.Parameter(
            torch.empty(num_components, input_size).uniform_(-1.0, 1.0)
        )
        self.log_scale = torch.nn.Parameter(
            torch.full((num_components,), -math.log(input_size))
        )
        self.output_size = num_components * input_size

    def assignments(self, x):
        """Soft assignments ``[batch, time, C]`` of ``[batch, time, D]``."""
        # ||x - mu||^2 without the [batch, time, C, D] residual tensor
        dist = (
            (x * x).sum(-1, keepdim=True)
            - 2 * x @ self.mu.t()
            + (self.mu * self.mu).sum(-1)
        )
        return torch.softmax(-self.log_scale.exp() * dist, dim=-1)

    def forward(self, x, lengths=None):
        """Encodes ``[batch, time, D]`` frames into ``[batch, C * D]``."""
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"LDEPooling: expected [batch, time, {self.input_size}] "
                f"frames, got shape {tuple(x.shape)}"
            )
        weights = self.assignments(x)
        mask = frame_mask(lengths, x.shape[1]).to(x.device).unsqueeze(-1)
        weights = weights * mask.to(weights.dtype)
        mass = weights.sum(1)  # [batch, C]
        weighted = torch.einsum("btc,btd->bcd", weights, x)
        # sum_t w_tc (x_t - mu_c) = sum_t w_tc x_t - mu_c sum_t w_tc
        mass = mass.unsqueeze(-1)
        enc = (weighted - mass * self.mu) / (mass + self.eps)
        return enc.reshape(x.shape[0], -1)


class LDEAggregator(torch.nn.Module):
    """Learnable aggregation of the frame-level outputs of several layers.

    The layers are concatenated along the channels, projected per frame to
    ``reduce_size`` channels (a linear 1x1 layer), and encoded by
    ``LDEPooling``. When ``num_classes`` is given, a linear speaker
    classifier on the encoding provides ``auxiliary_loss`` (cross-entropy
    times ``aux_weight``): the signal that trains the aggregator into a
    speaker-discriminative encoding of the (frozen) teacher's frames, while
    the student is trained towards the detached encoding. Without it, the
    encoding keeps its random initialisation.

    Arguments
    ---------
    input_sizes : list of int
        Channels of each input layer.
    num_components : int
        LDE dictionary size.
    reduce_size : int or None
        Channels after the per-frame projection (None: no projection).
    num_classes : int, optional
        Classes of the auxiliary speaker classifier.
    aux_weight : float
        Weight of the auxiliary cross-entropy.
    channels_first : bool
        True for ``[batch, channels, time]`` inputs.

    Example
    -------
    >>> import torch
    >>> agg = LDEAggregator([6, 10], num_components=4, reduce_size=8,
    ...                     num_classes=3)
    >>> pooled = agg([torch.randn(2, 30, 6), torch.randn(2, 30, 10)])
    >>> pooled.shape, agg.output_size
    (torch.Size([2, 32]), 32)
    >>> agg.auxiliary_loss(pooled, torch.tensor([0, 2])).shape
    torch.Size([])
    """

    def __init__(
        self,
        input_sizes,
        num_components=16,
        reduce_size=128,
        num_classes=None,
        aux_weight=1.0,
        channels_first=False,
    ):
        super().__init__()
        self.input_sizes = _check_sizes(input_sizes, "LDEAggregator")
        self.channels_first = channels_first
        total = sum(self.input_sizes)
        if reduce_size is None:
            self.reduce = torch.nn.Identity()
            reduce_size = total
        else:
            self.reduce = torch.nn.Linear(total, reduce_size)
        self.lde = LDEPooling(reduce_size, num_components)
        self.output_size = self.lde.output_size
        self.aux_weight = float(aux_weight)
        self.classifier = (
            torch.nn.Linear(self.output_size, num_classes)
            if num_classes
            else None
        )

    def forward(self, frames, lengths=None):
        """``[batch, num_components * reduce_size]`` encodings."""
        x = stack_frames(
            frames, self.input_sizes, self.channels_first, "LDEAggregator"
        )
        return self.lde(self.reduce(x), lengths)

    def auxiliary_loss(self, pooled, targets):
        """Weighted speaker cross-entropy on the encodings (None if no
        classifier)."""
        if self.classifier is None:
            return None
        if targets is None:
            raise ValueError(
                "LDEAggregator: the auxiliary classifier needs the targets"
            )
        logits = self.classifier(pooled)
        # checked on CPU tensors only: on an accelerator the check would
        # synchronise host and device at every step (cross_entropy fails
        # on an index out of range anyway)
        if targets.device.type == "cpu" and targets.max() >= logits.shape[-1]:
            raise ValueError(
                f"LDEAggregator: num_classes is {logits.shape[-1]}, got class "
                f"index {int(targets.max())}"
            )
        return self.aux_weight * F.cross_entropy(logits, targets.reshape(-1))
