"""Classic logit distillation (Hinton et al., 2015)."""

import torch.nn.functional as F


def kd_loss(student_logits, teacher_logits, T=4.0):
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), batch mean.

    Arguments
    ---------
    student_logits : torch.Tensor
        Student logits, ``[batch, classes]``.
    teacher_logits : torch.Tensor
        Teacher logits, ``[batch, classes]`` (no gradient flows to them).
    T : float
        Softmax temperature.

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> import torch
    >>> s, t = torch.randn(4, 10), torch.randn(4, 10)
    >>> kd_loss(s, t).shape
    torch.Size([])
    >>> float(kd_loss(t, t))
    0.0
    """
    log_p_s = F.log_softmax(student_logits.float() / T, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach().float() / T, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
    return kl.mean() * T**2
