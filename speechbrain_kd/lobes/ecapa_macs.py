"""Analytic multiply-accumulates of an ``ECAPA_TDNN`` forward pass.

``ecapa_macs`` counts the convolutions of SpeechBrain's ``ECAPA_TDNN``
from its hyperparameters; the widths may be tensors, so that the count of
``speechbrain_kd.lobes.dynamic.DynamicECAPA`` at its continuous widths is
differentiable (the input of ``speechbrain_kd.objectives.complexity``).
"""


def ecapa_macs(
    input_size,
    channels,
    kernel_sizes,
    attention_channels,
    res2net_scale,
    se_channels,
    global_context,
    lin_neurons,
    frames,
    groups=None,
):
    """Multiply-accumulates of one ``ECAPA_TDNN`` forward pass.

    Counts every convolution (what ``torch.utils.flop_counter`` counts, at
    2 FLOPs per MAC): per frame for the frame-level layers, once per
    utterance for the squeeze-excitation and the final linear layer.
    Normalisation, activations, softmax and pooling are left out. Widths
    may be tensors (continuous widths, differentiable).

    Arguments
    ---------
    input_size : int
        Features per frame (``n_mels``).
    channels, kernel_sizes : sequence
        As ``ECAPA_TDNN``.
    attention_channels, res2net_scale, se_channels : int or torch.Tensor
        As ``ECAPA_TDNN``.
    global_context : bool
        As ``ECAPA_TDNN``.
    lin_neurons : int
        Embedding size.
    frames : int
        Frames of the input.
    groups : sequence of int, optional
        As ``ECAPA_TDNN`` (default: all 1).

    Returns
    -------
    int, float or torch.Tensor
        MACs of one utterance.

    Example
    -------
    >>> ecapa_macs(80, [512, 512, 512, 512, 1536], [5, 3, 3, 3, 1], 128, 8,
    ...            128, True, 192, frames=1) / 1e6
    6.16448
    """
    groups = groups or [1] * len(channels)
    c = list(channels)
    scale = res2net_scale
    macs = frames * kernel_sizes[0] * input_size * c[0] / groups[0]
    for i in range(1, len(c) - 1):
        c_in, c_out = c[i - 1], c[i]
        macs = macs + frames * c_in * c_out / groups[i]  # tdnn1
        macs = macs + (scale - 1) * frames * kernel_sizes[i] * (
            c_out / scale
        ) * (c_out / scale)  # res2net
        macs = macs + frames * c_out * c_out / groups[i]  # tdnn2
        macs = macs + 2 * c_out * se_channels  # squeeze-excitation
        if c_in is not c_out and bool(c_in != c_out):
            macs = macs + frames * c_in * c_out  # shortcut
    mfa_in = c[-2] * (len(c) - 2)
    macs = macs + frames * kernel_sizes[-1] * mfa_in * c[-1] / groups[-1]
    asp_in = 3 * c[-1] if global_context else c[-1]
    macs = macs + frames * asp_in * attention_channels  # attention tdnn
    macs = macs + frames * attention_channels * c[-1]  # attention conv
    macs = macs + 2 * c[-1] * lin_neurons  # fc
    return macs
