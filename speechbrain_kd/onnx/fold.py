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

The other BatchNorms are read by non-linear or shared consumers (the
residual sums, the Res2Net sums ``x_i + y_{i-1}``, the squeeze-excitation
product ``s(x) * x``, ``tanh`` in the attention) and stay.

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
        self.blocks = copy.deepcopy(ecapa.blocks)
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
