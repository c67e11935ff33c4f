"""Exact algebraic folds of SpeechBrain's ECAPA-TDNN for export.

SpeechBrain's ``TDNNBlock`` is conv -> ReLU -> BatchNorm, so a BatchNorm
(in eval mode an affine map ``a * x + b`` per channel) follows a ReLU:
it cannot go into its own convolution, and it goes into the next layer
only where everything that reads it is linear in it (or commutes with it).
In ECAPA-TDNN that holds for:

- ``asp_bn`` -> ``fc``: the pooled statistics' BatchNorm followed by a
  1x1 convolution: one linear map (``fc`` absorbs it);
- ``mfa.norm`` -> ``asp``: the attentive statistics pooling reads the
  frames ``x = a * r + b`` (``r`` the ReLU output) only through (1) its
  attention's first 1x1 convolution, linear in ``x`` and in the global
  mean / std of ``x``, and (2) weighted means and standard deviations,
  for which ``mean(x) = a * mean(r) + b`` and
  ``var(x) = a**2 * var(r)``. So the BatchNorm moves from the
  ``[batch, channels, frames]`` tensor to the ``[batch, channels]``
  statistics, and ``a``, ``b`` go into the attention convolution.

Inside each ``SERes2NetBlock`` the BatchNorms of ``tdnn1`` and of the
Res2Net blocks go too, when their scales ``a`` are positive (always so
in the trained models of this project) and the activation is a ReLU:
``a * relu(z) + b = relu(a * z) + b``, so ``a`` goes into the block's own
convolution; every reader of the shift ``b`` is then a convolution (the
next Res2Net block, also through the sums ``x_i + y_{i-1}``, and
``tdnn2`` through the concatenation), whose reflect padding keeps a
constant constant, so ``b`` becomes the bias ``sum_k W_k @ b`` of that
convolution. A block where this does not hold is kept as it is.

The other BatchNorms are read by non-linear or shared consumers (the
residual sums, the squeeze-excitation product ``s(x) * x``, ``tanh`` in
the attention) and stay.

The same rewrite removes what ONNX Runtime runs slowly in SpeechBrain's
pooling: the global mean / std are ``repeat``-ed over time and
concatenated to the frames (``Tile`` + ``Concat``, ~10 % of the C=96
student's time) only to enter a 1x1 convolution, which is
``W_x @ x + (W_m @ mean + W_s @ std)``: a per-utterance bias, no copy;
squares are products, not ``Pow``.

``fold_ecapa`` returns a folded copy; the embeddings equal the original's
up to float32 rounding (``tests/test_fold.py``: within 1e-5).
"""

import copy

import torch


def batchnorm_affine(norm):
    """``(a, b)`` with ``norm(x) == a * x + b`` per channel (eval mode) of
    SpeechBrain's ``BatchNorm1d`` or a ``torch.nn.BatchNorm1d``.

    Example
    -------
    >>> bn = torch.nn.BatchNorm1d(3).eval()
    >>> bn.running_mean.fill_(0.5)
    tensor([0.5000, 0.5000, 0.5000])
    >>> a, b = batchnorm_affine(bn)
    >>> x = torch.randn(2, 3, 4)
    >>> torch.allclose(bn(x), a[:, None] * x + b[:, None])
    True
    """
    bn = getattr(norm, "norm", norm)
    if not isinstance(bn, torch.nn.BatchNorm1d):
        raise TypeError(f"expected a BatchNorm1d, got {type(bn).__name__}")
    if not bn.track_running_stats or bn.running_var is None:
        raise ValueError("BatchNorm1d without running statistics: no fold")
    a = (bn.running_var + bn.eps).rsqrt()
    if bn.affine:
        a = a * bn.weight
    b = -bn.running_mean * a
    if bn.affine:
        b = b + bn.bias
    return a.detach(), b.detach()


def _conv_weights(conv):
    """Weight ``[out, in]`` and bias ``[out]`` of a 1x1 SpeechBrain
    ``Conv1d`` (or ``torch.nn.Conv1d``)."""
    inner = getattr(conv, "conv", conv)
    if inner.kernel_size != (1,) or inner.groups != 1:
        raise ValueError(
            "fold: expected a 1x1 convolution without groups, got kernel "
            f"{inner.kernel_size}, groups {inner.groups}"
        )
    weight = inner.weight.detach()[:, :, 0]
    bias = inner.bias
    bias = torch.zeros(weight.shape[0]) if bias is None else bias.detach()
    return weight, bias


def _stats(x, weights, eps):
    """SpeechBrain's ``_compute_statistics`` (mean, std over time with
    weights summing to 1), squares as products."""
    mean = (weights * x).sum(2)
    d = x - mean.unsqueeze(2)
    return mean, (weights * d * d).sum(2)


class _NoFold(Exception):
    """A block whose BatchNorms cannot be folded exactly."""


def _bias(inner):
    """The bias of the ``torch.nn.Conv1d`` ``inner``, zeros added if none."""
    if inner.bias is None:
        out = inner.weight.shape[0]
        inner.bias = torch.nn.Parameter(
            torch.zeros(out, dtype=inner.weight.dtype)
        )
    return inner.bias


def _scaled_conv(block, a):
    """A copy of ``block.conv`` (a ``TDNNBlock``'s) with its outputs scaled
    by ``a > 0``, so that ``relu(conv'(x)) = a * relu(conv(x))``."""
    if not isinstance(block.activation, torch.nn.ReLU):
        raise _NoFold("activation is not a ReLU")
    if not bool((a > 0).all()):
        raise _NoFold("a BatchNorm scale is not positive")
    conv = copy.deepcopy(block.conv)
    inner = getattr(conv, "conv", conv)
    with torch.no_grad():
        inner.weight.mul_(a[:, None, None])
        _bias(inner).mul_(a)
    return conv


def _shift_input(conv, shift):
    """Adds to the bias of ``conv`` what a constant ``shift`` ``[in]`` added
    to its input gives: ``sum_k W_k @ shift`` (exact for padding that
    keeps constants: none, reflect, replicate, circular)."""
    inner = getattr(conv, "conv", conv)
    padding = getattr(conv, "padding_mode", inner.padding_mode)
    if inner.kernel_size != (1,) and padding not in (
        "reflect", "replicate", "circular",
    ):  # fmt: skip
        raise _NoFold(f"padding {padding!r} does not keep a constant")
    if inner.groups != 1:
        raise _NoFold("grouped convolution")
    with torch.no_grad():
        _bias(inner).add_(inner.weight.sum(2) @ shift)


class FoldedSERes2Net(torch.nn.Module):
    """An ``SERes2NetBlock`` with the BatchNorms of ``tdnn1`` and of its
    Res2Net blocks folded (module docstring); raises ``_NoFold`` where
    that is not exact.

    Arguments
    ---------
    block : speechbrain.lobes.models.ECAPA_TDNN.SERes2NetBlock
        The block (eval mode); copied, not changed.
    """

    def __init__(self, block):
        super().__init__()
        res = block.res2net_block
        self.scale = res.scale
        a, b = batchnorm_affine(block.tdnn1.norm)
        self.conv1 = _scaled_conv(block.tdnn1, a)
        self.relu = torch.nn.ReLU()
        b_in = b.chunk(self.scale)
        shifts = [b_in[0]]  # the constant part of each y_i
        self.convs = torch.nn.ModuleList()
        for i, sub in enumerate(res.blocks, start=1):
            a, c = batchnorm_affine(sub.norm)
            conv = _scaled_conv(sub, a)
            _shift_input(conv, b_in[i] + (shifts[-1] if i > 1 else 0))
            self.convs.append(conv)
            shifts.append(c)
        self.tdnn2 = copy.deepcopy(block.tdnn2)
        _shift_input(self.tdnn2.conv, torch.cat(shifts))
        self.se_block = copy.deepcopy(block.se_block)
        self.shortcut = copy.deepcopy(block.shortcut)

    def forward(self, x, lengths=None):
        """The block's output ``[batch, channels, time]``."""
        residual = x if self.shortcut is None else self.shortcut(x)
        y = []
        r = self.relu(self.conv1(x))
        for i, x_i in enumerate(torch.chunk(r, self.scale, dim=1)):
            if i > 1:
                x_i = x_i + y[-1]
            y.append(x_i if i == 0 else self.relu(self.convs[i - 1](x_i)))
        x = self.se_block(self.tdnn2(torch.cat(y, dim=1)), lengths)
        return x + residual


def _fold_block(block):
    """``FoldedSERes2Net`` of ``block`` where exact, else ``block``."""
    from speechbrain.lobes.models.ECAPA_TDNN import SERes2NetBlock

    if not isinstance(block, SERes2NetBlock):
        return block
    try:
        return FoldedSERes2Net(block)
    except _NoFold:
        return block


class FoldedPooling(torch.nn.Module):
    """ECAPA-TDNN's ``mfa`` -> ``asp`` -> ``asp_bn`` -> ``fc`` with the
    two BatchNorms folded (see the module docstring).

    Arguments
    ---------
    ecapa : speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
        The model (eval mode); its modules are copied, not changed.
    """

    def __init__(self, ecapa):
        super().__init__()
        asp = ecapa.asp
        if not asp.global_context:
            raise ValueError("fold: ECAPA without global context pooling")
        self.mfa_conv = copy.deepcopy(ecapa.mfa.conv)
        self.mfa_activation = copy.deepcopy(ecapa.mfa.activation)
        a, b = batchnorm_affine(ecapa.mfa.norm)
        self.register_buffer("a", a)
        self.register_buffer("b", b)
        self.eps = asp.eps
        weight, bias = _conv_weights(asp.tdnn.conv)
        channels = a.numel()
        w_x, w_m, w_s = weight.split(channels, dim=1)
        # attention conv on x = a * r + b: (w_x * a) @ r + w_x @ b + ...
        self.register_buffer("att_weight", (w_x * a).unsqueeze(2))
        self.register_buffer("att_bias", bias + w_x @ b)
        self.register_buffer("att_mean", w_m.T.contiguous())
        self.register_buffer("att_std", w_s.T.contiguous())
        self.att_activation = copy.deepcopy(asp.tdnn.activation)
        self.att_norm = copy.deepcopy(asp.tdnn.norm)
        self.tanh = copy.deepcopy(asp.tanh)
        self.att_conv = copy.deepcopy(asp.conv)
        # fc(asp_bn(p)) = (W * a2) @ p + W @ b2 + bias
        a2, b2 = batchnorm_affine(ecapa.asp_bn)
        w_fc, bias_fc = _conv_weights(ecapa.fc)
        self.register_buffer("fc_weight", (w_fc * a2).T.contiguous())
        self.register_buffer("fc_bias", bias_fc + w_fc @ b2)

    def forward(self, x, lengths=None):
        """Embeddings ``[batch, 1, dim]`` (ECAPA-TDNN's layout) of the
        concatenated block outputs ``x`` ``[batch, channels, time]``."""
        r = self.mfa_activation(self.mfa_conv(x))
        n_frames = r.shape[-1]
        if lengths is None:
            lengths = torch.ones(r.shape[0], device=r.device)
        steps = torch.arange(n_frames, device=r.device, dtype=lengths.dtype)
        mask = (steps[None] < lengths[:, None] * n_frames).unsqueeze(1)
        uniform = mask.to(r.dtype)
        uniform = uniform / uniform.sum(dim=2, keepdim=True)
        a, b = self.a, self.b
        mean_r, var_r = _stats(r, uniform, self.eps)
        mean = a * mean_r + b
        std = torch.sqrt((a * a * var_r).clamp(self.eps))
        context = self.att_bias + mean @ self.att_mean + std @ self.att_std
        h = torch.nn.functional.conv1d(r, self.att_weight)
        h = self.att_activation(h + context.unsqueeze(2))
        attn = self.att_conv(self.tanh(self.att_norm(h)))
        attn = attn.masked_fill(~mask, float("-inf"))
        attn = torch.nn.functional.softmax(attn, dim=2)
        mean_r, var_r = _stats(r, attn, self.eps)
        pooled = torch.cat(
            [a * mean_r + b, torch.sqrt((a * a * var_r).clamp(self.eps))], 1
        )
        return (pooled @ self.fc_weight + self.fc_bias).unsqueeze(1)


class FoldedECAPA(torch.nn.Module):
    """ECAPA-TDNN with its exactly foldable BatchNorms folded
    (``fold_ecapa``); same ``forward(x, lengths)`` as ``ECAPA_TDNN``.

    Example
    -------
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    >>> model = ECAPA_TDNN(24, channels=[16, 16, 16, 16, 48], lin_neurons=8)
    >>> _ = model.eval()
    >>> x, lens = torch.randn(2, 50, 24), torch.tensor([1.0, 0.7])
    >>> folded = fold_ecapa(model)
    >>> bool((folded(x, lens) - model(x, lens)).abs().max() < 1e-5)
    True
    """

    def __init__(self, ecapa):
        super().__init__()
        self.blocks = torch.nn.ModuleList(
            _fold_block(b) for b in copy.deepcopy(ecapa.blocks)
        )
        self.pooling = FoldedPooling(ecapa)

    def forward(self, x, lengths=None):
        """Embeddings ``[batch, 1, dim]`` of features ``[batch, time,
        n_mels]``."""
        from speechbrain.lobes.models.ECAPA_TDNN import TDNNBlock

        x = x.transpose(1, 2)
        xl = []
        for layer in self.blocks:
            if isinstance(layer, TDNNBlock):
                x = layer(x)
            else:
                x = layer(x, lengths=lengths)
            xl.append(x)
        return self.pooling(torch.cat(xl[1:], dim=1), lengths)


def fold_ecapa(model):
    """A ``FoldedECAPA`` copy of ``model`` (a SpeechBrain ``ECAPA_TDNN``
    in eval mode), or ``model`` itself if it is not one.

    Raises ``ValueError`` for a model in training mode (its BatchNorms
    use batch statistics there: nothing to fold).
    """
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    if type(model) is not ECAPA_TDNN:
        return model
    if model.training:
        raise ValueError("fold_ecapa: put the model in eval mode first")
    return FoldedECAPA(model).eval()
