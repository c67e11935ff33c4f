"""Width gates: a layer's features cut to a continuous width ``K``.

Of the features of a layer, those below ``floor(K)`` pass clean, the one
at ``floor(K)`` is scaled by ``f = K - floor(K)`` (in training, blended
with Gaussian noise of the same variance, ``f * x + (1 - f) * n``) and
those above are zeroed (Gómez and Bäckström, "Performance and Complexity
Trade-off Optimization of Speech Models During Training", arXiv
2601.13704). In eval mode the gate is deterministic, the expected value of
the training-time blend: the boundary feature is ``f * x``. The gates of
``speechbrain_kd.lobes.dynamic.DynamicECAPA``:

- ``width_mask``: the multiplicative mask of a width, its boundary feature
  and factor ``f``.
- ``kept_count``: the features a width keeps after pruning, ``ceil(K)``.
- ``width_gate``: gates the channels of a ``[batch, channels, time]``
  tensor, chunk by chunk (Res2Net chunks).
"""

import torch


def width_mask(k, size):
    """Multiplicative mask of a layer of ``size`` features at width ``k``, a
    scalar tensor in ``[0, size]``.

    Returns
    -------
    mask : torch.Tensor
        ``[size]``: 1 below ``floor(k)``, ``frac`` at ``floor(k)``, 0 above.
    boundary : torch.Tensor
        ``[size]`` bool, True at ``floor(k)`` (all False when ``k = size``).
    frac : torch.Tensor
        ``k - floor(k)``, differentiable with respect to ``k``.

    Example
    -------
    >>> mask, boundary, frac = width_mask(torch.tensor(2.25), 4)
    >>> mask.tolist(), boundary.tolist()
    ([1.0, 1.0, 0.25, 0.0], [False, False, True, False])
    """
    floor = torch.floor(k.detach())
    frac = k - floor
    idx = torch.arange(size, device=k.device, dtype=k.dtype)
    boundary = idx == floor
    mask = (idx < floor).to(k.dtype) + boundary.to(k.dtype) * frac
    return mask, boundary, frac


def kept_count(k):
    """Number of features a width ``k`` keeps, ``ceil(k)``, as ``int``: the
    boundary feature counts iff its factor ``k - floor(k)`` is not zero.
    """
    floor = torch.floor(k.detach())
    return int(floor) + int(bool(k.detach() > floor))


def width_gate(x, k, units, noise=False):
    """Gates the channels (dim 1) of ``x`` to the continuous width ``k``.

    Arguments
    ---------
    x : torch.Tensor
        ``[batch, channels, time]``, ``channels`` a multiple of ``units``.
    k : torch.Tensor
        Scalar width in ``[0, units]``, applied to each chunk of ``units``
        channels alike (Res2Net chunks; one chunk when ``channels = units``).
    units : int
        Channels per chunk.
    noise : bool
        Training mode: the boundary channel of each chunk is
        ``f * x + (1 - f) * n``, ``n`` Gaussian with the variance of that
        channel (over batch and time, not differentiated). Otherwise
        (eval) it is ``f * x``, the expected value. The Gaussian draw
        (``randn_like(x)``) is made even at full width (``k = units``,
        no boundary channel), where it is multiplied by zero.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``.

    Example
    -------
    >>> import torch
    >>> x = torch.ones(1, 6, 2)
    >>> width_gate(x, torch.tensor(1.5), units=3)[0, :, 0].tolist()
    [1.0, 0.5, 0.0, 1.0, 0.5, 0.0]
    """
    channels = x.shape[1]
    if channels % units:
        raise ValueError(
            f"width_gate: {channels} channels are not chunks of {units}"
        )
    repeats = channels // units
    mask, boundary, frac = width_mask(k, units)
    y = x * mask.repeat(repeats).to(x.dtype).view(1, -1, 1)
    if noise:
        # No ``boundary.any()`` test (a host-device sync per gate): at full
        # width ``sel`` is all False and the noise term all zeros.
        sel = boundary.repeat(repeats).view(1, -1, 1)
        std = x.detach().std(dim=(0, 2), correction=0, keepdim=True)
        n = torch.where(sel, torch.randn_like(x) * std, 0.0)
        y = y + (1 - frac).to(x.dtype) * n
    return y
