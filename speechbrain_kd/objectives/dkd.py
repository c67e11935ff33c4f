"""Decoupled knowledge distillation (Zhao et al., CVPR 2022).

As in mdistiller's ``DKD.py``: the target-class term (TCKD) matches the
binary [target, non-target] masses, the non-target term (NCKD) matches the
distributions renormalised over the non-target classes. mdistiller removes
the target by subtracting 1000 from its logit; here it is removed exactly
(masked out), which gives the same values for ordinary logits and stays
right for extreme ones (|logit| ~ 1e4).
"""

import torch
import torch.nn.functional as F

from speechbrain_kd.objectives.kd import check_logits


def mass_kl(teacher_masses, student_masses, eps=1e-12):
    """KL(teacher || student) between mass vectors along the last dimension.

    ``[batch, groups]`` rows summing to one give ``[batch]`` divergences;
    teacher masses of zero contribute zero (0 log 0 = 0).

    Example
    -------
    >>> p = torch.tensor([[0.5, 0.5, 0.0]])
    >>> float(mass_kl(p, p))
    0.0
    """
    log_t = torch.log(teacher_masses.clamp_min(eps))
    log_s = torch.log(student_masses.clamp_min(eps))
    kl = teacher_masses * (log_t - log_s)
    return torch.where(teacher_masses > 0, kl, torch.zeros_like(kl)).sum(-1)


def masked_kl(student_logits, teacher_logits, mask):
    """KL(teacher || student) of the softmaxes renormalised inside ``mask``.

    Arguments
    ---------
    student_logits, teacher_logits : torch.Tensor
        ``[batch, classes]`` logits (already divided by the temperature).
    mask : torch.Tensor
        ``[batch, classes]`` bool, True on the classes kept (>= 1 per row).

    Returns
    -------
    torch.Tensor
        ``[batch]`` divergences.

    Example
    -------
    >>> s = torch.tensor([[0.0, 1.0, 2.0]])
    >>> mask = torch.tensor([[False, True, True]])
    >>> float(masked_kl(s, s + torch.tensor([5.0, 0.0, 0.0]), mask))
    0.0
    """
    neg_inf = torch.finfo(student_logits.dtype).min
    log_q_s = F.log_softmax(student_logits.masked_fill(~mask, neg_inf), -1)
    log_q_t = F.log_softmax(teacher_logits.masked_fill(~mask, neg_inf), -1)
    log_q_s = torch.where(mask, log_q_s, torch.zeros_like(log_q_s))
    log_q_t = torch.where(mask, log_q_t, torch.zeros_like(log_q_t))
    q_t = torch.where(mask, log_q_t.exp(), torch.zeros_like(log_q_t))
    return (q_t * (log_q_t - log_q_s)).sum(-1)


def target_mask(logits, targets):
    """Boolean ``[batch, classes]`` mask of the target class of each row."""
    return F.one_hot(targets.long().view(-1), logits.shape[-1]).bool()


def dkd_loss(
    student_logits, teacher_logits, targets, alpha=1.0, beta=8.0, T=4.0
):
    """Decoupled KD: alpha * TCKD + beta * NCKD, both times T^2, batch mean.

    Arguments
    ---------
    student_logits : torch.Tensor
        Student logits, ``[batch, classes]``.
    teacher_logits : torch.Tensor
        Teacher logits, ``[batch, classes]`` (no gradient flows to them).
    targets : torch.Tensor
        Class indices, ``[batch]``.
    alpha : float
        Weight of the target-class term (TCKD).
    beta : float
        Weight of the non-target term (NCKD).
    T : float
        Softmax temperature.

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> s, t = torch.randn(4, 10), torch.randn(4, 10)
    >>> dkd_loss(s, t, torch.tensor([0, 1, 2, 3])).shape
    torch.Size([])
    """
    check_logits(student_logits, teacher_logits, targets, T)
    s = student_logits.float() / T
    t = teacher_logits.detach().float() / T
    gt = target_mask(s, targets)

    p_s, p_t = s.softmax(-1), t.softmax(-1)
    zero = torch.zeros_like(p_s)
    mass_s = torch.stack(
        [
            torch.where(gt, p_s, zero).sum(-1),
            torch.where(gt, zero, p_s).sum(-1),
        ],
        -1,
    )
    mass_t = torch.stack(
        [
            torch.where(gt, p_t, zero).sum(-1),
            torch.where(gt, zero, p_t).sum(-1),
        ],
        -1,
    )
    tckd = mass_kl(mass_t, mass_s)
    nckd = masked_kl(s, t, ~gt)
    return (alpha * tckd + beta * nckd).mean() * T**2
